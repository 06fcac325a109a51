package sched

// Read-only snapshots of the core's tables, for the state API (ray.util.state, `shoal list`;
// docs/ray-introspection.md). Each returns copies, sorted by id, so that a caller may keep them
// after the next Step; none changes the core. States are spelled in Ray's vocabulary where the
// core knows the fact (a task's PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, RUNNING,
// RUNNING_IN_RAY_GET); what only the shell knows (names of jobs and actors, pids, arguments
// not yet ready) the shell adds.

import "sort"

// Task states as Ray's state API names them (ray.util.state.common.TaskState).
const (
	StatePendingArgs  = "PENDING_ARGS_AVAIL"      // the shell's: arguments not ready yet
	StatePendingNode  = "PENDING_NODE_ASSIGNMENT" // queued, or waiting out a retry's backoff
	StateSubmitted    = "SUBMITTED_TO_WORKER"     // resources taken on a node, waiting for a worker
	StateRunning      = "RUNNING"
	StateRunningInGet = "RUNNING_IN_RAY_GET" // its worker is blocked in get/wait
	StateFinished     = "FINISHED"
	StateFailed       = "FAILED"
)

// TaskView is one live task (or actor creation) of the core. An actor's creation stays
// RUNNING while the actor lives.
type TaskView struct {
	ID      TaskID
	Job     JobID
	Kind    Kind
	Name    string
	State   string
	Node    NodeID // NoNode until placed
	Worker  WorkerID
	Attempt int32
	Parent  TaskID
	Group   GroupID // 0: none
	Bundle  int32   // the bundle it drew from (-1: the node's resources, or not placed)
	Res     Resources
	GPUs    []int
}

// WorkerView is one worker process the core counts.
type WorkerView struct {
	ID     WorkerID
	Job    JobID
	Node   NodeID
	State  string // STARTING, IDLE, BUSY, ACTOR, DEAD
	Task   TaskID // the task (or actor creation) it runs; 0: none
	GPUs   []int
	Pooled bool // a task-pool worker (not started for one GPU task or actor)
}

// NodeView is one node as the core sees it.
type NodeView struct {
	ID        NodeID
	Name      string
	Alive     bool
	Total     Resources
	Available Resources
	GPUs      []int // every GPU index it offers
	FreeGPUs  []int
	Procs     int
}

// GroupView is one placement group.
type GroupView struct {
	ID       GroupID
	Job      JobID
	Strategy Strategy
	State    string // PENDING, CREATED, REMOVED (Ray's names)
	Bundles  []Resources
	Nodes    []NodeID // each bundle's node (NoNode: not placed)
}

// ObjectView is one object the core knows the location of (large objects, whose place
// matters for locality).
type ObjectView struct {
	ID    ObjectID
	Size  int64
	Nodes []NodeID
}

var workerStateNames = [...]string{"STARTING", "IDLE", "BUSY", "ACTOR", "DEAD"}

var groupStateNames = [...]string{"PENDING", "CREATED", "REMOVED"}

// Tasks returns the core's live tasks and actor creations, by id.
func (c *Core) Tasks() []TaskView {
	out := make([]TaskView, 0, len(c.tasks))
	for _, t := range c.tasks {
		out = append(out, c.taskView(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Task returns one live task, and whether the core holds it.
func (c *Core) Task(id TaskID) (TaskView, bool) {
	t := c.tasks[id]
	if t == nil {
		return TaskView{}, false
	}
	return c.taskView(t), true
}

func (c *Core) taskView(t *task) TaskView {
	v := TaskView{ID: t.id, Job: t.job, Kind: t.kind, Name: t.name, Node: t.node, Attempt: t.attempt,
		Parent: t.parent, Bundle: -1, GPUs: append([]int(nil), t.gpus...)}
	if t.shape != nil {
		v.Res = t.shape.res.Clone()
	}
	if t.group != nil {
		v.Group = t.group.id
	}
	if t.state != tQueued {
		v.Bundle = t.took
	}
	if t.worker != nil {
		v.Worker = t.worker.id
	}
	switch t.state {
	case tQueued:
		v.State, v.Node = StatePendingNode, NoNode
	case tPlaced:
		v.State = StateSubmitted
	case tRunning:
		v.State = StateRunning
		if t.worker != nil && t.worker.blocked {
			v.State = StateRunningInGet
		}
	default:
		v.State = StateFinished
		if t.cancelled {
			v.State = StateFailed
		}
	}
	return v
}

// Workers returns the worker processes the core counts (starting ones included), by id.
func (c *Core) Workers() []WorkerView {
	out := make([]WorkerView, 0, len(c.workers))
	for _, w := range c.workers {
		v := WorkerView{ID: w.id, Job: w.job, Node: w.node, GPUs: append([]int(nil), w.gpus...), Pooled: w.pooled}
		if int(w.state) < len(workerStateNames) {
			v.State = workerStateNames[w.state]
		}
		if w.task != nil {
			v.Task = w.task.id
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Nodes returns every node that ever joined, lost ones included, in the order they joined.
func (c *Core) Nodes() []NodeView {
	out := make([]NodeView, 0, len(c.nodes))
	for _, n := range c.nodes {
		v := NodeView{ID: n.id, Name: n.name, Alive: n.alive, Total: n.total.Clone(), Available: Resources{},
			GPUs: append([]int(nil), n.allGPUs...), Procs: n.procs}
		if n.alive {
			v.Available = n.avail.Clone()
			v.FreeGPUs = append([]int(nil), n.gpus...)
		}
		out = append(out, v)
	}
	return out
}

// Groups returns the placement groups the core holds, by id.
func (c *Core) Groups() []GroupView {
	out := make([]GroupView, 0, len(c.groups))
	for _, g := range c.sortedGroups() {
		v := GroupView{ID: g.id, Job: g.job, Strategy: g.strategy, Nodes: append([]NodeID(nil), g.nodes...)}
		if int(g.state) < len(groupStateNames) {
			v.State = groupStateNames[g.state]
		}
		for _, b := range g.bundles {
			v.Bundles = append(v.Bundles, b.Clone())
		}
		out = append(out, v)
	}
	return out
}

// Objects returns the objects whose locations the core keeps, by id.
func (c *Core) Objects() []ObjectView {
	out := make([]ObjectView, 0, len(c.objects))
	for id, o := range c.objects {
		out = append(out, ObjectView{ID: id, Size: o.size, Nodes: append([]NodeID(nil), o.nodes...)})
	}
	sort.Slice(out, func(i, j int) bool {
		for k := range out[i].ID {
			if out[i].ID[k] != out[j].ID[k] {
				return out[i].ID[k] < out[j].ID[k]
			}
		}
		return false
	})
	return out
}
