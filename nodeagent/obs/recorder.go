package obs

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-hpc/shoal/wire"
)

// Task states as the recorder sees them:
//
//	Submitted ──> Running ──> Finished
//	    │   ^        │  └───> Failed
//	    │   └─ Retrying <─┘ (its worker died, retries left)
//	    └──────────────────> Failed (infeasible, a failed argument, its actor died)
type State uint8

// The states of a task.
const (
	Submitted State = iota
	Running
	Finished
	Failed
	Retrying
)

var stateNames = [...]string{"PENDING", "RUNNING", "FINISHED", "FAILED", "RETRYING"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "UNKNOWN"
}

// Kind says what a task is.
type Kind uint8

// The kinds of a task, as wire.Task's Kind numbers them.
const (
	KindTask        Kind = wire.KindTask
	KindActorCreate Kind = wire.KindActorCreate
	KindActorMethod Kind = wire.KindActorMethod
)

var kindNames = [...]string{"task", "actor_creation", "actor_call"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Event is one state change of a task, as the agent reports it.
type Event struct {
	Task    wire.ID
	Name    string // the function or Class.method
	Kind    Kind
	State   State
	Actor   wire.ID // the actor of an actor creation or call
	Job     string
	Node    string // where it runs (Running) or ran
	Worker  string
	Attempt int
	CPU     float64 // resources it holds while it runs
	GPU     float64
	Reason  string // why it failed, where the agent knows (worker_died, infeasible ...)
}

// Record is what the recorder keeps of one task: its last attempt's times and where it ran.
type Record struct {
	Task    wire.ID
	Name    string
	Kind    Kind
	State   State
	Actor   wire.ID
	Job     string
	Node    string
	Worker  string
	Attempt int
	CPU     float64
	GPU     float64
	Reason  string
	Submit  time.Time
	Start   time.Time // zero: it never ran
	End     time.Time // zero: not ended
}

// DefaultMaxRecords bounds the ended tasks a recorder keeps for the timeline (the oldest go
// first); counters and the report count every task.
const DefaultMaxRecords = 100_000

// Recorder keeps the cluster's task events. Its methods are safe for concurrent use; a nil
// *Recorder records nothing.
type Recorder struct {
	start time.Time
	now   func() time.Time
	max   int

	mu       sync.Mutex
	live     map[wire.ID]slot
	ended    []slot // ring of at most max ended records
	strs     interner
	strLimit int
	next     int // where the ring's next record goes, once it is full
	dropped  int // ended records dropped from the ring
	counts   counts
	peak     int64 // largest object store use seen (bytes, all nodes)
	url      string
	token    string
	beats    map[string]Beat

	maxLines int
	maxBytes int
	logs     logs

	reg     *prometheus.Registry
	m       metrics
	src     Source
	srcOnce sync.Once
}

// counts are the report's figures, kept for every task even when the ring drops records.
type counts struct {
	byKind     [3]struct{ submitted, finished, failed, retried int }
	cpuSeconds float64 // held by tasks while they ran
	gpuSeconds float64
}

// Option configures a Recorder.
type Option func(*Recorder)

// WithClock makes the recorder read time from now (tests).
func WithClock(now func() time.Time) Option { return func(r *Recorder) { r.now = now } }

// WithMaxRecords bounds the ended tasks kept for the timeline.
func WithMaxRecords(n int) Option { return func(r *Recorder) { r.max = max(n, 1) } }

// WithMaxLogLines bounds the worker output lines kept.
func WithMaxLogLines(n int) Option { return func(r *Recorder) { r.maxLines = max(n, 1) } }

// WithMaxLogBytes bounds the bytes of text of the lines kept (default DefaultMaxLogBytes).
func WithMaxLogBytes(n int) Option { return func(r *Recorder) { r.maxBytes = max(n, 1) } }

// NewRecorder returns an empty recorder whose clock starts now.
func NewRecorder(opts ...Option) *Recorder {
	r := &Recorder{now: time.Now, max: DefaultMaxRecords, maxLines: DefaultMaxLogLines, maxBytes: DefaultMaxLogBytes, live: map[wire.ID]slot{}}
	for _, o := range opts {
		o(r)
	}
	r.start = r.now()
	r.logs.ring.SetBound(r.maxLines, r.maxBytes)
	r.reg = prometheus.NewRegistry()
	r.m = newMetrics(r.reg)
	return r
}

// Registry is the Prometheus registry the recorder's metrics are in (for /metrics).
func (r *Recorder) Registry() *prometheus.Registry { return r.reg }

// Start is when the recorder was made (the job's start for the report).
func (r *Recorder) Start() time.Time { return r.start }

// SetSource gives the recorder the agent whose state its gauges and report read. Only the
// first call counts.
func (r *Recorder) SetSource(src Source) {
	if r == nil || src == nil {
		return
	}
	r.srcOnce.Do(func() {
		r.mu.Lock()
		r.src = src
		r.mu.Unlock()
		r.reg.MustRegister(&collector{src: src, r: r})
	})
}

func (r *Recorder) source() Source {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.src
}

// SetDashboard records where the dashboard serves and its token, for `shoal dashboard`.
func (r *Recorder) SetDashboard(url, token string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.url, r.token = url, token
	r.mu.Unlock()
}

// Dashboard returns the dashboard's URL and token ("" when it does not serve).
func (r *Recorder) Dashboard() (url, token string) {
	if r == nil {
		return "", ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.url, r.token
}

// TaskEvent records one state change of a task. It is called with the agent's lock held and
// does no I/O.
func (r *Recorder) TaskEvent(e Event) {
	if r == nil {
		return
	}
	now := r.now()
	k := e.Kind
	if int(k) >= len(kindNames) {
		k = KindTask
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.live[e.Task]
	if !ok {
		if e.State != Submitted {
			return // ended already (a second report of its failure), or never seen
		}
		r.live[e.Task] = slot{task: e.Task, name: r.strs.id(e.Name), kind: k, actor: e.Actor, job: r.strs.id(e.Job),
			submit: r.at(now), state: Submitted}
		r.counts.byKind[k].submitted++
		r.m.submitted[k].Inc()
		r.m.live[k][Submitted].Inc()
		return
	}
	prev := rec.state
	if prev == e.State {
		return
	}
	r.m.live[k][liveState(prev)].Dec()
	if prev == Running {
		r.ran(&rec, now)
	}
	rec.state = e.State
	switch e.State {
	case Running:
		rec.start, rec.node, rec.worker, rec.attempt = r.at(now), r.strs.id(e.Node), r.strs.id(e.Worker), int32(e.Attempt)
		rec.cpu, rec.gpu = float32(e.CPU), float32(e.GPU)
		if prev == Submitted {
			r.m.queue[k].Observe(now.Sub(r.when(rec.submit)).Seconds())
		}
		r.m.live[k][Running].Inc()
	case Retrying:
		r.counts.byKind[k].retried++
		r.m.retried[k].Inc()
		r.m.live[k][Submitted].Inc()
	case Finished, Failed:
		rec.end = r.at(now)
		if e.Reason != "" {
			rec.cause = r.strs.id(e.Reason)
		}
		if e.State == Finished {
			r.counts.byKind[k].finished++
			r.m.finished[k].Inc()
		} else {
			r.counts.byKind[k].failed++
			r.m.failed[k].Inc()
		}
		delete(r.live, e.Task)
		r.keep(rec)
		r.compactStrings()
		return
	}
	r.live[e.Task] = rec
}

// liveState is the gauge a state counts under: pending (submitted or waiting to retry) or
// running.
func liveState(s State) State {
	if s == Running {
		return Running
	}
	return Submitted
}

// ran accounts for a run that ends now.
func (r *Recorder) ran(rec *slot, now time.Time) {
	d := now.Sub(r.when(rec.start)).Seconds()
	r.m.run[rec.kind].Observe(d)
	r.counts.cpuSeconds += float64(rec.cpu) * d
	r.counts.gpuSeconds += float64(rec.gpu) * d
}

func (r *Recorder) keep(rec slot) {
	if len(r.ended) < r.max {
		r.ended = append(r.ended, rec)
		return
	}
	r.ended[r.next] = rec
	r.next = (r.next + 1) % r.max
	r.dropped++
}

// Records returns the tasks the recorder holds, ended and live, in order of submission, and
// how many ended ones the bound dropped.
func (r *Recorder) Records() ([]Record, int) {
	if r == nil {
		return nil, 0
	}
	r.mu.Lock()
	out := make([]Record, 0, len(r.ended)+len(r.live))
	for i := range r.ended {
		out = append(out, r.record(&r.ended[(r.next+i)%len(r.ended)]))
	}
	for _, rec := range r.live {
		out = append(out, r.record(&rec))
	}
	dropped := r.dropped
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Submit.Before(out[j].Submit) })
	return out, dropped
}

// notePeak records the object store use seen in a snapshot.
func (r *Recorder) notePeak(s *Snapshot) {
	var used int64
	for _, n := range s.Nodes {
		used += n.Store.Bytes
	}
	r.mu.Lock()
	if used > r.peak {
		r.peak = used
	}
	r.mu.Unlock()
}

// Sample reads the source's state once (the server does it every second, and the report at
// the end) so that the report's peak object store use sees it.
func (r *Recorder) Sample() {
	if r == nil {
		return
	}
	if src := r.source(); src != nil {
		s := src.Snapshot()
		r.notePeak(&s)
	}
}

// Beat is what the recorder holds of a member node's heartbeats.
type Beat struct {
	Stats wire.NodeStats
	Count uint64
	Last  time.Time
}

// Heartbeat records a member agent's NODE_STATS.
func (r *Recorder) Heartbeat(node string, s wire.NodeStats) {
	if r == nil {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.beats == nil {
		r.beats = map[string]Beat{}
	}
	b := r.beats[node]
	b.Stats, b.Last = s, now
	b.Count++
	r.beats[node] = b
}

// Heartbeats returns the last heartbeat of each member node (nil without a recorder).
func (r *Recorder) Heartbeats() map[string]Beat {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Beat, len(r.beats))
	for k, v := range r.beats {
		out[k] = v
	}
	return out
}

// EndJob ends what job left behind when its driver went (tasks still pending or running are
// killed with it): they count as failed, with reason "job_ended", so that nothing of a job
// stays live in a cluster that outlives it.
func (r *Recorder) EndJob(job string) {
	if r == nil {
		return
	}
	r.endDriver(job)
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, rec := range r.live {
		if r.strs.str(rec.job) != job {
			continue
		}
		r.m.live[rec.kind][liveState(rec.state)].Dec()
		if rec.state == Running {
			r.ran(&rec, now)
		}
		rec.state, rec.end, rec.cause = Failed, r.at(now), r.strs.id("job_ended")
		r.counts.byKind[rec.kind].failed++
		r.m.failed[rec.kind].Inc()
		delete(r.live, id)
		r.keep(rec)
	}
	r.compactStrings()
}
