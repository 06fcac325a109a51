package sched

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkCoreSimulation drives the core through the design's limits (docs/architecture.md
// "The core"): nodes of 64 CPUs and 8 GPUs, 1,000 placement groups, 10,000 actors and
// 1,000,000 one-CPU tasks queued by one driver, then runs every task to the end, the shell
// answering at once. It reports decisions (Run actions) per second and the heap held per
// queued task. Run it with -benchtime=1x (make bench-core-sim).
func BenchmarkCoreSimulation(b *testing.B) {
	for _, nodes := range []int{100, 1000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				simulate(b, nodes, simTasks, 10_000, 1_000)
			}
		})
	}
}

var simTasks = envInt("SHOAL_SIM_TASKS", 1_000_000)

func simulate(b *testing.B, nodes, tasks, actors, groups int) {
	c := New(Config{})
	var pending []Action
	drain := func() {
		for {
			acts := c.Ready()
			if len(acts) == 0 {
				return
			}
			for _, a := range acts {
				if sw, ok := a.(StartWorker); ok {
					if err := c.Step(WorkerConnected{Worker: sw.Worker}); err != nil {
						b.Fatal(err)
					}
					continue
				}
				pending = append(pending, a)
			}
		}
	}
	step := func(ev Event) {
		if err := c.Step(ev); err != nil {
			b.Fatal(err)
		}
		drain()
	}
	for n := 0; n < nodes; n++ {
		step(NodeJoined{Name: fmt.Sprintf("node%04d", n), Total: Resources{"CPU": 64, "GPU": 8}, GPUs: []int{0, 1, 2, 3, 4, 5, 6, 7}})
	}
	step(JobStarted{Job: 1, Driver: 0})
	for g := 0; g < groups; g++ {
		step(GroupCreate{Group: GroupID(g + 1), Job: 1, Strategy: Spread, Bundles: []Resources{{"CPU": 1}, {"CPU": 1}}})
	}
	id := TaskID(0)
	for a := 0; a < actors; a++ {
		id++
		step(Submitted{Task: id, Job: 1, Kind: KindActor, Name: "Actor", Bundle: -1, Origin: NodeID(a % nodes)})
	}
	pending = pending[:0]
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res := Resources{"CPU": 1}
	start := time.Now()
	for t := 0; t < tasks; t++ {
		id++
		if err := c.Step(Submitted{Task: id, Job: 1, Name: "f", Res: res, Bundle: -1, Origin: 0, Retries: 3}); err != nil {
			b.Fatal(err)
		}
		drain()
	}
	submitDur := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	queued := c.Stats().Queued
	// run everything: each Run is answered with TaskFinished, in order
	decisions := 0
	start = time.Now()
	for len(pending) > 0 {
		a := pending[0]
		pending = pending[1:]
		r, ok := a.(Run)
		if !ok {
			continue
		}
		decisions++
		if r.Task <= TaskID(actors) {
			continue // an actor: it lives on
		}
		if err := c.Step(TaskFinished{Task: r.Task}); err != nil {
			b.Fatal(err)
		}
		drain()
	}
	runDur := time.Since(start)
	if s := c.Stats(); s.Tasks != actors || s.Queued != 0 {
		b.Fatalf("after the run: %+v", s)
	}
	if decisions < tasks {
		b.Fatalf("%d decisions for %d tasks", decisions, tasks)
	}
	b.ReportMetric(float64(tasks)/submitDur.Seconds(), "submits/s")
	b.ReportMetric(float64(decisions)/runDur.Seconds(), "decisions/s")
	if queued > 0 {
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(queued), "B/queued-task")
	}
	b.ReportMetric(float64(queued), "queued")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
