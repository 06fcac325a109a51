package coll

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-hpc/shoal/wire"
)

// StatsReporter is a KV that also takes a group's collective counts for the head's /metrics
// (client.Client: COLL_STATS, docs/observability.md). A KV without it gets none.
type StatsReporter interface {
	ReportCollectives(wire.CollStats) error
}

// statOps are the operations counted, as run names them.
var statOps = [...]string{"allreduce", "allgather", "reducescatter", "broadcast", "barrier", "send", "recv"}

// statsEvery is how often at most a group sends its counts while it runs; Close sends the rest.
const statsEvery = time.Second

// stats are a group's operation and byte counts, sent to the head as deltas.
type stats struct {
	ops, bytes [len(statOps)]atomic.Uint64
	next       atomic.Int64 // unix ns after which the next operation sends the counts
	started    atomic.Bool  // an operation ran: the first one sends nothing

	mu             sync.Mutex
	sentOps, sentB [len(statOps)]uint64
}

func (s *stats) count(g *Group, what string, n int) {
	for i, name := range statOps {
		if name == what {
			s.ops[i].Add(1)
			s.bytes[i].Add(uint64(n))
			break
		}
	}
	if now := time.Now().UnixNano(); now >= s.next.Load() {
		s.next.Store(now + int64(statsEvery))
		if s.started.Swap(true) { // not the first operation: the counts so far go out
			go s.flush(g)
		}
	}
}

// flush sends the counts since the last flush (nothing when there are none or the KV takes
// none).
func (s *stats) flush(g *Group) {
	r, ok := g.kv.(StatsReporter)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := wire.CollStats{Ops: map[string]uint64{}, Bytes: map[string]uint64{}}
	for i, name := range statOps {
		o, b := s.ops[i].Load(), s.bytes[i].Load()
		if o > s.sentOps[i] {
			cs.Ops[name], cs.Bytes[name] = o-s.sentOps[i], b-s.sentB[i]
			s.sentOps[i], s.sentB[i] = o, b
		}
	}
	if len(cs.Ops) > 0 {
		r.ReportCollectives(cs)
	}
}
