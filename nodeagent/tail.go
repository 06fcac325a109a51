package nodeagent

import (
	"strings"
	"sync"
)

// A worker that exits before it connects is a start failure: the core backs off and, after a
// few in a row, fails the tasks that wait for a worker with the end of the worker's stderr
// (sched/pool.go). The agent keeps that end here.

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
