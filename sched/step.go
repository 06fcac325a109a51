package sched

import (
	"fmt"
	"sort"
)

// Step applies one event. Errors are for events that name what does not exist or break the
// core's rules (a caller's bug or a hostile peer's frame); the core's state is unchanged then.
func (c *Core) Step(ev Event) error {
	err := c.step(ev)
	if c.groupsDirty {
		c.groupsDirty = false
		c.placeGroups()
	}
	return err
}

func (c *Core) step(ev Event) error {
	switch e := ev.(type) {
	case Tick:
		if e.Now > c.now {
			c.now = e.Now
		}
		c.wakeDelayed()
		c.wakePools()
	case NodeJoined:
		return c.nodeJoined(e)
	case NodeLost:
		return c.nodeLost(e)
	case JobStarted:
		if c.jobs[e.Job] != nil {
			return fmt.Errorf("job %d started twice", e.Job)
		}
		c.jobs[e.Job] = &job{id: e.Job, driver: e.Driver, tasks: map[TaskID]*task{}}
		if e.Driver >= 0 && int(e.Driver) < len(c.nodes) && c.nodes[e.Driver].alive {
			nd := c.nodes[e.Driver]
			p := c.poolOf(nd, poolKey{job: e.Job})
			for i := 0; i < e.Prestart && p.workers < nd.poolLimit(p) && nd.procs < nd.maxProc; i++ {
				c.newWorker(nd, poolKey{job: e.Job}, nil, true)
			}
		}
	case JobEnded:
		c.jobEnded(e.Job)
	case Submitted:
		return c.submitted(e)
	case WorkerConnected:
		w := c.workers[e.Worker]
		if w == nil || w.state != wStarting {
			return fmt.Errorf("worker %d connected but was not starting", e.Worker)
		}
		nd := c.nodes[w.node]
		p := c.poolOf(nd, w.pool())
		p.fails = 0
		if w.pooled {
			p.starting--
		}
		if t := w.forTask; t != nil && t.state == tPlaced {
			c.run(t, w)
			return nil
		}
		w.forTask = nil
		c.idle(w)
	case WorkerStartFailed:
		if w := c.workers[e.Worker]; w != nil {
			c.startFailed(w, e.Why, e.Stderr)
		}
	case WorkerExited:
		if w := c.workers[e.Worker]; w != nil {
			if w.state == wStarting {
				c.startFailed(w, e.Why, "")
			} else if e.OOM {
				c.oomExited(w, e.Why) // memory.go
			} else {
				c.exited(w, e.Why)
			}
		}
	case TaskFinished:
		return c.finished(e)
	case WorkerBlocked:
		return c.blocked(e.Worker, true)
	case WorkerUnblocked:
		return c.blocked(e.Worker, false)
	case Cancel:
		c.cancel(e.Task, e.Force, e.Recursive)
	case KillActor:
		return c.killActor(e)
	case GroupCreate:
		return c.groupCreate(e)
	case GroupRemove:
		c.groupRemove(e.Group)
	case ObjectAt:
		if e.Node < 0 || int(e.Node) >= len(c.nodes) {
			return fmt.Errorf("object on unknown node %d", e.Node)
		}
		o := c.objects[e.Object]
		if o == nil {
			o = &objLoc{size: e.Size}
			c.objects[e.Object] = o
		}
		for _, n := range o.nodes {
			if n == e.Node {
				return nil
			}
		}
		o.nodes = append(o.nodes, e.Node)
	case ObjectGone:
		delete(c.objects, e.Object)
	default:
		return fmt.Errorf("[internal error] unknown event %T", ev)
	}
	return nil
}

func (c *Core) nodeJoined(e NodeJoined) error {
	if id, ok := c.nodeByName[e.Name]; ok && c.nodes[id].alive {
		return fmt.Errorf("node %q joined twice", e.Name)
	}
	id := NodeID(len(c.nodes))
	gpus := insertSorted(nil, e.GPUs...)
	nd := &node{id: id, name: e.Name, total: e.Total.Clone(), avail: e.Total.Clone(), gpus: gpus,
		allGPUs: append([]int(nil), gpus...), alive: true, pool: map[poolKey]*poolState{}, labels: e.Labels}
	nd.maxProc = e.MaxWorkers
	if nd.maxProc <= 0 {
		nd.maxProc = c.cfg.MaxWorkersPerNode
	}
	if nd.maxProc <= 0 {
		nd.maxProc = max(64, 4*int(e.Total["CPU"]))
	}
	c.nodes = append(c.nodes, nd)
	c.nodeByName[e.Name] = id
	c.nodeGen++
	c.released(id)
	c.groupsDirty = true
	return nil
}

func (c *Core) nodeLost(e NodeLost) error {
	if e.Node < 0 || int(e.Node) >= len(c.nodes) {
		return fmt.Errorf("lost unknown node %d", e.Node)
	}
	nd := c.nodes[e.Node]
	if !nd.alive {
		return nil
	}
	nd.alive = false
	c.nodeGen++
	why := "node " + nd.name + " was lost"
	if e.Why != "" {
		why += " (" + e.Why + ")"
	}
	// its workers are gone with it: their tasks retry and their actors restart elsewhere
	for _, w := range c.sortedWorkers(func(w *worker) bool { return w.node == nd.id }) {
		if w.state == wStarting {
			t := w.forTask
			c.workerGone(w)
			if t != nil && t.state == tPlaced {
				t.worker = nil
				c.unplace(t)
				c.enqueue(t, true)
			}
			continue
		}
		c.exited(w, why)
	}
	// tasks placed there and waiting for a worker go back to their queues
	for _, p := range sortedPools(nd) {
		waiting := append(append([]*task(nil), p.waiting...), p.dedicated...)
		p.waiting, p.dedicated = nil, nil
		for _, t := range waiting {
			if t.state == tPlaced && t.worker == nil {
				c.unplace(t)
				c.enqueue(t, true)
			}
		}
	}
	nd.idle = nil
	c.groupsNodeLost(nd)
	// queues parked on room that no longer exists may now be infeasible: wake them once
	for _, q := range append([]*queue(nil), c.qorder...) {
		if q.parked {
			q.parked = false
			c.dispatch(q)
		}
	}
	return nil
}

func (c *Core) sortedWorkers(keep func(*worker) bool) []*worker {
	var ws []*worker
	for _, w := range c.workers {
		if keep(w) {
			ws = append(ws, w)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].id < ws[j].id })
	return ws
}

func (c *Core) sortedJobs() []JobID {
	js := make([]JobID, 0, len(c.jobs))
	for id := range c.jobs {
		js = append(js, id)
	}
	sort.Slice(js, func(i, j int) bool { return js[i] < js[j] })
	return js
}

func (c *Core) submitted(e Submitted) error {
	j := c.jobs[e.Job]
	if j == nil || j.ended {
		return fmt.Errorf("task %d of job %d, which is not running", e.Task, e.Job)
	}
	if c.tasks[e.Task] != nil {
		return fmt.Errorf("task %d submitted twice", e.Task)
	}
	for k, v := range e.Res {
		if v < 0 {
			return fmt.Errorf("%s asks for %g of %s; resource amounts must not be negative", e.Name, v, k)
		}
	}
	res := Resources{}
	for k, v := range e.Res {
		if v > 0 {
			res[k] = v
		}
	}
	if e.Policy != nil {
		if err := e.Policy.Validate(); err != nil {
			return fmt.Errorf("%s: %w", e.Name, err)
		}
	}
	t := &task{id: e.Task, job: e.Job, env: e.Env, kind: e.Kind, shape: c.shapeOf(res), bundle: -1, took: -1, node: NoNode,
		origin: e.Origin, retriesLeft: int32(e.Retries), parent: e.Parent, args: e.Args, name: e.Name, pol: e.Policy}
	if e.Origin < 0 || int(e.Origin) >= len(c.nodes) {
		t.origin = NoNode
	}
	c.tasks[t.id] = t
	j.tasks[t.id] = t
	if p := c.tasks[e.Parent]; p != nil && e.Parent != 0 {
		p.children = append(p.children, t.id)
	}
	if e.Group != 0 {
		g := c.groups[e.Group]
		if g == nil || g.state == groupRemoved {
			c.failTask(t, ErrKindInfeasible, fmt.Sprintf("%s was scheduled in placement group %d, which does not exist or was removed", e.Name, e.Group))
			return nil
		}
		if e.Bundle >= len(g.bundles) {
			c.failTask(t, ErrKindInfeasible, fmt.Sprintf("%s asks for bundle %d of a placement group of %d bundles", e.Name, e.Bundle, len(g.bundles)))
			return nil
		}
		if !g.canEverFit(res, e.Bundle) {
			c.failTask(t, ErrKindInfeasible, fmt.Sprintf("%s needs %s, more than its placement group bundle holds", e.Name, res))
			return nil
		}
		t.group = g
		if e.Bundle >= 0 {
			t.bundle = int32(e.Bundle)
		}
	}
	c.enqueue(t, false)
	return nil
}

// finished handles a task's answer.
func (c *Core) finished(e TaskFinished) error {
	t := c.tasks[e.Task]
	if t == nil {
		return nil // failed or cancelled meanwhile
	}
	if t.state != tRunning {
		return fmt.Errorf("task %d finished but was not running", e.Task)
	}
	w := t.worker
	if t.kind == KindActor {
		if e.Failed {
			t.noRestart = true
			c.emit(KillWorker{Worker: w.id, Why: "its actor's constructor raised"})
			c.workerGone(w)
			t.worker = nil
			c.unplace(t)
			c.actorDead(t, ErrKindActorDied, "its constructor raised")
		}
		return nil // the actor lives on w
	}
	t.worker = nil
	retry := e.Retry && c.CanRetry(t.id)
	if !retry {
		c.forget(t)
	}
	// the worker goes idle before the task's resources come back, so that the task placed
	// on that room takes this worker instead of starting one
	if w != nil && w.state != wDead {
		if w.blocked {
			w.blocked = false
			c.poolOf(c.nodes[w.node], w.pool()).blocked--
		}
		if e.WorkerExits {
			c.workerExits(w)
		} else {
			c.idle(w)
		}
	}
	c.unplace(t)
	if retry {
		c.retryTask(t, "it raised an exception that retry_exceptions names")
	}
	return nil
}

// exited handles a connected worker's death.
func (c *Core) exited(w *worker, why string) {
	t := w.task
	c.workerGone(w)
	if t == nil || t.state != tRunning {
		c.released(w.node)
		return
	}
	t.worker = nil
	c.unplace(t)
	j := c.jobs[t.job]
	if t.kind == KindActor {
		if t.noRestart || t.retriesLeft == 0 || j == nil || j.ended {
			c.actorDead(t, ErrKindActorDied, "its worker died ("+why+")")
			return
		}
		if t.retriesLeft > 0 {
			t.retriesLeft--
		}
		t.attempt++
		c.emit(ActorRestarting{Task: t.id, Why: why})
		c.enqueue(t, true)
		return
	}
	if t.cancelled {
		c.failTask(t, ErrKindCancelled, t.name+" was cancelled")
		return
	}
	if t.retriesLeft == 0 || j == nil || j.ended {
		c.failTask(t, ErrKindWorkerDied, fmt.Sprintf("the worker running %s died (%s) and no retries were left", t.name, why))
		return
	}
	c.retryTask(t, why)
}

// retryTask runs t again after a backoff, one retry fewer left.
func (c *Core) retryTask(t *task, why string) {
	if t.retriesLeft > 0 {
		t.retriesLeft--
	}
	t.attempt++
	c.emit(Retry{Task: t.id, Attempt: int(t.attempt), Why: why})
	t.notBefore = c.now + c.backoff(t.attempt)
	if t.notBefore <= c.now {
		c.enqueue(t, true)
		return
	}
	c.delay(t)
}

// workerExits forgets a worker that leaves after its task (max_calls); tasks waiting for a
// worker on its node get a new one.
func (c *Core) workerExits(w *worker) {
	c.emit(KillWorker{Worker: w.id, Why: "it ran its function max_calls times"})
	w.task = nil
	c.workerGone(w)
	c.startPool(c.nodes[w.node], w.pool())
}

func (c *Core) blocked(id WorkerID, on bool) error {
	w := c.workers[id]
	if w == nil {
		return nil
	}
	t := w.task
	if t == nil || t.kind != KindTask || w.blocked == on {
		return nil
	}
	nd := c.nodes[w.node]
	w.blocked = on
	p := c.poolOf(nd, w.pool())
	if on {
		p.blocked++
		t.lent = true
		if t.took >= 0 && t.group != nil && t.group.state == groupPlaced {
			t.group.avail[t.took].Add(t.shape.res)
			c.groupReleased(t.group)
		} else {
			nd.avail.Add(t.shape.res)
		}
		c.released(nd.id)
		c.startPool(nd, w.pool())
		return nil
	}
	p.blocked--
	if t.lent {
		t.lent = false
		if t.took >= 0 && t.group != nil && t.group.state == groupPlaced {
			t.group.avail[t.took].Sub(t.shape.res)
		} else {
			nd.avail.Sub(t.shape.res)
		}
	}
	return nil
}

// failTask fails t and forgets it.
func (c *Core) failTask(t *task, kind, msg string) {
	c.forget(t)
	c.emit(Fail{Task: t.id, Kind: kind, Msg: msg})
}

func (c *Core) actorDead(t *task, kind, msg string) {
	c.forget(t)
	_ = kind
	c.emit(ActorDied{Task: t.id, Why: msg})
}

// forget removes t from the tables (its resources are given back by unplace).
func (c *Core) forget(t *task) {
	t.state = tDone
	delete(c.tasks, t.id)
	if j := c.jobs[t.job]; j != nil {
		delete(j.tasks, t.id)
	}
	if p := c.tasks[t.parent]; p != nil {
		for i, x := range p.children {
			if x == t.id {
				p.children = append(p.children[:i], p.children[i+1:]...)
				break
			}
		}
	}
}

// cancel cancels a task as ray.cancel does.
func (c *Core) cancel(id TaskID, force, recursive bool) {
	t := c.tasks[id]
	if t == nil || t.kind == KindActor {
		return
	}
	if recursive {
		for _, ch := range append([]TaskID(nil), t.children...) {
			c.cancel(ch, force, true)
		}
	}
	switch t.state {
	case tQueued:
		c.failTask(t, ErrKindCancelled, t.name+" was cancelled before it ran")
	case tPlaced:
		if w := t.worker; w != nil && w.forTask == t {
			c.emit(KillWorker{Worker: w.id, Why: "the task it was started for was cancelled"})
			c.workerGone(w)
		}
		t.worker = nil
		c.unplace(t)
		c.failTask(t, ErrKindCancelled, t.name+" was cancelled before it ran")
	case tRunning:
		t.cancelled = true
		w := t.worker
		if !force {
			c.emit(Interrupt{Task: t.id, Worker: w.id})
			return
		}
		c.emit(KillWorker{Worker: w.id, Why: "its task was cancelled with force=True"})
		c.exited(w, "cancelled")
	}
}

func (c *Core) killActor(e KillActor) error {
	t := c.tasks[e.Task]
	if t == nil {
		return nil
	}
	if t.kind != KindActor {
		return fmt.Errorf("task %d is not an actor", e.Task)
	}
	if e.NoRestart {
		t.noRestart = true
	}
	switch t.state {
	case tQueued:
		c.actorDead(t, ErrKindActorDied, "it was killed before it started")
	case tPlaced:
		if w := t.worker; w != nil {
			c.emit(KillWorker{Worker: w.id, Why: "its actor was killed"})
			c.workerGone(w)
		}
		t.worker = nil
		c.unplace(t)
		c.actorDead(t, ErrKindActorDied, "it was killed before it started")
	case tRunning:
		w := t.worker
		c.emit(KillWorker{Worker: w.id, Why: "its actor was killed"})
		c.exited(w, "killed")
	}
	return nil
}

func (c *Core) jobEnded(id JobID) {
	j := c.jobs[id]
	if j == nil || j.ended {
		return
	}
	j.ended = true
	ids := make([]TaskID, 0, len(j.tasks))
	for tid := range j.tasks {
		ids = append(ids, tid)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	// queued tasks first, so that no release below places one of them
	for _, tid := range ids {
		if t := j.tasks[tid]; t != nil && t.state == tQueued {
			c.endOfJob(t)
		}
	}
	for _, w := range c.sortedWorkers(func(w *worker) bool { return w.job == id }) {
		c.emit(KillWorker{Worker: w.id, Why: "its job ended"})
		c.workerGone(w)
	}
	for _, tid := range ids {
		t := j.tasks[tid]
		if t == nil || t.state == tDone {
			continue
		}
		t.worker = nil
		c.unplace(t)
		c.endOfJob(t)
	}
	for _, g := range c.sortedGroups() {
		if g.job == id {
			c.groupRemove(g.id)
		}
	}
	for _, nd := range c.nodes {
		for k := range nd.pool {
			if k.job == id {
				delete(nd.pool, k)
			}
		}
	}
	for _, q := range append([]*queue(nil), c.qorder...) {
		if q.key.job == id {
			c.dropQueue(q)
		}
	}
	delete(c.jobs, id)
	for _, nd := range c.nodes {
		if nd.alive {
			c.released(nd.id)
		}
	}
}

func (c *Core) endOfJob(t *task) {
	if t.kind == KindActor {
		c.actorDead(t, ErrKindActorDied, "its job ended")
	} else {
		c.failTask(t, ErrKindJobEnded, t.name+": its job ended")
	}
}
