package nodeagent

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// Task lifecycle in the shell (the core has its own, sched/core.go):
//
//	SUBMIT ──> waiting for its arguments (depWait) ──> the core ──Run──> sent to a worker ──> DONE
//	                                                      │ Fail / Retry (the core decided)
//	actor method calls skip the core: they queue on their actor, in order (actors.go)

type client struct {
	id     uint64
	conn   *wire.Conn
	role   string
	lang   string
	pid    int
	job    *job
	worker *worker
	remote bool          // connected over TCP: cannot map this node's store, gets bytes inline
	member *node         // a member agent's connection
	gone   chan struct{} // closed when the connection's reader has ended
}

type job struct {
	id      string
	cid     sched.JobID
	driver  *client
	lang    string
	exe     string
	path    []string
	cwd     string
	workers map[string]*worker
	ended   bool
	ns      string // the driver's namespace (init(namespace=)), which its workers get
}

type worker struct {
	id      string
	cid     sched.WorkerID
	job     *job
	procs   *spawner // this node's spawner, for a worker of this node; nil for a member's
	client  *client
	exited  chan struct{}
	task    *task
	actor   *actor
	blocked bool
	blockW  *waiter // the waiter that blocked it
	// localBlock: it was blocked by its own BLOCK (waiting for tasks its member runs, local.go)
	localBlock bool
	dead       bool
	killed     bool // the core asked for it to be killed and has forgotten it
	fnsSent    map[wire.ID]bool
	gpus       []int    // the GPUs this worker owns (CUDA_VISIBLE_DEVICES)
	node       *node    // the node it runs on
	errTail    *tailBuf // the end of its stderr, once it exited
	// exitWhy is why its process exited, when that was seen before its connection closed
	// (processExited): the connection's last frames (ACTOR_EXIT, DONE) are read first.
	exitWhy  string
	connGone bool // its connection closed
	// the memory monitor (memmon.go): its task has a memory limit; it stopped the worker
	memLimited, oom bool
}

// drainGrace bounds how long a worker whose process exited is waited for by its connection
// (a child that inherited the socket could keep it open).
const drainGrace = time.Second

// processExited handles the end of w's process, seen by the spawner here or by a member's
// WORKER_EXIT. Its connection may still hold frames it sent just before it exited (an
// actor's ACTOR_EXIT from exit_actor(), a DONE): they must count before the exit does, or an
// actor that ended on purpose is restarted. So a connected worker is lost when its connection
// closes, which follows the process's death at once, and at the latest after drainGrace.
// (a.mu held)
func (a *Agent) processExited(w *worker, why string) {
	if w.client == nil || w.connGone {
		a.workerLost(w, why)
		return
	}
	w.exitWhy = why
	time.AfterFunc(drainGrace, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.workerLost(w, why)
	})
}

func (w *worker) signal(sig syscall.Signal) {
	if w.node != nil && w.node.member != nil {
		switch sig {
		case syscall.SIGKILL, syscall.SIGTERM:
			w.node.member.conn.Send(wire.TKillWorker, 0, &wire.WorkerExit{Worker: w.id})
		case syscall.SIGINT:
			w.node.member.conn.Send(wire.TKillWorker, 0, &wire.WorkerExit{Worker: w.id, Signal: int(syscall.SIGINT)})
		}
		return
	}
	if w.procs != nil {
		w.procs.signal(w.id, sig)
	}
}

// owns reports whether id is a return value of a task running on w.
func (w *worker) owns(id wire.ID) bool {
	tid := id.WithIndex(0)
	if w.task != nil && w.task.spec.Task == tid {
		return true
	}
	if w.actor != nil {
		if w.actor.create != nil && w.actor.create.spec.Task == tid {
			return true
		}
		for _, t := range w.actor.inflight {
			if t.spec.Task == tid {
				return true
			}
		}
	}
	return false
}

type task struct {
	spec        *wire.Task
	cid         sched.TaskID // its id in the core (0: never submitted to it)
	owner       *client
	job         *job
	res         sched.Resources
	pendingDeps int
	worker      *worker
	finished    bool
	pg          *pgroup
	actor       *actor
	gpus        []int
	node        *node // where it runs (nil until then)
	genNext     int   // a streaming generator's next yield (taskfeatures.go)
	cancelled   bool  // an actor call cancelled while it ran (taskfeatures.go)
}

func (a *Agent) newJob(c *client, au *wire.Auth) *job {
	a.nextJob++
	j := &job{id: fmt.Sprintf("%s-%04x", a.cfg.ClusterID[:8], a.nextJob), cid: sched.JobID(a.nextJob), driver: c, lang: au.Lang,
		exe: au.Exe, path: au.Path, cwd: au.Cwd, ns: au.NS, workers: map[string]*worker{}}
	a.jobs[j.id] = j
	a.coreJobs[j.cid] = j
	if a.head != nil {
		a.head.JobStarted(j.id, au.PID, au.Exe)
	}
	a.log.Debug("driver connected", "job", j.id, "pid", au.PID, "lang", au.Lang)
	pre := 0
	if j.lang == "python" {
		pre = a.cfg.PrestartWorkers
	}
	a.feed(sched.JobStarted{Job: j.cid, Driver: a.local.cid, Prestart: pre})
	return j
}

func (a *Agent) endJob(j *job, reason string) {
	if j.ended {
		return
	}
	j.ended = true
	a.feed(sched.JobEnded{Job: j.cid})
	for _, w := range j.workers {
		w.signal(syscall.SIGKILL)
	}
	// what the core never saw: tasks waiting for their arguments, actors not yet submitted
	for _, ac := range a.actors {
		if ac.job == j && ac.state != actorDead {
			a.actorDead(ac, "its job ended: "+reason)
		}
	}
	for _, t := range a.tasks {
		if t.job == j && !t.finished && t.cid == 0 {
			a.finish(t)
		}
	}
	for _, pg := range a.pgs {
		if pg.job == j {
			delete(a.pgs, pg.id)
			delete(a.coreGroups, pg.cid)
		}
	}
	delete(a.jobs, j.id)
	delete(a.coreJobs, j.cid)
	a.cfg.Observer.EndJob(j.id) // obs: what the job left live
	if a.head != nil {
		a.head.JobEnded(j.id, "FINISHED")
	}
	a.log.Debug("job ended", "job", j.id, "reason", reason)
}

// submit handles SUBMIT.
func (a *Agent) submit(c *client, m *wire.Task) error {
	return a.submitTask(c, m, true)
}

// submitTask takes task m of client c; expect false: c holds its return values' references
// already (an EXPECTed member-local task that its member handed back, local.go).
func (a *Agent) submitTask(c *client, m *wire.Task, expect bool) error {
	if c.job == nil || c.job.ended {
		return fmt.Errorf("this connection (role %s) cannot submit tasks", c.role)
	}
	if m.Nret < 0 || m.Nret > 1<<16 {
		return fmt.Errorf("task %s asks for %d return values", m.Name, m.Nret)
	}
	if err := checkRuntimeEnv(m); err != nil { // runtime_env.go
		return err
	}
	if len(m.Fnb) > 0 {
		a.fns[m.Fn] = m.Fnb
		m.Fnb = nil
	}
	res := sched.Resources{}
	for k, v := range m.Res {
		if v < 0 {
			return fmt.Errorf("task %s asks for %g of %s; resource amounts must not be negative", m.Name, v, k)
		}
		if v > 0 {
			res[k] = v
		}
	}
	t := &task{spec: m, owner: c, job: c.job, res: res}
	for i := 0; expect && i < m.Nret; i++ {
		a.store.Expect(m.Task.WithIndex(uint32(i+1)), c.id)
	}
	a.genExpect(t) // taskfeatures.go
	for _, d := range m.Deps {
		a.store.Pin(d)
	}
	for _, r := range m.Refs {
		a.store.Pin(r)
	}
	if !m.ArgObj.IsZero() {
		a.store.Pin(m.ArgObj)
	}
	a.tasks[m.Task] = t
	a.observe(t, obs.Submitted, "") // obs:
	if !m.PG.IsZero() {
		pg := a.pgs[m.PG]
		if pg == nil || pg.state == pgRemoved {
			a.fail(t, "infeasible", fmt.Sprintf("%s was scheduled in placement group %s, which does not exist or was removed", m.Name, m.PG))
			return nil
		}
		t.pg = pg
	}
	switch m.Kind {
	case wire.KindActorCreate:
		if err := a.newActor(t); err != nil {
			a.finish(t)
			for i := 0; i < m.Nret; i++ {
				a.store.Decref(m.Task.WithIndex(uint32(i+1)), c.id)
			}
			return err
		}
	case wire.KindActorMethod:
		ac := a.actors[m.Actor]
		if ac == nil {
			a.fail(t, "actor_died", fmt.Sprintf("%s: actor %s is unknown to this node (it was never created here or its job ended)", m.Name, m.Actor))
			return nil
		}
		if ac.state == actorDead {
			a.fail(t, "actor_died", fmt.Sprintf("%s: the actor is dead: %s", m.Name, ac.death))
			return nil
		}
		t.actor = ac
		ac.queue = append(ac.queue, t)
	}
	deps := m.Deps
	if !m.ArgObj.IsZero() {
		deps = append(append([]wire.ID{}, deps...), m.ArgObj)
	}
	for _, d := range deps {
		if !a.isReady(d) {
			t.pendingDeps++
			a.depWait[d] = append(a.depWait[d], t)
		}
	}
	if t.pendingDeps == 0 {
		a.depsReady(t)
	}
	return nil
}

// depsReady runs when every dependency of t is sealed: a failed dependency fails t with the
// same error; otherwise t goes to the ready queue (or its actor's queue).
func (a *Agent) depsReady(t *task) {
	if t.finished {
		return
	}
	deps := t.spec.Deps
	if !t.spec.ArgObj.IsZero() {
		deps = append(append([]wire.ID{}, deps...), t.spec.ArgObj)
	}
	for _, d := range deps {
		o := a.store.Lookup(d)
		if o == nil || o.Freed() {
			a.fail(t, "object_freed", fmt.Sprintf("%s: argument %s was freed before the task ran", t.spec.Name, d))
			a.afterFail(t)
			return
		}
		if o.Fmt == wire.FmtError {
			a.failWith(t, o.Inline)
			a.afterFail(t)
			return
		}
	}
	switch t.spec.Kind {
	case wire.KindActorMethod:
		a.flushActor(t.actor)
	default:
		a.toCore(t)
	}
}

// toCore submits t (a task or an actor's creation whose arguments are ready) to the core.
func (a *Agent) toCore(t *task) {
	if t.cid != 0 {
		return // an actor's creation runs again on restart: the core kept it
	}
	pol, err := a.policyOf(t) // taskfeatures.go
	if err != nil {
		a.fail(t, "infeasible", err.Error())
		a.afterFail(t)
		return
	}
	a.nextTask++
	t.cid = sched.TaskID(a.nextTask)
	a.coreTasks[t.cid] = t
	ev := sched.Submitted{Task: t.cid, Job: t.job.cid, Name: t.spec.Name, Res: t.res, Bundle: -1,
		Retries: t.spec.Retries, Origin: a.local.cid, Env: t.spec.RenvKey}
	if t.spec.Kind == wire.KindActorCreate {
		ev.Kind, ev.Retries = sched.KindActor, t.spec.Restarts
	}
	if t.pg != nil {
		ev.Group, ev.Bundle = t.pg.cid, t.spec.Bundle
	}
	if c := t.owner; c != nil {
		if w := c.worker; w != nil {
			if w.task != nil {
				ev.Parent = w.task.cid
			}
			if w.node != nil {
				ev.Origin = w.node.cid
			}
		} else if c.member == nil && c.remote {
			ev.Origin = sched.NoNode // a remote driver: no node of its own
		}
	}
	if t.pg == nil {
		ev.Policy = pol
	}
	for _, d := range t.spec.Deps {
		ev.Args = append(ev.Args, sched.ObjectID(d))
	}
	if !t.spec.ArgObj.IsZero() {
		ev.Args = append(ev.Args, sched.ObjectID(t.spec.ArgObj))
	}
	a.feed(ev)
}

func (a *Agent) afterFail(t *task) {
	if t.spec.Kind == wire.KindActorCreate && t.actor != nil {
		a.actorDead(t.actor, "its constructor's argument failed")
	}
	if t.spec.Kind == wire.KindActorMethod && t.actor != nil {
		a.flushActor(t.actor)
	}
}

// fail seals all of t's return values with an error and finishes t.
func (a *Agent) fail(t *task, kind, msg string) {
	a.observe(t, obs.Failed, kind) // obs:
	a.failWith(t, errorData(kind, msg))
}

func (a *Agent) failWith(t *task, data []byte) {
	a.observe(t, obs.Failed, "") // obs: (after fail's, which names the reason, a no-op)
	var objs []wire.Obj
	for i := 0; i < t.spec.Nret; i++ {
		id := t.spec.Task.WithIndex(uint32(i + 1))
		if o := a.store.SetError(id, data); o != nil {
			a.sealed(o)
			objs = append(objs, wire.Obj{ID: id, Fmt: wire.FmtError, Data: data})
		}
	}
	a.push(t.owner, objs)
	a.finish(t)
}

func (a *Agent) push(c *client, objs []wire.Obj) {
	if len(objs) == 0 || c == nil {
		return
	}
	if a.conns[c.id] != c {
		return
	}
	c.conn.Send(wire.TReady, 0, &wire.Ready{Objs: objs})
}

// finish releases what t holds: pins, resources (normal tasks) and its table entry.
func (a *Agent) finish(t *task) {
	if t.finished {
		return
	}
	t.finished = true
	a.genEnd(t) // taskfeatures.go
	for _, d := range t.spec.Deps {
		a.store.Unpin(d)
	}
	for _, r := range t.spec.Refs {
		a.store.Unpin(r)
	}
	if !t.spec.ArgObj.IsZero() {
		a.store.Unpin(t.spec.ArgObj)
	}
	if t.worker != nil && t.worker.task == t {
		t.worker.task = nil
	}
	if t.spec.Kind != wire.KindActorCreate || t.actor == nil || t.actor.state == actorDead {
		delete(a.tasks, t.spec.Task)
	}
}

func (a *Agent) exec(t *task, w *worker) {
	a.observe(t, obs.Running, "") // obs:
	spec := *t.spec
	spec.Attempt = t.spec.Attempt
	spec.GPUs = t.gpus
	if !w.fnsSent[spec.Fn] {
		spec.Fnb = a.fns[spec.Fn]
		w.fnsSent[spec.Fn] = true
	}
	deps := spec.Deps
	if !spec.ArgObj.IsZero() {
		deps = append(append([]wire.ID{}, deps...), spec.ArgObj)
	}
	if len(deps) > 0 {
		spec.Depv = make([]wire.Obj, len(deps))
		for i, d := range deps {
			spec.Depv[i] = a.objFor(w.client, d)
		}
	}
	w.client.conn.Send(wire.TExec, 0, &spec)
}

// done handles DONE from a worker.
func (a *Agent) done(c *client, m *wire.Done) error {
	w := c.worker
	if w == nil {
		return fmt.Errorf("DONE from a connection that is not a worker")
	}
	t := a.tasks[m.Task]
	if t == nil || t.worker != w || t.finished && t.spec.Kind != wire.KindActorCreate {
		return nil // a task that was failed meanwhile (its actor was killed, say)
	}
	if a.doneHook(w, t, m) { // taskfeatures.go: retry_exceptions, a cancelled actor call
		return nil
	}
	objs := make([]wire.Obj, 0, len(m.Rets))
	for _, r := range m.Rets {
		if r.ID.WithIndex(0) != t.spec.Task {
			return fmt.Errorf("DONE for task %s names object %s, which is not one of its return values", m.Task, r.ID)
		}
		if !r.Stored {
			if err := a.storeBytes(r.ID, r.Fmt, r.Data, r.Refs, 0); err != nil {
				a.log.Warn("store a task's return value", "task", t.spec.Name, "error", err)
			}
		}
		o := a.store.Lookup(r.ID)
		if o == nil || o.Freed() {
			continue
		}
		if o.Stored() || !o.Local() {
			objs = append(objs, wire.Obj{ID: o.ID, Fmt: o.Fmt, Size: o.Size})
		} else {
			objs = append(objs, wire.Obj{ID: o.ID, Fmt: o.Fmt, Data: nonNil(o.Inline)})
		}
	}
	a.push(t.owner, objs)
	if m.Err { // obs:
		a.observe(t, obs.Failed, "raised")
	} else {
		a.observe(t, obs.Finished, "")
	}
	switch t.spec.Kind {
	case wire.KindTask, wire.KindLease:
		a.finish(t)
		w.task = nil
		t.worker = nil
		if t.cid != 0 {
			delete(a.coreTasks, t.cid)
			a.feed(sched.TaskFinished{Task: t.cid, WorkerExits: m.Exit})
		}
	case wire.KindActorCreate:
		a.actorCreated(t.actor, m.Err, m.Rets)
		a.feed(sched.TaskFinished{Task: t.cid, Failed: m.Err})
	case wire.KindActorMethod:
		a.actorCallDone(t)
	}
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// blockWorker lends a waiting worker's resources out (the core decides what runs on them);
// it reports whether it did.
func (a *Agent) blockWorker(w *worker) bool {
	t := w.task
	if t == nil || w.blocked || t.cid == 0 {
		return false
	}
	w.blocked = true
	a.feed(sched.WorkerBlocked{Worker: w.cid})
	return true
}

func (a *Agent) unblockWorker(w *worker) {
	if w == nil || !w.blocked {
		return
	}
	w.blocked = false
	w.blockW = nil
	a.feed(sched.WorkerUnblocked{Worker: w.cid})
}

// startWorker starts the worker the core asked for: here, or through nd's member agent.
func (a *Agent) startWorker(j *job, nd *node, cid sched.WorkerID, gpus []int) error {
	if a.closed || a.stopping || j.ended || !nd.alive {
		return errors.New("the cluster is stopping") // a worker started now could outlive it
	}
	if j.lang != "python" && j.lang != "go" {
		return fmt.Errorf("cannot start workers for a driver in %q", j.lang)
	}
	id := fmt.Sprintf("%s-w%d", j.id, cid)
	w := &worker{id: id, cid: cid, job: j, exited: make(chan struct{}), fnsSent: map[wire.ID]bool{}, gpus: gpus, node: nd}
	if nd.member != nil {
		env := append(a.workerEnv(j, id, nd), a.gpuEnv(nd, gpus)...)
		env = filterEnv(env, "SHOAL_SECRET=") // never in SPAWN, whatever WorkerEnv holds
		if err := nd.member.conn.Send(wire.TSpawn, 0, &wire.Spawn{Worker: id, Argv: workerArgv(j), Env: env, Cwd: j.cwd, GPUs: gpus}); err != nil {
			return fmt.Errorf("ask node %s to start a worker: %w", nd.id, err)
		}
	} else if err := a.spawnLocal(w); err != nil {
		return err
	}
	j.workers[id] = w
	a.workers[id] = w
	a.coreWorkers[cid] = w
	return nil
}

// spawnLocal starts w's process on this node, through the node's spawner as a member does.
func (a *Agent) spawnLocal(w *worker) error {
	j := w.job
	env := append(a.workerEnv(j, w.id, a.local), a.gpuEnv(a.local, w.gpus)...)
	w.procs = a.procs
	out := func() (io.Writer, io.Writer) { return a.workerOutput(j.id, w.id) } // obs: per-task logs (observe.go)
	return a.procs.start(spawnSpec{Worker: w.id, Argv: workerArgv(j), Env: env, Cwd: j.cwd, GPUs: w.gpus, Output: out}, func(why, stderr string, oom bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		close(w.exited)
		w.oom = oom // memmon.go
		if stderr != "" {
			w.errTail = &tailBuf{max: 2048}
			w.errTail.Write([]byte(stderr))
		}
		a.processExited(w, "worker process "+why)
		delete(a.workers, w.id)
		delete(w.job.workers, w.id)
	})
}

func filterEnv(env []string, prefixes ...string) []string {
	out := env[:0:0]
	for _, e := range env {
		drop := false
		for _, p := range prefixes {
			if strings.HasPrefix(e, p) {
				drop = true
			}
		}
		if !drop {
			out = append(out, e)
		}
	}
	return out
}

// workerReady runs when a started worker connects.
func (a *Agent) workerReady(w *worker) {
	a.feed(sched.WorkerConnected{Worker: w.cid})
}

// workerLost handles a worker whose connection closed or whose process exited: the core
// decides what becomes of its task (retry) or actor (restart); calls in flight on an actor
// fail when it says the actor restarts or died.
func (a *Agent) workerLost(w *worker, why string) {
	if w.dead {
		return
	}
	w.dead = true
	if w.client == nil && !w.job.ended && !a.closed && !w.killed {
		a.log.Warn("worker exited before connecting", "worker", w.id, "reason", why)
	}
	w.signal(syscall.SIGKILL)
	if w.killed {
		return // the core forgot it when it asked for the kill
	}
	delete(a.coreWorkers, w.cid)
	if w.client == nil {
		a.feed(sched.WorkerStartFailed{Worker: w.cid, Why: why, Stderr: w.errTail.String()})
		return
	}
	a.feed(sched.WorkerExited{Worker: w.cid, Why: why, OOM: w.oom})
}
