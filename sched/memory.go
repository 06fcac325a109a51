package sched

import "fmt"

// ErrKindOutOfMemory fails a task whose worker the memory monitor stopped (it used more memory
// than its memory= request) once its retries are spent; the SDKs raise OutOfMemoryError.
const ErrKindOutOfMemory = "out_of_memory"

// oomExited handles a worker the memory monitor stopped. Like any worker that died, its task
// is retried while max_retries allows and its actor restarted while max_restarts allows (so a
// task killed for memory counts against its retries, as one killed by the kernel's OOM killer
// would); a task with no retry left fails with ErrKindOutOfMemory and why, which names what
// it used, instead of ErrKindWorkerDied.
func (c *Core) oomExited(w *worker, why string) {
	t := w.task
	if t == nil || t.state != tRunning || t.kind != KindTask || t.cancelled {
		c.exited(w, why)
		return
	}
	if j := c.jobs[t.job]; t.retriesLeft != 0 && j != nil && !j.ended {
		c.exited(w, why)
		return
	}
	c.workerGone(w)
	t.worker = nil
	c.unplace(t)
	c.failTask(t, ErrKindOutOfMemory, fmt.Sprintf("%s ran out of memory and no retries were left: %s", t.name, why))
}
