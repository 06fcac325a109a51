package sched

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// A random walk through the core's events, played by a shell that answers as a real one
// would (workers connect or fail to start, tasks finish, workers die, nodes are lost, tasks
// are cancelled, actors killed, groups made and removed), checking after every step what must
// always hold, and at the end, once every job has ended, that nothing is left: every node's
// resources and GPUs are whole again, no process is counted, every task got exactly one end.

type walker struct {
	t       testing.TB
	r       *rand.Rand
	c       *Core
	nodes   []NodeJoined
	lost    map[NodeID]bool
	running map[TaskID]WorkerID // tasks sent to a worker, not answered yet
	actors  map[TaskID]WorkerID // actors alive on a worker
	start   []WorkerID          // workers asked for, not yet connected
	workers map[WorkerID]NodeID // every worker the core started, until it exits
	kind    map[TaskID]Kind
	ended   map[TaskID]string // how each task ended
	jobs    []JobID
	groups  []GroupID
	nextID  TaskID
	nextG   GroupID
	now     int64
	killed  map[WorkerID]bool // in the current step
}

func newWalker(t testing.TB, seed uint64) *walker {
	w := &walker{t: t, r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), c: New(Config{BackoffMS: 10, BackoffMaxMS: 40}),
		lost: map[NodeID]bool{}, running: map[TaskID]WorkerID{}, actors: map[TaskID]WorkerID{}, workers: map[WorkerID]NodeID{},
		kind: map[TaskID]Kind{}, ended: map[TaskID]string{}}
	n := 1 + w.r.IntN(4)
	for i := 0; i < n; i++ {
		nj := NodeJoined{Name: fmt.Sprintf("n%d", i), Total: Resources{"CPU": float64(1 + w.r.IntN(4))}, MaxWorkers: 3 + w.r.IntN(6)}
		if w.r.IntN(2) == 0 {
			nj.GPUs = []int{0, 1}
			nj.Total["GPU"] = 2
		}
		w.nodes = append(w.nodes, nj)
		w.step(nj)
	}
	for j := JobID(1); j <= 2; j++ {
		w.jobs = append(w.jobs, j)
		w.step(JobStarted{Job: j, Driver: 0, Prestart: w.r.IntN(3)})
	}
	return w
}

func (w *walker) step(ev Event) {
	w.t.Helper()
	if err := w.c.Step(ev); err != nil {
		w.t.Fatalf("step %T%+v: %v", ev, ev, err)
	}
	w.killed = map[WorkerID]bool{}
	for _, a := range w.c.Ready() {
		w.apply(a)
	}
	// a killed worker's task ends (or is retried) in the same batch
	for t, wk := range w.running {
		if w.killed[wk] {
			w.t.Fatalf("worker %d killed while the core still counts task %d running on it", wk, t)
		}
	}
	w.check()
}

func (w *walker) end(id TaskID, how string) {
	if prev, ok := w.ended[id]; ok {
		w.t.Fatalf("task %d ended twice: %s, then %s", id, prev, how)
	}
	w.ended[id] = how
	delete(w.running, id)
	delete(w.actors, id)
}

func (w *walker) apply(a Action) {
	switch a := a.(type) {
	case StartWorker:
		if w.lost[a.Node] {
			w.t.Fatalf("worker started on lost node %d", a.Node)
		}
		w.start = append(w.start, a.Worker)
		w.workers[a.Worker] = a.Node
	case Run:
		if _, ok := w.ended[a.Task]; ok {
			w.t.Fatalf("ran task %d after it ended (%s)", a.Task, w.ended[a.Task])
		}
		if w.lost[a.Node] {
			w.t.Fatalf("ran task %d on lost node %d", a.Task, a.Node)
		}
		if w.kind[a.Task] == KindActor {
			w.actors[a.Task] = a.Worker
		} else {
			w.running[a.Task] = a.Worker
		}
	case Fail:
		w.end(a.Task, "fail:"+a.Kind)
	case ActorDied:
		w.end(a.Task, "actor died")
	case ActorRestarting:
		delete(w.actors, a.Task)
	case Retry:
		delete(w.running, a.Task)
	case KillWorker:
		delete(w.workers, a.Worker)
		w.killed[a.Worker] = true
	}
}

// check: no node's free resources exceed its total, no process count exceeds its cap.
func (w *walker) check() {
	for i := range w.c.nodes {
		nd := w.c.nodes[i]
		for k, v := range nd.avail {
			if v > nd.total[k]+eps {
				w.t.Fatalf("node %s has %g %s free of %g", nd.name, v, k, nd.total[k])
			}
		}
		if nd.procs > nd.maxProc || nd.procs < 0 {
			w.t.Fatalf("node %s counts %d processes, cap %d", nd.name, nd.procs, nd.maxProc)
		}
		if len(nd.gpus) > len(nd.allGPUs) {
			w.t.Fatalf("node %s has %d GPUs free of %d", nd.name, len(nd.gpus), len(nd.allGPUs))
		}
	}
}

func pick[K comparable, V any](r *rand.Rand, m map[K]V) (K, bool) {
	var zero K
	if len(m) == 0 {
		return zero, false
	}
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// map order is random: sort by formatting, so the walk is the seed's alone
	sortAny(keys)
	return keys[r.IntN(len(keys))], true
}

func sortAny[K comparable](ks []K) {
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && fmt.Sprint(ks[j]) < fmt.Sprint(ks[j-1]); j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
}

func (w *walker) move() {
	switch op := w.r.IntN(20); {
	case op < 5: // submit a task or an actor
		w.nextID++
		id := w.nextID
		s := Submitted{Task: id, Job: w.jobs[w.r.IntN(len(w.jobs))], Name: fmt.Sprintf("t%d", id), Bundle: -1,
			Retries: w.r.IntN(3) - 1, Origin: NodeID(w.r.IntN(len(w.nodes))), Res: Resources{"CPU": float64(w.r.IntN(3))}}
		if w.r.IntN(4) == 0 {
			s.Kind = KindActor
			s.Res = Resources{}
		}
		if w.r.IntN(6) == 0 {
			s.Res["GPU"] = 1
		}
		if len(w.groups) > 0 && w.r.IntN(4) == 0 {
			s.Group = w.groups[w.r.IntN(len(w.groups))]
			s.Res = Resources{"CPU": 1}
		}
		if p, ok := pick(w.r, w.running); ok && w.r.IntN(3) == 0 {
			s.Parent = p
		}
		w.kind[id] = s.Kind
		w.step(s)
	case op < 8: // a starting worker connects, or fails to start
		if len(w.start) == 0 {
			return
		}
		i := w.r.IntN(len(w.start))
		wk := w.start[i]
		w.start = append(w.start[:i], w.start[i+1:]...)
		if _, alive := w.workers[wk]; !alive {
			return
		}
		if w.r.IntN(5) == 0 {
			delete(w.workers, wk)
			w.step(WorkerStartFailed{Worker: wk, Why: "exit status 1", Stderr: "boom"})
		} else {
			w.step(WorkerConnected{Worker: wk})
		}
	case op < 12: // a running task answers
		if t, ok := pick(w.r, w.running); ok {
			w.end(t, "finished")
			w.step(TaskFinished{Task: t})
		}
	case op < 13: // a worker dies
		if wk, ok := pick(w.r, w.workers); ok {
			delete(w.workers, wk)
			w.step(WorkerExited{Worker: wk, Why: "killed"})
		}
	case op < 14: // cancel
		if w.nextID > 0 {
			w.step(Cancel{Task: TaskID(1 + w.r.IntN(int(w.nextID))), Force: w.r.IntN(2) == 0, Recursive: w.r.IntN(2) == 0})
		}
	case op < 15: // kill an actor
		if t, ok := pick(w.r, w.actors); ok {
			w.step(KillActor{Task: t, NoRestart: w.r.IntN(2) == 0})
		}
	case op < 16: // block or unblock a worker
		if t, ok := pick(w.r, w.running); ok {
			if w.r.IntN(2) == 0 {
				w.step(WorkerBlocked{Worker: w.running[t]})
			} else {
				w.step(WorkerUnblocked{Worker: w.running[t]})
			}
		}
	case op < 17: // a placement group comes or goes
		if w.r.IntN(2) == 0 || len(w.groups) == 0 {
			w.nextG++
			strat := []Strategy{Pack, Spread, StrictPack, StrictSpread}[w.r.IntN(4)]
			b := make([]Resources, 1+w.r.IntN(3))
			for i := range b {
				b[i] = Resources{"CPU": 1}
			}
			w.groups = append(w.groups, w.nextG)
			w.step(GroupCreate{Group: w.nextG, Job: w.jobs[w.r.IntN(len(w.jobs))], Strategy: strat, Bundles: b})
		} else {
			i := w.r.IntN(len(w.groups))
			g := w.groups[i]
			w.groups = append(w.groups[:i], w.groups[i+1:]...)
			w.step(GroupRemove{Group: g})
		}
	case op < 18: // time passes
		w.now += int64(w.r.IntN(30))
		w.step(Tick{Now: w.now})
	case op < 19: // a node is lost (never the first, the driver's)
		if len(w.nodes) > 1 && w.r.IntN(8) == 0 {
			n := NodeID(1 + w.r.IntN(len(w.nodes)-1))
			if !w.lost[n] {
				w.lost[n] = true
				for wk, nd := range w.workers {
					if nd == n {
						delete(w.workers, wk)
					}
				}
				w.step(NodeLost{Node: n})
			}
		}
	default: // an actor's worker dies
		if t, ok := pick(w.r, w.actors); ok {
			wk := w.actors[t]
			delete(w.workers, wk)
			w.step(WorkerExited{Worker: wk, Why: "segfault"})
		}
	}
}

func (w *walker) finish() {
	for _, j := range w.jobs {
		w.step(JobEnded{Job: j})
	}
	// the groups of ended jobs go with them; every task ended exactly once
	for id := TaskID(1); id <= w.nextID; id++ {
		if _, ok := w.ended[id]; !ok {
			w.t.Fatalf("task %d never ended (core tables: %+v)", id, w.c.Stats())
		}
	}
	if s := w.c.Stats(); s.Tasks != 0 || s.Workers != 0 || s.Jobs != 0 || s.Queued != 0 || s.Queues != 0 || s.Groups != 0 {
		w.t.Fatalf("left behind: %+v", s)
	}
	for _, nd := range w.c.nodes {
		if !nd.alive {
			continue
		}
		if nd.procs != 0 || len(nd.idle) != 0 {
			w.t.Fatalf("node %s still counts %d processes, %d idle", nd.name, nd.procs, len(nd.idle))
		}
		for k, v := range nd.total {
			if d := nd.avail[k] - v; d > eps || d < -eps {
				w.t.Fatalf("node %s has %g %s free of %g after every job ended", nd.name, nd.avail[k], k, v)
			}
		}
		if len(nd.gpus) != len(nd.allGPUs) {
			w.t.Fatalf("node %s has %d of %d GPUs free after every job ended", nd.name, len(nd.gpus), len(nd.allGPUs))
		}
	}
}

func walk(t testing.TB, seed uint64, steps int) {
	w := newWalker(t, seed)
	for i := 0; i < steps; i++ {
		w.move()
	}
	w.finish()
}

func TestRandomWalks(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { walk(t, seed, 400) })
	}
}

func FuzzCoreWalk(f *testing.F) {
	for _, s := range []uint64{1, 7, 42, 1234} {
		f.Add(s, uint16(300))
	}
	f.Fuzz(func(t *testing.T, seed uint64, steps uint16) { walk(t, seed, int(steps%2000)) })
}
