package sched

import (
	"fmt"
	"sort"
	"strings"
)

// Worker pool policy. A task without GPUs runs on an idle worker of its job on its node, or
// waits there for one: the core starts task workers for the waiting tasks, a few at a time,
// up to the node's CPUs plus two (plus one for each worker blocked in get/wait), and never
// above the node's process cap. A GPU task needs a worker that owns exactly its GPUs, and an
// actor a worker of its own: either reuses an idle one that fits, else one is started for it.
// Workers that exit before they connect back off (BackoffMS, doubling); after StartAttempts
// such failures in a row the tasks waiting for a worker of that job on that node fail with the
// worker's stderr.

func (c *Core) poolOf(nd *node, k poolKey) *poolState {
	p := nd.pool[k]
	if p == nil {
		p = &poolState{node: nd.id, job: k.job, env: k.env}
		nd.pool[k] = p
	}
	return p
}

// poolKey names a pool of task workers: a job's workers on a node that run one runtime
// environment. Tasks whose runtime environments differ never share a worker process (env
// variables, working directory and sys.path are the process's), so the environment's key is
// part of every pool and idle-worker key.
type poolKey struct {
	job JobID
	env string
}

func (t *task) pool() poolKey     { return poolKey{job: t.job, env: t.env} }
func (w *worker) pool() poolKey   { return poolKey{job: w.job, env: w.env} }
func (p *poolState) key() poolKey { return poolKey{job: p.job, env: p.env} }

func (nd *node) poolLimit(p *poolState) int {
	l := int(nd.total["CPU"]) + 2
	if l < 4 {
		l = 4
	}
	return l + p.blocked
}

// giveWorker finds or starts a worker for the placed task t on nd.
func (c *Core) giveWorker(t *task, nd *node) {
	p := c.poolOf(nd, t.pool())
	if p.fails >= c.cfg.StartAttempts && p.workers == 0 {
		c.unplace(t)
		c.failStart(t, p)
		return
	}
	k := wkey{job: t.job, gpus: GPUKey(t.gpus), env: t.env}
	if w := c.takeIdle(nd, k); w != nil {
		c.run(t, w)
		return
	}
	if t.shape.gpus == 0 {
		if t.kind == KindTask {
			p.waiting = append(p.waiting, t)
			c.startPool(nd, t.pool())
			return
		}
		if nd.procs >= nd.maxProc && p.workers > len(p.waiting) && c.evictable(nd, k) == nil {
			// no slot for a worker of its own: the actor takes the next pool worker that is free
			p.waiting = append(p.waiting, t)
			return
		}
	}
	c.startFor(t, nd, k)
}

// startFor starts a worker dedicated to t (a GPU task or an actor).
func (c *Core) startFor(t *task, nd *node, k wkey) {
	p := c.poolOf(nd, t.pool())
	if c.now < p.notBefore {
		c.waitBackoff(nd, t.pool())
		p.dedicated = append(p.dedicated, t)
		return
	}
	if !c.makeRoom(nd, k) {
		c.unplace(t)
		if t.kind == KindActor {
			c.actorDead(t, ErrKindTooManyProcs, c.capMsg(nd, t))
		} else {
			c.enqueue(t, true)
		}
		return
	}
	w := c.newWorker(nd, t.pool(), t.gpus, false)
	w.forTask = t
	t.worker = w
}

func (c *Core) capMsg(nd *node, t *task) string {
	return fmt.Sprintf("%s cannot start: node %s already runs %d worker processes, its cap; kill actors you no longer need, or raise the cap with %s",
		t.name, nd.name, nd.procs, c.cfg.CapFlag)
}

// makeRoom reports whether a process can start on nd, stopping an idle worker if that is what
// it takes.
func (c *Core) makeRoom(nd *node, k wkey) bool {
	if nd.procs < nd.maxProc {
		return true
	}
	w := c.evictable(nd, k)
	if w == nil {
		return false
	}
	c.emit(KillWorker{Worker: w.id, Why: "idle; its slot is needed under the node's process cap"})
	c.workerGone(w)
	return true
}

// startPool starts task workers for the waiting tasks of pool k on nd, within the limits.
func (c *Core) startPool(nd *node, k poolKey) {
	p := c.poolOf(nd, k)
	if c.now < p.notBefore {
		c.waitBackoff(nd, k)
		return
	}
	for len(p.waiting) > p.starting && p.workers < nd.poolLimit(p) {
		if !c.makeRoom(nd, wkey{job: k.job, env: k.env}) {
			return
		}
		c.newWorker(nd, k, nil, true)
		if p.fails > 0 {
			return // one at a time while starts fail
		}
	}
}

func (c *Core) newWorker(nd *node, k poolKey, gpus []int, pooled bool) *worker {
	c.nextWorker++
	w := &worker{id: c.nextWorker, job: k.job, env: k.env, node: nd.id, gpus: gpus, state: wStarting, pooled: pooled}
	c.workers[w.id] = w
	nd.procs++
	if pooled {
		p := c.poolOf(nd, k)
		p.starting++
		p.workers++
	}
	c.emit(StartWorker{Worker: w.id, Job: k.job, Node: nd.id, GPUs: gpus, Env: k.env})
	return w
}

func (c *Core) takeIdle(nd *node, k wkey) *worker {
	for i := len(nd.idle) - 1; i >= 0; i-- {
		w := nd.idle[i]
		if w.job == k.job && w.env == k.env && GPUKey(w.gpus) == k.gpus {
			nd.idle = append(nd.idle[:i], nd.idle[i+1:]...)
			return w
		}
	}
	return nil
}

func (c *Core) run(t *task, w *worker) {
	if t.kind == KindActor && w.pooled {
		// the actor keeps this worker: it leaves the task pool
		w.pooled = false
		c.poolOf(c.nodes[w.node], w.pool()).workers--
	}
	t.state = tRunning
	t.worker = w
	w.task = t
	w.forTask = nil
	if t.kind == KindActor {
		w.state = wActor
	} else {
		w.state = wBusy
	}
	g, b := GroupID(0), -1
	if t.group != nil && t.took >= 0 {
		g, b = t.group.id, int(t.took)
	}
	c.emit(Run{Task: t.id, Worker: w.id, Node: t.node, GPUs: t.gpus, Group: g, Bundle: b, Attempt: int(t.attempt)})
}

// idle makes w available: the first task waiting for a worker of its kind on its node takes it.
func (c *Core) idle(w *worker) {
	nd := c.nodes[w.node]
	w.task = nil
	w.state = wIdle
	if c.jobs[w.job] == nil || !nd.alive {
		c.emit(KillWorker{Worker: w.id, Why: "its job ended"})
		c.workerGone(w)
		return
	}
	if len(w.gpus) == 0 {
		p := c.poolOf(nd, w.pool())
		for len(p.waiting) > 0 {
			t := p.waiting[0]
			p.waiting = p.waiting[1:]
			if t.state == tPlaced && t.worker == nil {
				c.run(t, w)
				return
			}
		}
	}
	nd.idle = append(nd.idle, w)
	c.released(nd.id) // a worker slot for a task that waited on the process cap
}

// workerGone forgets w (it exited, failed to start or was killed).
func (c *Core) workerGone(w *worker) {
	if w.state == wDead {
		return
	}
	nd := c.nodes[w.node]
	if w.state == wIdle {
		for i, x := range nd.idle {
			if x == w {
				nd.idle = append(nd.idle[:i], nd.idle[i+1:]...)
				break
			}
		}
	}
	nd.procs--
	if w.pooled {
		p := c.poolOf(nd, w.pool())
		p.workers--
		if w.state == wStarting {
			p.starting--
		}
		if w.blocked {
			p.blocked--
		}
	}
	w.state = wDead
	delete(c.workers, w.id)
}

// startFailed handles a worker that exited before it connected.
func (c *Core) startFailed(w *worker, why, stderr string) {
	if w.state != wStarting {
		c.exited(w, why)
		return
	}
	nd := c.nodes[w.node]
	p := c.poolOf(nd, w.pool())
	t := w.forTask
	c.workerGone(w)
	p.fails++
	p.lastErr = why
	if s := strings.TrimSpace(stderr); s != "" {
		p.lastErr += "; its stderr ends:\n" + s
	}
	p.notBefore = c.now + c.cfg.BackoffMS<<min(p.fails-1, 6)
	if p.notBefore > c.now+c.cfg.BackoffMaxMS {
		p.notBefore = c.now + c.cfg.BackoffMaxMS
	}
	give := p.fails >= c.cfg.StartAttempts && p.workers == 0
	if t != nil && t.state == tPlaced {
		t.worker = nil
		if give {
			c.unplace(t)
			c.failStart(t, p)
		} else {
			p.dedicated = append(p.dedicated, t)
			c.waitBackoff(nd, w.pool())
		}
	}
	if give {
		waiting := p.waiting
		p.waiting = nil
		for _, x := range waiting {
			if x.state == tPlaced && x.worker == nil {
				c.unplace(x)
				c.failStart(x, p)
			}
		}
		return
	}
	c.waitBackoff(nd, w.pool())
}

func (c *Core) failStart(t *task, p *poolState) {
	msg := fmt.Sprintf("%s: %d worker processes in a row failed to start on node %s: %s", t.name, p.fails, c.nodes[p.node].name, p.lastErr)
	if t.kind == KindActor {
		c.actorDead(t, ErrKindStartFailed, msg)
		return
	}
	c.failTask(t, ErrKindStartFailed, msg)
}

// waitBackoff arranges for startPool to run again once the backoff has passed.
func (c *Core) waitBackoff(nd *node, k poolKey) {
	p := c.poolOf(nd, k)
	if p.timerSet {
		return
	}
	p.timerSet = true
	c.backoffPools = append(c.backoffPools, p)
}

// wakePools restarts worker starts whose backoff has passed.
func (c *Core) wakePools() {
	keep := c.backoffPools[:0]
	var due []*poolState
	for _, p := range c.backoffPools {
		if c.now < p.notBefore {
			keep = append(keep, p)
			continue
		}
		p.timerSet = false
		due = append(due, p)
	}
	c.backoffPools = keep
	for _, p := range due {
		nd := c.nodes[p.node]
		if !nd.alive {
			continue
		}
		ded := p.dedicated
		p.dedicated = nil
		for _, t := range ded {
			if t.state == tPlaced && t.worker == nil {
				c.startFor(t, nd, wkey{job: t.job, gpus: GPUKey(t.gpus), env: t.env})
			}
		}
		c.startPool(nd, p.key())
	}
}

// sortedPools lists nd's pools by job, then runtime environment (a deterministic order).
func sortedPools(nd *node) []*poolState {
	ps := make([]*poolState, 0, len(nd.pool))
	for _, p := range nd.pool {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].job != ps[j].job {
			return ps[i].job < ps[j].job
		}
		return ps[i].env < ps[j].env
	})
	return ps
}
