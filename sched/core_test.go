package sched

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// harness plays the agent: it feeds events and keeps what the core asked for.
type harness struct {
	t    *testing.T
	c    *Core
	log  []Action
	runs map[TaskID]Run // the latest Run of each task
	wOf  map[TaskID]WorkerID
	auto bool // answer StartWorker with WorkerConnected at once
}

func newHarness(t *testing.T, cfg Config, nodes ...NodeJoined) *harness {
	h := &harness{t: t, c: New(cfg), runs: map[TaskID]Run{}, wOf: map[TaskID]WorkerID{}, auto: true}
	for _, n := range nodes {
		h.step(n)
	}
	h.step(JobStarted{Job: 1, Driver: 0})
	return h
}

func cpus(n float64) Resources { return Resources{"CPU": n} }

func (h *harness) step(ev Event) []Action {
	h.t.Helper()
	if err := h.c.Step(ev); err != nil {
		h.t.Fatalf("step %T%+v: %v", ev, ev, err)
	}
	return h.drain()
}

func (h *harness) drain() []Action {
	var all []Action
	for {
		acts := h.c.Ready()
		if len(acts) == 0 {
			return all
		}
		all = append(all, acts...)
		h.log = append(h.log, acts...)
		for _, a := range acts {
			switch a := a.(type) {
			case Run:
				h.runs[a.Task] = a
				h.wOf[a.Task] = a.Worker
			case StartWorker:
				if h.auto {
					if err := h.c.Step(WorkerConnected{Worker: a.Worker}); err != nil {
						h.t.Fatalf("connect worker %d: %v", a.Worker, err)
					}
				}
			}
		}
	}
}

func (h *harness) submit(id TaskID, res Resources, mod ...func(*Submitted)) []Action {
	h.t.Helper()
	s := Submitted{Task: id, Job: 1, Name: fmt.Sprintf("t%d", id), Res: res, Retries: 3, Origin: 0, Bundle: -1}
	for _, m := range mod {
		m(&s)
	}
	return h.step(s)
}

func count[T Action](acts []Action) int {
	n := 0
	for _, a := range acts {
		if _, ok := a.(T); ok {
			n++
		}
	}
	return n
}

func find[T Action](acts []Action, match func(T) bool) (T, bool) {
	for _, a := range acts {
		if x, ok := a.(T); ok && (match == nil || match(x)) {
			return x, true
		}
	}
	var zero T
	return zero, false
}

func failOf(acts []Action, id TaskID) (Fail, bool) {
	return find(acts, func(f Fail) bool { return f.Task == id })
}

func joined(name string, cpu float64, gpus ...int) NodeJoined {
	r := cpus(cpu)
	if len(gpus) > 0 {
		r["GPU"] = float64(len(gpus))
	}
	return NodeJoined{Name: name, Total: r, GPUs: gpus}
}

func TestTasksRunAndReuseWorkers(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 2))
	var acts []Action
	for i := TaskID(1); i <= 3; i++ {
		acts = append(acts, h.submit(i, cpus(1))...)
	}
	if n := count[StartWorker](acts); n != 2 {
		t.Fatalf("started %d workers for 2 CPUs' worth of tasks, want 2: %v", n, acts)
	}
	if len(h.runs) != 2 {
		t.Fatalf("%d tasks run on a 2-CPU node, want 2", len(h.runs))
	}
	acts = h.step(TaskFinished{Task: 1})
	r, ok := find[Run](acts, func(r Run) bool { return r.Task == 3 })
	if !ok || r.Worker != h.wOf[1] {
		t.Fatalf("after t1 finished, t3 should run on t1's idle worker %d; got %v", h.wOf[1], acts)
	}
	if count[StartWorker](acts) != 0 {
		t.Fatalf("a worker was started although one went idle: %v", acts)
	}
	h.step(TaskFinished{Task: 2})
	h.step(TaskFinished{Task: 3})
	if s := h.c.Stats(); s.Tasks != 0 || s.Queued != 0 {
		t.Fatalf("tables not empty after every task finished: %+v", s)
	}
	if got := h.c.Avail(0)["CPU"]; got != 2 {
		t.Fatalf("node has %g CPUs free after all tasks ended, want 2", got)
	}
}

func TestInfeasibleTaskFailsAtOnce(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 2), joined("b", 4))
	acts := h.submit(1, cpus(8))
	f, ok := failOf(acts, 1)
	if !ok || f.Kind != ErrKindInfeasible || !strings.Contains(f.Msg, "CPU: needs 8, has 4") {
		t.Fatalf("want an infeasible error naming the largest node's CPUs, got %v", acts)
	}
	// and a task that fits a node that is busy waits instead of failing
	h.submit(2, cpus(4))
	acts = h.submit(3, cpus(4))
	if _, failed := failOf(acts, 3); failed {
		t.Fatalf("a feasible task failed: %v", acts)
	}
	acts = h.step(TaskFinished{Task: 2})
	if _, ok := find[Run](acts, func(r Run) bool { return r.Task == 3 }); !ok {
		t.Fatalf("t3 did not run when room came free: %v", acts)
	}
}

func TestWorkerStartFailuresBackOffThenFail(t *testing.T) {
	h := newHarness(t, Config{StartAttempts: 3, BackoffMS: 100}, joined("a", 2))
	h.auto = false
	acts := h.submit(1, cpus(1))
	sw, ok := find[StartWorker](acts, nil)
	if !ok {
		t.Fatalf("no worker started: %v", acts)
	}
	starts := 1
	now := int64(0)
	for attempt := 1; ; attempt++ {
		acts = h.step(WorkerStartFailed{Worker: sw.Worker, Why: "exit status 1", Stderr: "ImportError: no module named shoal"})
		if f, ok := failOf(acts, 1); ok {
			if attempt != 3 || f.Kind != ErrKindStartFailed || !strings.Contains(f.Msg, "ImportError") {
				t.Fatalf("failed after %d attempts with %+v; want 3 attempts and the worker's stderr", attempt, f)
			}
			break
		}
		if count[StartWorker](acts) != 0 {
			t.Fatalf("a worker was restarted at once after a failed start (no backoff): %v", acts)
		}
		// nothing before the backoff has passed
		acts = h.step(Tick{Now: now + 50})
		if count[StartWorker](acts) != 0 {
			t.Fatalf("restarted before the backoff: %v", acts)
		}
		now += 100 << (attempt - 1)
		acts = h.step(Tick{Now: now})
		sw, ok = find[StartWorker](acts, nil)
		if !ok {
			t.Fatalf("attempt %d: no new start after the backoff: %v", attempt, acts)
		}
		starts++
		if starts > 3 {
			t.Fatalf("more than 3 starts")
		}
	}
	// the next task of the job on that node fails at once rather than respawning forever
	acts = h.submit(2, cpus(1))
	if f, ok := failOf(acts, 2); !ok || f.Kind != ErrKindStartFailed {
		t.Fatalf("want the next task to fail with the start error, got %v", acts)
	}
	if h.c.Procs(0) != 0 || h.c.Avail(0)["CPU"] != 2 {
		t.Fatalf("left %d processes and %g CPUs free", h.c.Procs(0), h.c.Avail(0)["CPU"])
	}
}

func TestRetryOnWorkerDeathThenFail(t *testing.T) {
	h := newHarness(t, Config{BackoffMS: 100}, joined("a", 1))
	h.submit(1, cpus(1), func(s *Submitted) { s.Retries = 2 })
	w := h.wOf[1]
	acts := h.step(WorkerExited{Worker: w, Why: "signal: killed"})
	if r, ok := find[Run](acts, func(r Run) bool { return r.Task == 1 }); !ok || r.Attempt != 1 || r.Worker == w {
		t.Fatalf("first retry should run at once on a new worker as attempt 1: %v", acts)
	}
	acts = h.step(WorkerExited{Worker: h.wOf[1], Why: "signal: killed"})
	if _, ok := find[Run](acts, nil); ok {
		t.Fatalf("second retry ran without backoff: %v", acts)
	}
	acts = h.step(Tick{Now: 100})
	if r, ok := find[Run](acts, func(r Run) bool { return r.Task == 1 }); !ok || r.Attempt != 2 {
		t.Fatalf("second retry did not run after its backoff: %v", acts)
	}
	acts = h.step(WorkerExited{Worker: h.wOf[1], Why: "signal: killed"})
	if f, ok := failOf(acts, 1); !ok || f.Kind != ErrKindWorkerDied || !strings.Contains(f.Msg, "no retries") {
		t.Fatalf("want worker_died after the retries, got %v", acts)
	}
}

func TestProcessCapNamesTheFlag(t *testing.T) {
	h := newHarness(t, Config{}, NodeJoined{Name: "a", Total: cpus(2), MaxWorkers: 3})
	for i := TaskID(1); i <= 3; i++ {
		h.submit(i, nil, func(s *Submitted) { s.Kind = KindActor; s.Retries = 0 })
	}
	acts := h.submit(4, nil, func(s *Submitted) { s.Kind = KindActor; s.Name = "Counter" })
	d, ok := find[ActorDied](acts, func(d ActorDied) bool { return d.Task == 4 })
	if !ok || !strings.Contains(d.Why, "--max-workers-per-node") || !strings.Contains(d.Why, "3 worker processes") {
		t.Fatalf("want the 4th actor to die naming the cap and the flag, got %v", acts)
	}
	if h.c.Procs(0) != 3 {
		t.Fatalf("%d processes on a node capped at 3", h.c.Procs(0))
	}
	// a task needing a worker waits (no process slot), and runs when an actor goes
	acts = h.submit(5, cpus(1))
	if count[StartWorker](acts) != 0 {
		t.Fatalf("started a 4th process: %v", acts)
	}
	acts = h.step(KillActor{Task: 1, NoRestart: true})
	if _, ok := find[Run](acts, func(r Run) bool { return r.Task == 5 }); !ok {
		t.Fatalf("task did not run once an actor's slot came free: %v", acts)
	}
}

func TestActorsReuseIdleWorkersAndEvictOtherJobs(t *testing.T) {
	h := newHarness(t, Config{}, NodeJoined{Name: "a", Total: cpus(2), MaxWorkers: 2})
	h.submit(1, cpus(1))
	h.step(TaskFinished{Task: 1})
	acts := h.submit(2, nil, func(s *Submitted) { s.Kind = KindActor })
	if r, ok := find[Run](acts, func(r Run) bool { return r.Task == 2 }); !ok || r.Worker != h.wOf[1] || count[StartWorker](acts) != 0 {
		t.Fatalf("the actor should take the job's idle worker: %v", acts)
	}
	// job 2's idle worker fills the cap; job 1's next actor stops it to make room
	h.step(JobStarted{Job: 2})
	h.submit(3, cpus(1), func(s *Submitted) { s.Job = 2 })
	h.step(TaskFinished{Task: 3})
	acts = h.submit(4, nil, func(s *Submitted) { s.Kind = KindActor })
	if _, ok := find[KillWorker](acts, func(k KillWorker) bool { return k.Worker == h.wOf[3] }); !ok {
		t.Fatalf("want job 2's idle worker stopped for the actor: %v", acts)
	}
	if _, ok := find[Run](acts, func(r Run) bool { return r.Task == 4 }); !ok || h.c.Procs(0) != 2 {
		t.Fatalf("actor not created within the cap: %v (procs %d)", acts, h.c.Procs(0))
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 1))
	h.submit(1, cpus(1))
	h.submit(2, cpus(1)) // queued behind 1
	acts := h.step(Cancel{Task: 2})
	if f, ok := failOf(acts, 2); !ok || f.Kind != ErrKindCancelled {
		t.Fatalf("queued task not cancelled: %v", acts)
	}
	acts = h.step(TaskFinished{Task: 1})
	if _, ok := find[Run](acts, func(r Run) bool { return r.Task == 2 }); ok {
		t.Fatalf("a cancelled task ran")
	}
	// running, not forced: interrupted, and its answer ends it
	h.submit(3, cpus(1))
	acts = h.step(Cancel{Task: 3})
	if _, ok := find[Interrupt](acts, func(i Interrupt) bool { return i.Task == 3 && i.Worker == h.wOf[3] }); !ok {
		t.Fatalf("running task not interrupted: %v", acts)
	}
	h.step(TaskFinished{Task: 3})
	// forced: its worker is killed and it is not retried
	h.submit(4, cpus(1), func(s *Submitted) { s.Retries = 5 })
	acts = h.step(Cancel{Task: 4, Force: true})
	if _, ok := find[KillWorker](acts, func(k KillWorker) bool { return k.Worker == h.wOf[4] }); !ok {
		t.Fatalf("force cancel did not kill the worker: %v", acts)
	}
	if f, ok := failOf(acts, 4); !ok || f.Kind != ErrKindCancelled || count[Retry](acts) != 0 {
		t.Fatalf("force-cancelled task should fail cancelled, not retry: %v", acts)
	}
	// the worker's own exit, reported later, changes nothing
	acts = h.step(WorkerExited{Worker: h.wOf[4], Why: "killed"})
	if len(acts) != 0 {
		t.Fatalf("a killed worker's exit caused %v", acts)
	}
}

func TestCancelRecursive(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 2))
	h.submit(1, cpus(1))
	h.step(WorkerBlocked{Worker: h.wOf[1]})
	h.submit(2, cpus(1), func(s *Submitted) { s.Parent = 1 })
	h.submit(3, cpus(1), func(s *Submitted) { s.Parent = 1 })
	h.submit(4, cpus(1), func(s *Submitted) { s.Parent = 2 })
	acts := h.step(Cancel{Task: 1, Force: true, Recursive: true})
	for _, id := range []TaskID{1, 2, 3, 4} {
		if f, ok := failOf(acts, id); !ok || f.Kind != ErrKindCancelled {
			t.Fatalf("task %d not cancelled recursively: %v", id, acts)
		}
	}
	if s := h.c.Stats(); s.Tasks != 0 {
		t.Fatalf("%d tasks left", s.Tasks)
	}
	if got := h.c.Avail(0)["CPU"]; got != 2 {
		t.Fatalf("%g CPUs free after cancelling everything, want 2", got)
	}
}

func TestLocalityAndOrigin(t *testing.T) {
	h := newHarness(t, Config{LocalityBytes: 1 << 20}, joined("a", 4), joined("b", 4))
	obj := ObjectID{1}
	h.step(ObjectAt{Object: obj, Node: 1, Size: 8 << 20})
	h.submit(1, cpus(1), func(s *Submitted) { s.Args = []ObjectID{obj} })
	if h.runs[1].Node != 1 {
		t.Fatalf("task with an 8 MiB argument on b ran on node %d", h.runs[1].Node)
	}
	small := ObjectID{2}
	h.step(ObjectAt{Object: small, Node: 1, Size: 1000})
	h.submit(2, cpus(1), func(s *Submitted) { s.Args = []ObjectID{small} })
	if h.runs[2].Node != 0 {
		t.Fatalf("a small argument pulled the task off its submitter's node: ran on %d", h.runs[2].Node)
	}
	h.submit(3, cpus(1), func(s *Submitted) { s.Origin = 1 })
	if h.runs[3].Node != 1 {
		t.Fatalf("a task submitted on b ran on node %d", h.runs[3].Node)
	}
}

func TestSpillsToOtherNodesWhenFull(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 2), joined("b", 2), joined("c", 2))
	for i := TaskID(1); i <= 6; i++ {
		h.submit(i, cpus(1))
	}
	per := map[NodeID]int{}
	for _, r := range h.runs {
		per[r.Node]++
	}
	if len(h.runs) != 6 || per[0] != 2 || per[1] != 2 || per[2] != 2 {
		t.Fatalf("6 one-CPU tasks on three 2-CPU nodes: runs per node %v", per)
	}
}

// The program: tasks in the bundles of a STRICT_SPREAD group (one 1-CPU bundle per
// 2-CPU node) each submit 20 one-CPU tasks and wait for them.
func TestStrictSpreadNestedTasksFinish(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 2), joined("b", 2), joined("c", 2))
	acts := h.step(GroupCreate{Group: 7, Job: 1, Strategy: StrictSpread, Bundles: []Resources{cpus(1), cpus(1), cpus(1)}})
	gp, ok := find[GroupPlaced](acts, nil)
	if !ok || len(gp.Nodes) != 3 || gp.Nodes[0] == gp.Nodes[1] || gp.Nodes[1] == gp.Nodes[2] || gp.Nodes[0] == gp.Nodes[2] {
		t.Fatalf("group not spread over 3 nodes: %v", acts)
	}
	for b := 0; b < 3; b++ {
		h.submit(TaskID(100+b), cpus(1), func(s *Submitted) { s.Group = 7; s.Bundle = b })
	}
	next := TaskID(1000)
	children := map[TaskID][]TaskID{}
	for b := 0; b < 3; b++ {
		p := TaskID(100 + b)
		r, ok := h.runs[p]
		if !ok {
			t.Fatalf("parent %d did not run", p)
		}
		for i := 0; i < 20; i++ {
			next++
			h.submit(next, cpus(1), func(s *Submitted) { s.Parent = p; s.Origin = r.Node })
			children[p] = append(children[p], next)
		}
		h.step(WorkerBlocked{Worker: r.Worker})
	}
	// finish children as they run, until none is left
	done := map[TaskID]bool{}
	for rounds := 0; rounds < 1000 && len(done) < 60; rounds++ {
		progressed := false
		for id := range h.runs {
			if id >= 1000 && !done[id] {
				done[id] = true
				h.step(TaskFinished{Task: id})
				progressed = true
				break
			}
		}
		if !progressed {
			t.Fatalf("stuck with %d of 60 children done; stats %+v", len(done), h.c.Stats())
		}
	}
	for b := 0; b < 3; b++ {
		p := TaskID(100 + b)
		h.step(WorkerUnblocked{Worker: h.runs[p].Worker})
		h.step(TaskFinished{Task: p})
	}
	if s := h.c.Stats(); s.Tasks != 0 {
		t.Fatalf("tasks left: %+v", s)
	}
}

func TestNodeLostRetriesAndRestartsElsewhere(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 1), joined("b", 1))
	h.submit(1, cpus(1))
	h.submit(2, cpus(1))
	h.submit(3, nil, func(s *Submitted) { s.Kind = KindActor; s.Retries = 1; s.Origin = 1 })
	if h.runs[2].Node != 1 || h.runs[3].Node != 1 {
		t.Fatalf("setup: t2 and the actor should be on b: %v", h.runs)
	}
	acts := h.step(NodeLost{Node: 1, Why: "no heartbeat for 5s"})
	if _, ok := find[ActorRestarting](acts, func(a ActorRestarting) bool { return a.Task == 3 }); !ok {
		t.Fatalf("actor not restarting: %v", acts)
	}
	if r, ok := find[Run](acts, func(r Run) bool { return r.Task == 3 }); !ok || r.Node != 0 {
		t.Fatalf("actor not recreated on a: %v", acts)
	}
	if _, ok := find[Retry](acts, func(r Retry) bool { return r.Task == 2 }); !ok {
		t.Fatalf("t2 not retried: %v", acts)
	}
	if count[KillWorker](acts) != 0 {
		t.Fatalf("asked to kill workers on a lost node: %v", acts)
	}
	acts = h.step(TaskFinished{Task: 1})
	if r, ok := find[Run](acts, func(r Run) bool { return r.Task == 2 }); !ok || r.Node != 0 {
		t.Fatalf("t2 did not run on a when it had room: %v", acts)
	}
	// a node lost for good leaves tasks that only it could hold infeasible
	acts = h.submit(4, cpus(2))
	if _, ok := failOf(acts, 4); !ok {
		t.Fatalf("a task bigger than every live node should fail: %v", acts)
	}
}

func TestGroupBundleReplacedAfterNodeLost(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 2), joined("b", 2), joined("c", 2))
	acts := h.step(GroupCreate{Group: 1, Job: 1, Strategy: StrictSpread, Bundles: []Resources{cpus(1), cpus(1)}})
	gp, _ := find[GroupPlaced](acts, nil)
	lost := gp.Nodes[1]
	acts = h.step(NodeLost{Node: lost})
	again, ok := find[GroupPlaced](acts, nil)
	if !ok || again.Nodes[0] != gp.Nodes[0] || again.Nodes[1] == lost || again.Nodes[1] == gp.Nodes[0] {
		t.Fatalf("bundle 1 should move to the third node, bundle 0 stay: was %v, now %v", gp.Nodes, acts)
	}
}

func TestGroupRemoveKillsActorsFailsQueued(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 2))
	h.step(GroupCreate{Group: 1, Job: 1, Strategy: Pack, Bundles: []Resources{cpus(1)}})
	h.submit(1, cpus(1), func(s *Submitted) { s.Group = 1; s.Kind = KindActor })
	h.submit(2, cpus(1), func(s *Submitted) { s.Group = 1 }) // no room left in the bundle
	acts := h.step(GroupRemove{Group: 1})
	if _, ok := find[ActorDied](acts, func(d ActorDied) bool { return d.Task == 1 }); !ok {
		t.Fatalf("actor in the removed group lives: %v", acts)
	}
	if f, ok := failOf(acts, 2); !ok || f.Kind != ErrKindInfeasible {
		t.Fatalf("queued task of the removed group not failed: %v", acts)
	}
	if got := h.c.Avail(0)["CPU"]; got != 2 {
		t.Fatalf("%g CPUs free after the group went, want 2", got)
	}
}

func TestGroupInfeasibleAndPending(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 2), joined("b", 2))
	acts := h.step(GroupCreate{Group: 1, Job: 1, Strategy: StrictSpread, Bundles: []Resources{cpus(1), cpus(1), cpus(1)}})
	if g, ok := find[GroupFailed](acts, nil); !ok || g.Kind != ErrKindInfeasible {
		t.Fatalf("3-node STRICT_SPREAD on 2 nodes: %v", acts)
	}
	h.submit(1, cpus(2))
	acts = h.step(GroupCreate{Group: 2, Job: 1, Strategy: StrictPack, Bundles: []Resources{cpus(1), cpus(1)}})
	if g, ok := find[GroupPlaced](acts, nil); !ok || g.Nodes[0] != 1 {
		t.Fatalf("STRICT_PACK should land on the free node b: %v", acts)
	}
	acts = h.step(GroupCreate{Group: 3, Job: 1, Strategy: Pack, Bundles: []Resources{cpus(2)}})
	if count[GroupPlaced](acts) != 0 {
		t.Fatalf("group placed with no room: %v", acts)
	}
	acts = h.step(TaskFinished{Task: 1})
	if g, ok := find[GroupPlaced](acts, nil); !ok || g.Group != 3 {
		t.Fatalf("pending group not placed when room came: %v", acts)
	}
}

func TestGPUTasksGetWholeDevicesAndReuseWorkers(t *testing.T) {
	h := newHarness(t, Config{}, joined("g", 8, 0, 1, 2, 3))
	h.submit(1, Resources{"CPU": 1, "GPU": 2})
	h.submit(2, Resources{"CPU": 1, "GPU": 2})
	h.submit(3, Resources{"CPU": 1, "GPU": 2})
	if !reflect.DeepEqual(h.runs[1].GPUs, []int{0, 1}) || !reflect.DeepEqual(h.runs[2].GPUs, []int{2, 3}) {
		t.Fatalf("GPUs: t1 %v t2 %v", h.runs[1].GPUs, h.runs[2].GPUs)
	}
	if _, ok := h.runs[3]; ok {
		t.Fatalf("t3 ran with no GPU free")
	}
	acts := h.step(TaskFinished{Task: 1})
	r, ok := find[Run](acts, func(r Run) bool { return r.Task == 3 })
	if !ok || r.Worker != h.wOf[1] || !reflect.DeepEqual(r.GPUs, []int{0, 1}) || count[StartWorker](acts) != 0 {
		t.Fatalf("t3 should reuse t1's worker and GPUs 0,1: %v", acts)
	}
}

func TestBlockedWorkerLendsItsCPU(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 1))
	h.submit(1, cpus(1))
	h.submit(2, cpus(1), func(s *Submitted) { s.Parent = 1 })
	if _, ok := h.runs[2]; ok {
		t.Fatalf("t2 ran on a full node")
	}
	h.step(WorkerBlocked{Worker: h.wOf[1]})
	if _, ok := h.runs[2]; !ok {
		t.Fatalf("t2 did not run while t1 waited for it")
	}
	h.step(TaskFinished{Task: 2})
	h.step(WorkerUnblocked{Worker: h.wOf[1]})
	h.step(TaskFinished{Task: 1})
	if got := h.c.Avail(0)["CPU"]; got != 1 {
		t.Fatalf("%g CPUs free at the end, want 1", got)
	}
}

func TestJobEndedFailsAndKills(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 1))
	h.submit(1, cpus(1))
	h.submit(2, cpus(1))
	h.submit(3, nil, func(s *Submitted) { s.Kind = KindActor })
	acts := h.step(JobEnded{Job: 1})
	if count[KillWorker](acts) != 2 {
		t.Fatalf("want both workers killed: %v", acts)
	}
	if f, ok := failOf(acts, 2); !ok || f.Kind != ErrKindJobEnded {
		t.Fatalf("queued task: %v", acts)
	}
	if _, ok := find[ActorDied](acts, func(d ActorDied) bool { return d.Task == 3 }); !ok {
		t.Fatalf("actor: %v", acts)
	}
	if count[StartWorker](acts) != 0 || count[Run](acts) != 0 {
		t.Fatalf("work started for an ended job: %v", acts)
	}
	if s := h.c.Stats(); s.Tasks != 0 || s.Workers != 0 || s.Jobs != 0 || h.c.Procs(0) != 0 {
		t.Fatalf("left behind: %+v procs %d", s, h.c.Procs(0))
	}
}

func TestBadEventsAreRefused(t *testing.T) {
	c := New(Config{})
	for _, ev := range []Event{
		Submitted{Task: 1, Job: 9},
		WorkerConnected{Worker: 4},
		NodeLost{Node: 3},
		GroupCreate{Group: 1, Job: 9},
		ObjectAt{Node: 2},
	} {
		if err := c.Step(ev); err == nil {
			t.Errorf("%T%+v accepted", ev, ev)
		}
	}
	c.Step(NodeJoined{Name: "a", Total: cpus(1)})
	if err := c.Step(NodeJoined{Name: "a", Total: cpus(1)}); err == nil {
		t.Errorf("a node joined twice")
	}
	c.Step(JobStarted{Job: 1})
	if err := c.Step(Submitted{Task: 1, Job: 1, Res: cpus(-1)}); err == nil {
		t.Errorf("negative resources accepted")
	}
}

// The same events give the same actions, every time.
func TestDeterministic(t *testing.T) {
	run := func() []Action {
		h := newHarness(t, Config{}, joined("a", 2), joined("b", 2, 0, 1), joined("c", 4))
		h.step(GroupCreate{Group: 1, Job: 1, Strategy: Spread, Bundles: []Resources{cpus(1), cpus(1)}})
		for i := TaskID(1); i <= 40; i++ {
			r := cpus(1)
			if i%7 == 0 {
				r["GPU"] = 1
			}
			h.submit(i, r, func(s *Submitted) {
				if i%5 == 0 {
					s.Group = 1
				}
			})
		}
		h.step(NodeLost{Node: 1})
		for i := TaskID(1); i <= 40; i++ {
			h.step(TaskFinished{Task: i})
		}
		h.step(JobEnded{Job: 1})
		return h.log
	}
	a, b := run(), run()
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs of the same events differ")
	}
}

// Under the cap, an actor waits for a pool worker of its job that is still starting rather
// than die.
func TestActorWaitsForStartingPoolWorkerUnderCap(t *testing.T) {
	h := newHarness(t, Config{}, NodeJoined{Name: "a", Total: cpus(1), MaxWorkers: 1})
	h.auto = false
	h.c.Step(JobEnded{Job: 1})
	h.drain()
	acts := h.step(JobStarted{Job: 2, Driver: 0, Prestart: 1})
	sw, ok := find[StartWorker](acts, nil)
	if !ok {
		t.Fatalf("no prestarted worker: %v", acts)
	}
	acts = h.submit(1, nil, func(s *Submitted) { s.Job = 2; s.Kind = KindActor })
	if _, died := find[ActorDied](acts, nil); died || count[StartWorker](acts) != 0 {
		t.Fatalf("the actor should wait for the starting worker: %v", acts)
	}
	acts = h.step(WorkerConnected{Worker: sw.Worker})
	if r, ok := find[Run](acts, func(r Run) bool { return r.Task == 1 }); !ok || r.Worker != sw.Worker {
		t.Fatalf("the actor should take the prestarted worker: %v", acts)
	}
}
