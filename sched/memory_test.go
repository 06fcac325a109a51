package sched

import (
	"strings"
	"testing"
)

// A worker the memory monitor stopped: its task is retried while max_retries allows, like any
// worker that died, and then fails as out_of_memory (not worker_died) with the monitor's words;
// its resources come back; an actor is restarted as its max_restarts says.
func TestOOMRetriesThenFailsOutOfMemory(t *testing.T) {
	const why = "hog was using 512.0 MiB, over its memory= request of 64.0 MiB"
	for _, tc := range []struct {
		name    string
		retries int
		kills   int // OOM kills before the failure
	}{
		{"no retries", 0, 1},
		{"one retry", 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{}, NodeJoined{Name: "a", Total: Resources{"CPU": 1, "memory": 1 << 30}})
			h.submit(1, Resources{"CPU": 1, "memory": 64 << 20}, func(s *Submitted) { s.Retries = tc.retries; s.Name = "hog" })
			var acts []Action
			for k := 0; k < tc.kills; k++ {
				if _, ok := failOf(acts, 1); ok {
					t.Fatalf("failed after %d kills, want %d", k, tc.kills)
				}
				acts = h.step(WorkerExited{Worker: h.wOf[1], Why: why, OOM: true})
				if k < tc.kills-1 {
					if r, ok := find[Run](acts, func(r Run) bool { return r.Task == 1 }); !ok || r.Attempt != k+1 {
						t.Fatalf("kill %d: want the task run again as attempt %d: %v", k+1, k+1, acts)
					}
				}
			}
			f, ok := failOf(acts, 1)
			if !ok || f.Kind != ErrKindOutOfMemory || !strings.Contains(f.Msg, "hog") || !strings.Contains(f.Msg, "512.0 MiB") {
				t.Fatalf("want out_of_memory naming the task and what it used, got %v", acts)
			}
			if h.c.Avail(0)["CPU"] != 1 {
				t.Fatalf("the task's CPU did not come back: %v", h.c.Avail(0))
			}
		})
	}
}

func TestOOMRestartsAnActor(t *testing.T) {
	h := newHarness(t, Config{}, NodeJoined{Name: "a", Total: Resources{"CPU": 1, "memory": 1 << 30}})
	h.submit(1, Resources{"memory": 64 << 20}, func(s *Submitted) { s.Kind = KindActor; s.Retries = 1 })
	h.step(TaskFinished{Task: 1})
	acts := h.step(WorkerExited{Worker: h.wOf[1], Why: "used too much", OOM: true})
	if _, ok := find[ActorRestarting](acts, func(a ActorRestarting) bool { return a.Task == 1 }); !ok {
		t.Fatalf("want the actor restarted: %v", acts)
	}
	acts = h.step(WorkerExited{Worker: h.wOf[1], Why: "used too much", OOM: true})
	if d, ok := find[ActorDied](acts, func(a ActorDied) bool { return a.Task == 1 }); !ok || !strings.Contains(d.Why, "used too much") {
		t.Fatalf("want the actor dead with the monitor's words after its restart: %v", acts)
	}
}
