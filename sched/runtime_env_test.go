package sched

import (
	"testing"
)

// Tasks of different runtime environments never share a worker process; tasks of one
// environment reuse each other's idle workers as tasks without one do.
func TestRuntimeEnvKeysWorkers(t *testing.T) {
	env := func(k string) func(*Submitted) { return func(s *Submitted) { s.Env = k } }
	actor := func(s *Submitted) { s.Kind = KindActor }
	cases := []struct {
		name       string
		first      []func(*Submitted)
		second     []func(*Submitted)
		sameWorker bool
	}{
		{"no env, no env: reused", nil, nil, true},
		{"same env: reused", []func(*Submitted){env("a1")}, []func(*Submitted){env("a1")}, true},
		{"env then none: a new worker", []func(*Submitted){env("a1")}, nil, false},
		{"none then env: a new worker", nil, []func(*Submitted){env("a1")}, false},
		{"two envs: a new worker", []func(*Submitted){env("a1")}, []func(*Submitted){env("b2")}, false},
		{"actor after a task of another env: its own worker", []func(*Submitted){env("a1")}, []func(*Submitted){env("b2"), actor}, false},
		{"actor after a task of its env: the idle worker", []func(*Submitted){env("a1")}, []func(*Submitted){env("a1"), actor}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{}, joined("a", 4))
			acts := h.submit(1, cpus(1), c.first...)
			if _, ok := h.runs[1]; !ok {
				t.Fatalf("task 1 did not run: %v", acts)
			}
			start, ok := find(acts, func(s StartWorker) bool { return s.Worker == h.wOf[1] })
			if !ok {
				t.Fatalf("no StartWorker for task 1's worker: %v", acts)
			}
			var s1 Submitted
			for _, m := range c.first {
				m(&s1)
			}
			if start.Env != s1.Env {
				t.Fatalf("task 1's worker started with env %q, want %q", start.Env, s1.Env)
			}
			h.step(TaskFinished{Task: 1})
			acts = h.submit(2, cpus(1), c.second...)
			if _, ok := h.runs[2]; !ok {
				t.Fatalf("task 2 did not run: %v", acts)
			}
			if got := h.wOf[2] == h.wOf[1]; got != c.sameWorker {
				t.Fatalf("same worker = %v, want %v (workers %d and %d)", got, c.sameWorker, h.wOf[1], h.wOf[2])
			}
			if !c.sameWorker {
				var s2 Submitted
				for _, m := range c.second {
					m(&s2)
				}
				st, ok := find(acts, func(s StartWorker) bool { return s.Worker == h.wOf[2] })
				if !ok || st.Env != s2.Env {
					t.Fatalf("task 2's worker: start %+v (found %v), want env %q", st, ok, s2.Env)
				}
			}
		})
	}
}

// Under the node's process cap, an idle worker of another runtime environment is stopped to
// make room, and a waiting task of one environment never takes a worker of another.
func TestRuntimeEnvUnderTheCap(t *testing.T) {
	h := newHarness(t, Config{}, NodeJoined{Name: "a", Total: cpus(4), MaxWorkers: 1})
	h.submit(1, cpus(1), func(s *Submitted) { s.Env = "a1" })
	h.step(TaskFinished{Task: 1})
	acts := h.submit(2, cpus(1), func(s *Submitted) { s.Env = "b2" })
	if _, ok := find(acts, func(k KillWorker) bool { return k.Worker == h.wOf[1] }); !ok {
		t.Fatalf("the idle worker of env a1 was not stopped for env b2's task: %v", acts)
	}
	if h.wOf[2] == h.wOf[1] || h.wOf[2] == 0 {
		t.Fatalf("task 2 ran on worker %d (task 1's: %d)", h.wOf[2], h.wOf[1])
	}
}
