package sched

// The cluster core: one deterministic state machine that owns the cluster's scheduling tables
// (nodes, jobs, workers, tasks and actors, placement groups, object locations) and every policy
// decision, in the manner of etcd's raft: events go in through Step, the actions to carry out
// come out of Ready. The core does no I/O, reads no clock (time advances by Tick) and takes no
// lock; its caller (the agent, an I/O shell) serialises calls and performs the actions.
//
//	shell: decode frame ──> Step(event) ──> core tables + policy ──> Ready() []Action ──> shell: act
//
// Task lifecycle in the core:
//
//	Submitted ──> queued (per job and resource shape) ──> placed on a node (resources taken)
//	   │                 ^                                    │ idle worker, or one started for it
//	   │                 └── retry (backoff) <── worker died ─┤
//	   │                                                      v
//	   └── Cancel ──> failed(cancelled)           running ──> TaskFinished ──> gone
//
// Actor lifecycle: its creation is a task whose resources and worker it keeps while it lives;
// when its worker exits, the core restarts it (another placement) while restarts are left.
//
// Costs, by design (docs/architecture.md "The core"): placing a task is O(1) amortised, with
// no scan over nodes per task: each (job, shape) queue keeps a cursor over the nodes, a queue
// that found no room anywhere is parked until resources are released on some node, and a
// release tries the parked queues on that node alone.

import (
	"sort"
	"strconv"
	"strings"
)

// NodeID names a node inside the core: its index in the order nodes joined.
type NodeID int32

// NoNode is the NodeID of no node.
const NoNode NodeID = -1

// TaskID, JobID and GroupID are chosen by the caller; WorkerID by the core.
type (
	TaskID   uint64
	JobID    uint32
	GroupID  uint64
	WorkerID uint64
	ObjectID [16]byte
)

// Kind is what a submitted task is.
type Kind uint8

// Kinds of tasks.
const (
	KindTask  Kind = iota // a remote function call
	KindActor             // an actor's creation: it keeps its resources and worker while it lives
)

// GPUPicker chooses n GPUs among free on a node (topology-aware in the agent, through
// nodeagent/gpu.Pick); nil means none fit. It must be pure.
type GPUPicker interface {
	PickGPUs(node NodeID, free []int, n int) []int
}

// firstGPUs picks the lowest free indices.
type firstGPUs struct{}

func (firstGPUs) PickGPUs(_ NodeID, free []int, n int) []int {
	if len(free) < n {
		return nil
	}
	return append([]int(nil), free[:n]...)
}

// DefaultLocalityBytes is Config.LocalityBytes' default: 1 MiB.
const DefaultLocalityBytes = 1 << 20

// Config holds the core's limits. Zero values take the defaults named.
type Config struct {
	// MaxWorkersPerNode caps worker processes per node, actors included (default 4x the
	// node's CPUs, at least 16). The agent's flag is --max-workers-per-node.
	MaxWorkersPerNode int
	// StartAttempts is how many workers in a row may fail to start on a node for a job before
	// the tasks waiting for one fail (default 3).
	StartAttempts int
	// BackoffMS is the first delay after a failed worker start or a retried task; it doubles
	// per attempt up to BackoffMaxMS (defaults 100 and 5000).
	BackoffMS, BackoffMaxMS int64
	// LocalityBytes: a task whose arguments hold at least this many bytes on one node prefers
	// that node (default 1 MiB).
	LocalityBytes int64
	// GPUs chooses GPUs on a node (default: the lowest free indices).
	GPUs GPUPicker
	// CapFlag is how the process cap is named in errors (default "--max-workers-per-node").
	CapFlag string
}

func (c *Config) defaults() {
	if c.StartAttempts <= 0 {
		c.StartAttempts = 3
	}
	if c.BackoffMS <= 0 {
		c.BackoffMS = 100
	}
	if c.BackoffMaxMS <= 0 {
		c.BackoffMaxMS = 5000
	}
	if c.LocalityBytes <= 0 {
		c.LocalityBytes = DefaultLocalityBytes
	}
	if c.GPUs == nil {
		c.GPUs = firstGPUs{}
	}
	if c.CapFlag == "" {
		c.CapFlag = "--max-workers-per-node"
	}
}

// Core is the cluster's state machine. It is not safe for concurrent use: the caller
// serialises Step and Ready.
type Core struct {
	cfg Config
	now int64 // ms, from Tick

	nodes      []*node
	nodeByName map[string]NodeID
	jobs       map[JobID]*job
	tasks      map[TaskID]*task
	workers    map[WorkerID]*worker
	groups     map[GroupID]*group
	pendGroups []*group
	objects    map[ObjectID]*objLoc
	shapes     map[string]*shape
	queues     map[qkey]*queue
	qorder     []*queue // queues in creation order (round robin start rotates)
	parked     int      // queues parked (no room anywhere)
	delayed    delayHeap
	nextWorker WorkerID
	rr         int
	nodeGen    uint64 // bumped when a node joins or is lost (feasibility caches)

	groupsDirty  bool         // pending groups should be tried at the end of this Step
	backoffPools []*poolState // pools waiting out a start backoff

	out []Action
}

// New returns an empty core.
func New(cfg Config) *Core {
	cfg.defaults()
	return &Core{cfg: cfg, nodeGen: 1, nodeByName: map[string]NodeID{}, jobs: map[JobID]*job{}, tasks: map[TaskID]*task{},
		workers: map[WorkerID]*worker{}, groups: map[GroupID]*group{}, objects: map[ObjectID]*objLoc{},
		shapes: map[string]*shape{}, queues: map[qkey]*queue{}}
}

// Ready returns the actions decided since the last call, in order, and forgets them.
func (c *Core) Ready() []Action {
	out := c.out
	c.out = nil
	return out
}

func (c *Core) emit(a Action) { c.out = append(c.out, a) }

// Now is the core's clock (ms), as last ticked.
func (c *Core) Now() int64 { return c.now }

type node struct {
	id      NodeID
	name    string
	total   Resources
	avail   Resources
	gpus    []int // free GPU indices, sorted
	allGPUs []int // every GPU index it offers
	alive   bool
	procs   int       // live worker processes (starting included)
	idle    []*worker // idle workers, oldest first
	pool    map[poolKey]*poolState
	maxProc int
	labels  map[string]string
}

// poolState counts a job's task workers on a node and what waits for them.
type poolState struct {
	node      NodeID
	job       JobID
	env       string  // runtime environment key (poolKey)
	dedicated []*task // GPU tasks and actors waiting out a backoff for their own worker
	starting  int     // task workers started, not yet connected
	workers   int     // task workers alive (starting included)
	blocked   int     // task workers blocked in get/wait (their resources given back)
	waiting   []*task // placed here, waiting for a worker without GPUs (FIFO)
	fails     int     // workers in a row that exited before connecting
	notBefore int64   // no new start before this (backoff)
	lastErr   string
	timerSet  bool
}

type wkey struct {
	job  JobID
	gpus string
	env  string
}

type job struct {
	id     JobID
	ended  bool
	driver NodeID
	tasks  map[TaskID]*task
}

type workerState uint8

const (
	wStarting workerState = iota
	wIdle
	wBusy
	wActor
	wDead
)

type worker struct {
	id      WorkerID
	job     JobID
	env     string // runtime environment key: it runs only tasks of this one
	node    NodeID
	gpus    []int
	state   workerState
	task    *task // the task (or actor creation) it runs
	forTask *task // started for this task (GPU tasks and actors), which waits for it
	blocked bool
	pooled  bool // a task-pool worker (not started for an actor)
}

type taskState uint8

const (
	tQueued  taskState = iota // in its queue (or delayed for a retry)
	tPlaced                   // resources taken on a node, waiting for a worker
	tRunning                  // sent to a worker (for an actor: the actor lives)
	tDone                     // finished, failed or cancelled
)

type task struct {
	id          TaskID
	job         JobID
	env         string // runtime environment key (Submitted.Env)
	kind        Kind
	state       taskState
	shape       *shape
	group       *group
	bundle      int32 // asked for (-1: any)
	took        int32 // the bundle the resources came from (-1: the node's)
	node        NodeID
	origin      NodeID
	retriesLeft int32 // -1: forever
	attempt     int32
	worker      *worker
	gpus        []int
	parent      TaskID
	children    []TaskID
	args        []ObjectID
	notBefore   int64
	cancelled   bool
	lent        bool // its resources are lent out while its worker is blocked in get/wait
	noRestart   bool // actors: killed for good
	name        string
	q           *queue
	pol         *Policy // scheduling strategy (nil: DEFAULT)
}

// shape is a resource request shared by every task that asks for the same amounts.
type shape struct {
	key  string
	res  Resources
	gpus int
	gen  uint64 // nodeGen when why was computed
	why  string // why no node can ever hold it ("" when one can)
}

func (c *Core) shapeOf(r Resources) *shape {
	k := r.String()
	if s := c.shapes[k]; s != nil {
		return s
	}
	s := &shape{key: k, res: r.Clone(), gpus: gpuCount(r["GPU"])}
	c.shapes[k] = s
	return s
}

func gpuCount(n float64) int {
	i := int(n)
	if float64(i)+eps < n {
		i++
	}
	return i
}

type objLoc struct {
	size  int64
	nodes []NodeID
}

// Stats are the core's table sizes.
type Stats struct {
	Nodes, LiveNodes, Jobs, Tasks, Queued, Queues, Workers, Groups, Objects int
}

// Stats returns the sizes of the core's tables.
func (c *Core) Stats() Stats {
	s := Stats{Nodes: len(c.nodes), Jobs: len(c.jobs), Tasks: len(c.tasks), Workers: len(c.workers),
		Groups: len(c.groups), Objects: len(c.objects)}
	for _, n := range c.nodes {
		if n.alive {
			s.LiveNodes++
		}
	}
	for _, t := range c.tasks {
		if t.state == tQueued {
			s.Queued++
		}
	}
	s.Queues = len(c.queues)
	return s
}

// NodeByName returns the NodeID of a node that joined under name.
func (c *Core) NodeByName(name string) (NodeID, bool) {
	id, ok := c.nodeByName[name]
	return id, ok
}

// NodeName returns the name a node joined under.
func (c *Core) NodeName(id NodeID) string {
	if id < 0 || int(id) >= len(c.nodes) {
		return ""
	}
	return c.nodes[id].name
}

// Avail returns a copy of a node's available resources.
func (c *Core) Avail(id NodeID) Resources {
	if id < 0 || int(id) >= len(c.nodes) {
		return nil
	}
	return c.nodes[id].avail.Clone()
}

// FreeGPUs returns a copy of a node's free GPU indices.
func (c *Core) FreeGPUs(id NodeID) []int {
	if id < 0 || int(id) >= len(c.nodes) {
		return nil
	}
	return append([]int(nil), c.nodes[id].gpus...)
}

// Procs returns the number of live worker processes on a node.
func (c *Core) Procs(id NodeID) int {
	if id < 0 || int(id) >= len(c.nodes) {
		return 0
	}
	return c.nodes[id].procs
}

// GPUKey names a GPU set as CUDA_VISIBLE_DEVICES lists it ("" for none).
func GPUKey(ids []int) string {
	if len(ids) == 0 {
		return ""
	}
	s := make([]string, len(ids))
	for i, g := range ids {
		s[i] = strconv.Itoa(g)
	}
	return strings.Join(s, ",")
}

func insertSorted(s []int, v ...int) []int {
	s = append(s, v...)
	sort.Ints(s)
	return s
}

func removeInts(s []int, v []int) []int {
	drop := map[int]bool{}
	for _, x := range v {
		drop[x] = true
	}
	out := s[:0]
	for _, x := range s {
		if !drop[x] {
			out = append(out, x)
		}
	}
	return out
}
