package sched

import (
	"reflect"
	"testing"
)

// The state snapshots (state.go) as the state API reads them: each step of a small cluster's
// life, and what the tables say then.
func TestStateSnapshots(t *testing.T) {
	h := newHarness(t, Config{}, joined("a", 1), joined("b", 2, 0, 1))
	h.auto = false

	type want struct {
		states  map[TaskID]string
		nodes   map[TaskID]NodeID
		workers map[string]int // worker state -> count
	}
	check := func(step string, w want) {
		t.Helper()
		got := map[TaskID]string{}
		gotNode := map[TaskID]NodeID{}
		for _, v := range h.c.Tasks() {
			got[v.ID], gotNode[v.ID] = v.State, v.Node
		}
		if !reflect.DeepEqual(got, w.states) {
			t.Fatalf("%s: task states %v, want %v", step, got, w.states)
		}
		for id, n := range w.nodes {
			if gotNode[id] != n {
				t.Fatalf("%s: task %d on node %d, want %d", step, id, gotNode[id], n)
			}
		}
		ws := map[string]int{}
		for _, v := range h.c.Workers() {
			ws[v.State]++
		}
		if !reflect.DeepEqual(ws, w.workers) {
			t.Fatalf("%s: workers %v, want %v", step, ws, w.workers)
		}
	}

	check("empty", want{states: map[TaskID]string{}, workers: map[string]int{}})

	// a GPU task goes to b (its own worker, starting); two CPU tasks fill a and b
	h.submit(1, Resources{"CPU": 1, "GPU": 1})
	h.submit(2, cpus(1))
	h.submit(3, cpus(1))
	h.submit(4, cpus(1)) // no room left: queued
	starting := 0
	for _, a := range h.log {
		if _, ok := a.(StartWorker); ok {
			starting++
		}
	}
	check("placed", want{
		states:  map[TaskID]string{1: StateSubmitted, 2: StateSubmitted, 3: StateSubmitted, 4: StatePendingNode},
		nodes:   map[TaskID]NodeID{1: 1, 4: NoNode},
		workers: map[string]int{"STARTING": starting},
	})
	v, ok := h.c.Task(1)
	if !ok || !reflect.DeepEqual(v.GPUs, []int{0}) || v.Res["GPU"] != 1 || v.Name != "t1" || v.Kind != KindTask {
		t.Fatalf("task 1's view: %+v (found %v), want GPU 0 of node b and its name and shape", v, ok)
	}
	if _, ok := h.c.Task(99); ok {
		t.Fatal("Task(99) found a task never submitted")
	}

	// the workers connect: three tasks run, one worker blocks in get
	for _, a := range h.log {
		if s, ok := a.(StartWorker); ok {
			h.step(WorkerConnected{Worker: s.Worker})
		}
	}
	h.step(WorkerBlocked{Worker: h.wOf[2]})
	// task 2's CPU is lent while it waits: task 4 is placed there, its worker starting
	st := map[TaskID]string{1: StateRunning, 2: StateRunningInGet, 3: StateRunning, 4: StateSubmitted}
	got := map[TaskID]string{}
	for _, v := range h.c.Tasks() {
		got[v.ID] = v.State
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("running: task states %v, want %v", got, st)
	}
	for _, w := range h.c.Workers() {
		if w.Task != 0 && w.State != "BUSY" {
			t.Fatalf("worker %d runs task %d but is %s", w.ID, w.Task, w.State)
		}
	}

	// nodes: totals, what is free, GPUs
	ns := h.c.Nodes()
	if len(ns) != 2 || ns[1].Name != "b" || !ns[1].Alive || ns[1].Total["CPU"] != 2 ||
		!reflect.DeepEqual(ns[1].GPUs, []int{0, 1}) || !reflect.DeepEqual(ns[1].FreeGPUs, []int{1}) {
		t.Fatalf("nodes %+v: want b with 2 CPUs and GPU 1 free", ns)
	}

	// a placement group, then a node lost: its view says so
	h.step(GroupCreate{Group: 7, Job: 1, Strategy: Spread, Bundles: []Resources{cpus(0.5)}})
	gs := h.c.Groups()
	if len(gs) != 1 || gs[0].ID != 7 || gs[0].Strategy != Spread || len(gs[0].Bundles) != 1 || len(gs[0].Nodes) != 1 {
		t.Fatalf("groups %+v: want group 7, SPREAD, one bundle", gs)
	}
	h.step(ObjectAt{Object: ObjectID{9}, Node: 1, Size: 4 << 20})
	if os := h.c.Objects(); len(os) != 1 || os[0].Size != 4<<20 || !reflect.DeepEqual(os[0].Nodes, []NodeID{1}) {
		t.Fatalf("objects %+v: want one of 4 MiB on node 1", os)
	}
	h.step(NodeLost{Node: 1, Why: "test"})
	ns = h.c.Nodes()
	if ns[1].Alive || len(ns[1].Available) != 0 || ns[1].FreeGPUs != nil {
		t.Fatalf("a lost node should show dead with nothing available: %+v", ns[1])
	}

	// snapshots are copies: changing one changes nothing in the core
	ns[0].Total["CPU"] = 99
	if h.c.Nodes()[0].Total["CPU"] != 1 {
		t.Fatal("Nodes() handed out the core's own map")
	}
}
