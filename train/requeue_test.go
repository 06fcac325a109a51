package train

import (
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func repoPython(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "python")
}

// Due reaches the rank through fd 6, and shoal.train.checkpoint_due() reads it; a checkpoint
// report clears it.
func TestRankActorDue(t *testing.T) {
	r, _ := NewRankActor()
	script := `
import sys, time, shoal.train as t
print("before", t.checkpoint_due(), flush=True)
while not t.checkpoint_due():
    time.sleep(0.02)
print("due", t.checkpoint_due(), flush=True)
t.report({"step": 7}, checkpoint="/ck/7")
print("after", t.checkpoint_due(), flush=True)
`
	if _, err := r.Start(StartSpec{Argv: []string{"python3", "-c", script}, Env: []string{"PYTHONPATH=" + repoPython(t)}}); err != nil {
		t.Fatal(err)
	}
	for st, _ := r.Poll(50, 0); !strings.Contains(st.Tail, "before"); st, _ = r.Poll(50, 0) {
		if st.Done {
			t.Fatalf("the rank exited: %+v", st)
		}
	}
	if ok, _ := r.Due(DuePreempted, 0); !ok {
		t.Fatal("Due: the rank is not running")
	}
	st := pollDone(t, r)
	if st.Code != 0 || st.Tail != "before None\ndue preemption\nafter None" || st.Last == nil || st.Last.Checkpoint != "/ck/7" {
		t.Fatalf("status %+v (tail %q)", st, st.Tail)
	}
	if ok, _ := r.Due(DueTimeLimit, 0); ok {
		t.Fatal("Due on an exited rank says it runs")
	}
}

// IgnoreTerm: the rank survives SIGTERM (a preemption's, which Slurm sends every process of
// the step), and Stop kills it at once instead of waiting out the grace for nothing.
func TestRankActorIgnoreTerm(t *testing.T) {
	defer signal.Reset(syscall.SIGTERM)
	r, _ := NewRankActor()
	if _, err := r.Start(StartSpec{Argv: []string{"sh", "-c", `echo up; while :; do sleep 0.05; done`}, Ignore: []int{int(syscall.SIGTERM)}}); err != nil {
		t.Fatal(err)
	}
	for st, _ := r.Poll(50, 0); st.Tail != "up"; st, _ = r.Poll(50, 0) {
	}
	r.mu.Lock()
	pid := r.cur.cmd.Process.Pid
	r.mu.Unlock()
	if !ignoresTerm(pid) {
		t.Fatal("the rank does not ignore SIGTERM")
	}
	syscall.Kill(pid, syscall.SIGTERM)
	if st, _ := r.Poll(300, 0); st.Done {
		t.Fatalf("SIGTERM ended the rank: %+v", st)
	}
	t0 := time.Now()
	st, _ := r.Stop(60_000)
	if !st.Done || st.Signal != "SIGKILL" || time.Since(t0) > 30*time.Second {
		t.Fatalf("Stop: %+v after %s, want killed at once, without the 60 s grace", st, time.Since(t0))
	}
	if ignoresTerm(os.Getpid()) == false {
		t.Fatal("the worker itself should ignore SIGTERM after IgnoreTerm")
	}
}

func TestHistory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	h, err := OpenHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := h.Latest(); p != "" || err != nil {
		t.Fatalf("Latest of a new history: %q %v", p, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.BeginAllocation("42", 0, "node[1-3]"))
	a, err := h.BeginAttempt(0, 3, "node1: rank 0", "")
	must(err)
	must(h.Checkpoint(a, "/ck/10", map[string]any{"step": float64(10), "loss": 0.5}))
	must(h.Checkpoint(a, "/ck/20", map[string]any{"step": 20.5}))
	must(h.EndAttempt(a, EndPreempted, 143, ""))
	must(h.EndAllocation(EndPreempted))
	h.Close()

	// the next allocation
	h, err = OpenHistory(dir)
	must(err)
	if p, _ := h.Latest(); p != "/ck/20" {
		t.Fatalf("Latest = %q, want /ck/20", p)
	}
	if n, _ := h.Attempts(); n != 1 {
		t.Fatalf("Attempts = %d, want 1", n)
	}
	must(h.BeginAllocation("42", 1, "node[1-3]"))
	b, err := h.BeginAttempt(1, 3, "node1: rank 0", "/ck/20")
	must(err)
	must(h.EndAttempt(b, EndCompleted, 0, ""))
	must(h.EndAllocation(EndCompleted))
	h.Close()

	r, err := OpenHistoryReadOnly(dir)
	must(err)
	defer r.Close()
	allocs, err := r.Read()
	must(err)
	if len(allocs) != 2 || allocs[0].EndReason != EndPreempted || allocs[1].RestartCount != 1 || allocs[1].EndReason != EndCompleted ||
		len(allocs[0].Attempts) != 1 || len(allocs[0].Attempts[0].Checkpoints) != 2 || allocs[1].Attempts[0].ResumedFrom != "/ck/20" {
		t.Fatalf("history: %+v", allocs)
	}
	c := allocs[0].Attempts[0].Checkpoints
	if c[0].Step == nil || *c[0].Step != 10 || c[1].Step != nil || string(c[0].Metrics) != `{"loss":0.5,"step":10}` {
		t.Fatalf("checkpoints: %+v", c)
	}
	if _, err := OpenHistoryReadOnly(t.TempDir()); err == nil || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("an empty directory: %v", err)
	}
}
