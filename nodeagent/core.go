package nodeagent

import (
	"fmt"
	"sort"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoal-hpc/shoal/nodeagent/gpu"
	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// The agent is the I/O shell around sched.Core (docs/architecture.md "The core"): it turns
// frames and process exits into the core's events (feed) and carries out the actions the core
// returns (act): starting workers here or through a member, sending tasks, sealing errors,
// killing workers. Every scheduling decision (node, GPUs, worker, retry, restart, cancel,
// process cap, start backoff, bundle placement) is the core's.
//
//	frame / exit ──> feed(event) ──> core.Step ──> core.Ready ──> act(action) ──> socket / exec

// tickEvery is how often the core's clock advances (retry and start backoffs wake on it).
const tickEvery = 50 * time.Millisecond

// newCore makes the agent's core; the local node joins it at once.
func (a *Agent) newCore() {
	a.core = sched.New(sched.Config{GPUs: gpuPicker{a}, MaxWorkersPerNode: a.cfg.MaxWorkersPerNode})
	a.coreTasks = map[sched.TaskID]*task{}
	a.coreWorkers = map[sched.WorkerID]*worker{}
	a.coreGroups = map[sched.GroupID]*pgroup{}
	a.started = time.Now()
}

// feed applies ev to the core and carries out what it decides. The caller holds a.mu.
func (a *Agent) feed(ev sched.Event) {
	if err := a.core.Step(ev); err != nil {
		a.log.Error("[internal error] the scheduling core refused an event", "event", fmt.Sprintf("%T%+v", ev, ev), "error", err)
	}
	for {
		acts := a.core.Ready()
		if len(acts) == 0 {
			return
		}
		for _, x := range acts {
			a.act(x)
		}
	}
}

// tick advances the core's clock until the agent closes.
func (a *Agent) tick() {
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-a.quit:
			return
		case <-t.C:
		}
		a.mu.Lock()
		if !a.closed {
			a.feed(sched.Tick{Now: time.Since(a.started).Milliseconds()})
			if n++; n%4 == 0 {
				a.lookFree() // local.go
			}
		}
		a.mu.Unlock()
	}
}

func (a *Agent) act(x sched.Action) {
	switch x := x.(type) {
	case sched.StartWorker:
		j, nd := a.coreJobs[x.Job], a.nodeByCID(x.Node)
		if j == nil || nd == nil {
			a.log.Error("[internal error] start a worker for an unknown job or node", "job", x.Job, "node", x.Node)
			return
		}
		if err := a.startWorker(j, nd, x.Worker, x.GPUs); err != nil {
			a.feed(sched.WorkerStartFailed{Worker: x.Worker, Why: err.Error()})
		}
	case sched.Run:
		t, w := a.coreTasks[x.Task], a.coreWorkers[x.Worker]
		if t == nil || w == nil || w.client == nil {
			a.log.Error("[internal error] run a task the shell does not know", "task", x.Task, "worker", x.Worker)
			return
		}
		t.worker, t.gpus, t.node = w, x.GPUs, w.node
		t.spec.Attempt = x.Attempt
		if t.spec.Kind == wire.KindLease {
			a.leaseRan(t) // local.go
		}
		a.limitMemory(t, w) // memmon.go
		if t.spec.Kind == wire.KindActorCreate {
			ac := t.actor
			ac.worker = w
			w.actor = ac
		} else {
			w.task = t
		}
		a.exec(t, w)
	case sched.Fail:
		t := a.coreTasks[x.Task]
		if t == nil {
			return
		}
		delete(a.coreTasks, x.Task)
		a.detach(t)
		if t.spec.Kind == wire.KindLease {
			a.leaseFailed(t, x.Kind, x.Msg) // local.go
		}
		a.fail(t, x.Kind, x.Msg)
		if t.spec.Kind == wire.KindActorCreate && t.actor != nil {
			a.actorDead(t.actor, x.Msg) // an actor that can never be placed
		}
	case sched.Retry:
		if t := a.coreTasks[x.Task]; t != nil {
			a.observe(t, obs.Retrying, x.Why) // obs:
			a.log.Warn("retrying a task", "task", t.spec.Name, "attempt", x.Attempt, "reason", x.Why)
			a.detach(t)
		}
	case sched.KillWorker:
		if w := a.coreWorkers[x.Worker]; w != nil {
			a.log.Debug("kill worker", "worker", w.id, "reason", x.Why)
			w.killed = true
			delete(a.coreWorkers, x.Worker)
			w.signal(syscall.SIGKILL)
		}
	case sched.Interrupt:
		if w := a.coreWorkers[x.Worker]; w != nil {
			if t := a.coreTasks[x.Task]; t != nil && t.spec.Kind == wire.KindTask {
				t.cancelled = true // its DONE ends it as cancelled even if the SIGINT came too early (doneHook)
			}
			w.signal(syscall.SIGINT)
		}
	case sched.ActorRestarting:
		if t := a.coreTasks[x.Task]; t != nil && t.actor != nil {
			a.actorRestarting(t.actor, x.Why)
		}
	case sched.ActorDied:
		t := a.coreTasks[x.Task]
		if t == nil {
			return
		}
		delete(a.coreTasks, x.Task)
		if t.actor != nil {
			a.actorDead(t.actor, x.Why)
		} else {
			a.fail(t, "actor_died", x.Why)
		}
	case sched.GroupPlaced:
		if pg := a.coreGroups[x.Group]; pg != nil {
			a.groupPlaced(pg, x.Nodes)
		}
	case sched.GroupFailed:
		if pg := a.coreGroups[x.Group]; pg != nil {
			delete(a.coreGroups, x.Group)
			a.groupFailed(pg, x.Kind, x.Msg)
		}
	}
}

// detach unbinds t from the worker it ran on (the core has already taken it off).
func (a *Agent) detach(t *task) {
	if w := t.worker; w != nil && w.task == t {
		w.task = nil
	}
	t.worker, t.gpus = nil, nil
}

// gpuPicker chooses GPUs for the core: topology-aware (one NUMA node, NVLink) where the node's
// topology is known, the lowest free indices otherwise. It reads only the node's topology,
// which never changes after the node joined.
type gpuPicker struct{ a *Agent }

func (p gpuPicker) PickGPUs(id sched.NodeID, free []int, n int) []int {
	if len(free) < n {
		return nil
	}
	nd := p.a.nodeByCID(id)
	if nd == nil || nd.topo == nil || len(nd.topo.Devices) == 0 {
		return append([]int(nil), free[:n]...)
	}
	isFree := map[int]bool{}
	for _, g := range free {
		isFree[g] = true
	}
	var used []int
	for _, d := range nd.topo.Devices {
		if !isFree[d.Index] {
			used = append(used, d.Index)
		}
	}
	ids, err := gpu.Pick(nd.topo.Without(used...), n, -1)
	if err != nil {
		return nil
	}
	sort.Ints(ids)
	return ids
}

var _ sched.GPUPicker = gpuPicker{}

func (a *Agent) nodeByCID(id sched.NodeID) *node {
	if id < 0 || int(id) >= len(a.byCID) {
		return nil
	}
	return a.byCID[id]
}

// groupPlaced records where the core put pg's bundles; the first placement seals its ready
// object (a bundle placed again after its node was lost changes only where it lives).
func (a *Agent) groupPlaced(pg *pgroup, nodes []sched.NodeID) {
	pg.nodes = pg.nodes[:0]
	for _, id := range nodes {
		pg.nodes = append(pg.nodes, a.nodeByCID(id))
	}
	if pg.state == pgCreated {
		return
	}
	pg.state = pgCreated
	a.setPGState(pg, "CREATED")
	data, _ := msgpack.Marshal(true)
	if o := a.store.PutInline(pg.ready, wire.FmtMsgpack, data, nil, 0); o != nil {
		a.sealed(o)
	}
}

func (a *Agent) groupFailed(pg *pgroup, kind, msg string) {
	was := pg.state
	pg.state = pgRemoved
	if kind == sched.ErrKindInfeasible {
		msg += "; the cluster has " + a.clusterTotal().String()
		a.setPGState(pg, "INFEASIBLE")
	}
	if was != pgCreated {
		if o := a.store.SetError(pg.ready, errorData(kind, msg)); o != nil {
			a.sealed(o)
		}
	}
}

func (a *Agent) clusterTotal() sched.Resources {
	t := sched.Resources{}
	for _, n := range a.nodes {
		if n.alive {
			t.Add(n.total)
		}
	}
	return t
}

// cancel handles CANCEL for the task that returns m.Object.
func (a *Agent) cancel(c *client, m *wire.Cancel) error {
	t := a.tasks[m.Object.WithIndex(0)]
	if t == nil {
		a.localCancel(c, m) // a member-local task handed back to this agent on the way (local.go)
	}
	if t == nil || t.finished {
		return nil // finished already: nothing to cancel, as in Ray
	}
	if c.job == nil || c.job != t.job {
		return fmt.Errorf("cancel %s: the task belongs to another job", m.Object)
	}
	switch t.spec.Kind {
	case wire.KindActorCreate:
		return fmt.Errorf("cancel %s: it creates an actor; use kill() to stop an actor", m.Object)
	case wire.KindActorMethod:
		return a.cancelActorCall(t, m.Force) // taskfeatures.go
	}
	if t.cid == 0 { // still waiting for its arguments
		a.fail(t, "cancelled", t.spec.Name+" was cancelled before it ran")
		return nil
	}
	a.feed(sched.Cancel{Task: t.cid, Force: m.Force, Recursive: m.Recursive})
	return nil
}
