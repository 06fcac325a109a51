package sched

import "container/heap"

// qkey names a queue: tasks of one job asking for one resource shape, in one placement-group
// bundle (or none). Tasks of a queue are placed in order (FIFO); a queue whose head does not
// fit does not hold up the others.
type qkey struct {
	job    JobID
	shape  *shape
	group  GroupID
	bundle int32
	pol    string // Policy.key(): tasks of different strategies do not hold each other up
}

type queue struct {
	key    qkey
	tasks  []*task
	head   int
	parked bool // its head fits nowhere now; woken by a release
	cursor int  // where the next scan over nodes starts
	grp    *group
}

func (q *queue) len() int { return len(q.tasks) - q.head }

func (q *queue) front() *task {
	for q.head < len(q.tasks) {
		t := q.tasks[q.head]
		if t != nil && t.state == tQueued && t.q == q {
			return t
		}
		q.tasks[q.head] = nil
		q.head++
	}
	return nil
}

func (q *queue) pop() *task {
	t := q.front()
	if t != nil {
		q.tasks[q.head] = nil
		q.head++
	}
	if q.head > 64 && q.head*2 > len(q.tasks) {
		n := copy(q.tasks, q.tasks[q.head:])
		for i := n; i < len(q.tasks); i++ {
			q.tasks[i] = nil
		}
		q.tasks = q.tasks[:n]
		q.head = 0
	}
	return t
}

func (q *queue) push(t *task) { q.tasks = append(q.tasks, t) }

func (q *queue) pushFront(t *task) {
	if q.head > 0 {
		q.head--
		q.tasks[q.head] = t
		return
	}
	q.tasks = append(q.tasks, nil)
	copy(q.tasks[1:], q.tasks)
	q.tasks[0] = t
}

func (c *Core) queueFor(t *task) *queue {
	k := qkey{job: t.job, shape: t.shape, bundle: t.bundle, pol: t.pol.key()}
	if t.group != nil {
		k.group = t.group.id
	} else {
		k.bundle = -1
	}
	if q := c.queues[k]; q != nil {
		return q
	}
	q := &queue{key: k, grp: t.group}
	c.queues[k] = q
	if t.group != nil {
		t.group.queues = append(t.group.queues, q)
	} else {
		c.qorder = append(c.qorder, q)
	}
	return q
}

// enqueue puts t at the back (or the front, for a retry) of its queue and places what fits.
func (c *Core) enqueue(t *task, front bool) {
	if g := t.group; g != nil && g.state == groupRemoved {
		// a retry or restart of work whose placement group is gone: it cannot run again
		if t.kind == KindActor {
			c.actorDead(t, ErrKindActorDied, "its placement group was removed")
		} else {
			c.failTask(t, ErrKindInfeasible, t.name+": its placement group was removed")
		}
		return
	}
	q := c.queueFor(t)
	t.q = q
	t.state = tQueued
	if front {
		q.pushFront(t)
	} else {
		q.push(t)
	}
	if q.parked && front {
		q.parked = false
	}
	if !q.parked {
		c.dispatch(q)
	}
}

// dispatch places the queue's tasks in order until one does not fit anywhere, then parks it.
func (c *Core) dispatch(q *queue) {
	for {
		t := q.front()
		if t == nil {
			q.parked = false // an empty queue stays (its cursor with it) until its job ends
			return
		}
		n, ok := c.place(t, q)
		if !ok {
			q.parked = true
			return
		}
		if n == NoNode {
			continue // t failed instead (the place said why)
		}
	}
}

// dropQueue forgets an empty queue (its job ended, or its group went).
func (c *Core) dropQueue(q *queue) {
	if q.front() != nil || c.queues[q.key] != q {
		return
	}
	delete(c.queues, q.key)
	if q.grp != nil {
		g := q.grp
		for i, x := range g.queues {
			if x == q {
				g.queues = append(g.queues[:i], g.queues[i+1:]...)
				break
			}
		}
	} else {
		for i, x := range c.qorder {
			if x == q {
				c.qorder = append(c.qorder[:i], c.qorder[i+1:]...)
				break
			}
		}
	}
}

// released is called when resources or worker slots came free on node n: parked queues try
// their heads there, in rotating order so that no queue starves.
func (c *Core) released(n NodeID) {
	c.groupsDirty = true
	if len(c.qorder) == 0 || n < 0 || !c.nodes[n].alive {
		return
	}
	start := c.rr % len(c.qorder)
	c.rr++
	qs := append([]*queue(nil), c.qorder[start:]...)
	qs = append(qs, c.qorder[:start]...)
	for _, q := range qs {
		if !q.parked {
			continue
		}
		if j := c.jobs[q.key.job]; j == nil || j.ended {
			continue
		}
		for {
			t := q.front()
			if t == nil {
				q.parked = false
				break
			}
			if !c.fitsOn(t, c.nodes[n]) {
				break
			}
			q.pop()
			c.placeOn(t, c.nodes[n], -1)
		}
	}
}

// delayHeap holds tasks waiting out a retry backoff, earliest first (ties by task id, so the
// order is deterministic).
type delayHeap []*task

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if h[i].notBefore != h[j].notBefore {
		return h[i].notBefore < h[j].notBefore
	}
	return h[i].id < h[j].id
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)   { *h = append(*h, x.(*task)) }
func (h *delayHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}

func (c *Core) delay(t *task) {
	t.state = tQueued
	t.q = nil
	heap.Push(&c.delayed, t)
}

// wakeDelayed requeues the tasks whose backoff has passed.
func (c *Core) wakeDelayed() {
	for c.delayed.Len() > 0 && c.delayed[0].notBefore <= c.now {
		t := heap.Pop(&c.delayed).(*task)
		if t.state != tQueued || t.q != nil || c.tasks[t.id] != t {
			continue
		}
		c.enqueue(t, true)
	}
}

// backoff is the delay before attempt (1 = the first retry, which goes at once).
func (c *Core) backoff(attempt int32) int64 {
	if attempt <= 1 {
		return 0
	}
	d := c.cfg.BackoffMS
	for i := int32(2); i < attempt && d < c.cfg.BackoffMaxMS; i++ {
		d *= 2
	}
	if d > c.cfg.BackoffMaxMS {
		d = c.cfg.BackoffMaxMS
	}
	return d
}
