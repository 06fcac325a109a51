package sched

import "testing"

func TestActorQueueNext(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conc  int
		ready []bool
		want  int
	}{
		{"empty", 1, nil, -1},
		{"sequential: first ready", 1, []bool{true, true}, 0},
		{"sequential: first pending holds the rest", 1, []bool{false, true, true}, -1},
		{"default (0) is sequential", 0, []bool{false, true}, -1},
		{"threaded: skips a pending call", 4, []bool{false, true}, 1},
		{"async: first ready", 1000, []bool{true, false}, 0},
		{"threaded: none ready", 2, []bool{false, false}, -1},
		{"threaded: empty", 2, nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := 0
			q := ActorQueue{Concurrency: tc.conc, Len: len(tc.ready), Ready: func(i int) bool { asked++; return tc.ready[i] }}
			if got := q.Next(); got != tc.want {
				t.Errorf("Next() = %d, want %d", got, tc.want)
			}
			if q.Ordered() && asked > 1 {
				t.Errorf("an ordered queue asked about %d calls; only the first matters", asked)
			}
		})
	}
}

func TestActorCallOnDeath(t *testing.T) {
	for _, tc := range []struct {
		name       string
		restarting bool
		left       int
		retry      bool
		wantLeft   int
	}{
		{"dead for good", false, 3, false, 3},
		{"dead for good, retries forever", false, -1, false, -1},
		{"restarting, no retries", true, 0, false, 0},
		{"restarting, one left", true, 1, true, 0},
		{"restarting, forever", true, -1, true, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retry, left := ActorCallOnDeath(tc.restarting, tc.left)
			if retry != tc.retry || left != tc.wantLeft {
				t.Errorf("ActorCallOnDeath(%v, %d) = %v, %d; want %v, %d", tc.restarting, tc.left, retry, left, tc.retry, tc.wantLeft)
			}
		})
	}
}
