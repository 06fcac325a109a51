package nodeagent

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shoal-hpc/shoal/sched"
)

// Worker start failures (issue 13). A worker that exits before it connects counts against its
// job; starts back off (100 ms, doubling, at most 5 s) and, after startAttempts failures in a
// row with no worker connecting, the job's tasks that wait for a worker fail with
// worker_start_failed and the end of the worker's stderr, instead of the agent respawning it
// forever. The same policy, with the same numbers, is sched.Core's (pool.go), which will take
// this over when the agent runs on the core.

const (
	startAttempts = 3
	startBackoff  = 100 * time.Millisecond
	startBackoffM = 5 * time.Second
	// KindStartFailed is the error kind of a task whose workers could not start.
	KindStartFailed = sched.ErrKindStartFailed
)

// tailBuf keeps the last max bytes written to it (a worker's stderr, for the error a task
// gets when the worker could not start).
type tailBuf struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuf) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuf) String() string {
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// startFailed records that w exited before it connected.
func (a *Agent) startFailed(w *worker, why string) {
	j := w.job
	if j.ended || a.closed || a.stopping {
		return
	}
	j.startFails++
	j.startErr = why
	if s := w.errTail.String(); s != "" {
		j.startErr += "; its stderr ends:\n" + s
	}
	d := startBackoff << min(j.startFails-1, 6)
	if d > startBackoffM {
		d = startBackoffM
	}
	j.notBefore = time.Now().Add(d)
	if j.broken() {
		a.log.Error("workers cannot start; failing the job's waiting tasks", "job", j.id, "attempts", j.startFails, "reason", why)
		a.failUnstartable(j)
	}
}

// broken reports whether j's workers failed to start too often to try again.
func (j *job) broken() bool { return j.startFails >= startAttempts }

func (j *job) startMsg(name string) string {
	return fmt.Sprintf("%s: %d worker processes in a row failed to start: %s", name, j.startFails, j.startErr)
}

// failUnstartable fails j's ready tasks: no worker will come for them.
func (a *Agent) failUnstartable(j *job) {
	for i, t := range a.ready {
		if t != nil && t.job == j && !t.finished {
			a.ready[i] = nil
			a.fail(t, KindStartFailed, j.startMsg(t.spec.Name))
		}
	}
}

// startDelay is how long j's next worker start must wait (0: now); when it must wait, a
// schedule pass is armed for then.
func (a *Agent) startDelay(j *job) time.Duration {
	d := time.Until(j.notBefore)
	if d <= 0 {
		return 0
	}
	if !j.retryArmed {
		j.retryArmed = true
		time.AfterFunc(d, func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			j.retryArmed = false
			a.schedule()
		})
	}
	return d
}

