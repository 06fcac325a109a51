package obs

import (
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// slot is how the recorder stores a Record: its strings interned to numbers, its times as
// nanoseconds since the recorder's start (+1, so that 0 means "none"), stored by value. A
// Record costs about 290 heap bytes behind a pointer; a slot is 96 bytes inside the ring or the
// live map, so the default 100,000 ended records stay under 10 MB, and a million queued tasks
// cost the recorder about 100 MB rather than 400 MB (docs/observability.md, "Memory").
type slot struct {
	task, actor                    wire.ID
	name, job, node, worker, cause uint32 // interned strings (0: "")
	submit, start, end             int64  // ns since the recorder's start, +1; 0: none
	cpu, gpu                       float32
	attempt                        int32
	kind                           Kind
	state                          State
}

// maxInterned bounds the interner: past it, the strings no slot refers to any more are dropped
// (worker ids are the ones that grow with a long job).
const maxInterned = 1 << 16

// interner maps strings to small numbers and back.
type interner struct {
	strs []string
	idx  map[string]uint32
}

func (in *interner) id(s string) uint32 {
	if s == "" {
		return 0
	}
	if n, ok := in.idx[s]; ok {
		return n
	}
	if in.idx == nil {
		in.idx = map[string]uint32{}
		in.strs = []string{""}
	}
	n := uint32(len(in.strs))
	in.strs = append(in.strs, s)
	in.idx[s] = n
	return n
}

func (in *interner) str(n uint32) string {
	if int(n) < len(in.strs) {
		return in.strs[n]
	}
	return ""
}

// at is a slot time for t.
func (r *Recorder) at(t time.Time) int64 { return int64(t.Sub(r.start)) + 1 }

// when is the time of a slot time (zero for none).
func (r *Recorder) when(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return r.start.Add(time.Duration(v - 1))
}

// record expands a slot (r.mu held).
func (r *Recorder) record(s *slot) Record {
	in := &r.strs
	return Record{Task: s.task, Name: in.str(s.name), Kind: s.kind, State: s.state, Actor: s.actor, Job: in.str(s.job),
		Node: in.str(s.node), Worker: in.str(s.worker), Attempt: int(s.attempt), CPU: float64(s.cpu), GPU: float64(s.gpu),
		Reason: in.str(s.cause), Submit: r.when(s.submit), Start: r.when(s.start), End: r.when(s.end)}
}

// compactStrings rebuilds the interner from the strings the slots still use, once it has grown
// past maxInterned (r.mu held).
func (r *Recorder) compactStrings() {
	if len(r.strs.strs) <= max(maxInterned, r.strLimit) {
		return
	}
	old := r.strs
	r.strs = interner{}
	re := func(s *slot) {
		s.name, s.job = r.strs.id(old.str(s.name)), r.strs.id(old.str(s.job))
		s.node, s.worker, s.cause = r.strs.id(old.str(s.node)), r.strs.id(old.str(s.worker)), r.strs.id(old.str(s.cause))
	}
	for i := range r.ended {
		re(&r.ended[i])
	}
	for id, s := range r.live {
		re(&s)
		r.live[id] = s
	}
	r.strLimit = 2 * len(r.strs.strs) // so that strings all in use do not compact again at once
}
