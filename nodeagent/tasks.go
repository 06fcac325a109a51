package nodeagent

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/shoal-hpc/shoal/nodeagent/confine"
	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// Task lifecycle inside the agent:
//
//	SUBMIT ──> waiting for deps ──> ready queue ──> running on a worker ──> DONE ──> finished
//	                                     ^                 │ worker died
//	                                     └── retry ────────┘ (max_retries left)

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
	id       string
	driver   *client
	lang     string
	exe      string
	path     []string
	cwd      string
	idle     []*worker
	starting int
	workers  map[string]*worker
	ended    bool
	nextW    int
}

type worker struct {
	id      string
	job     *job
	cmd     *exec.Cmd
	client  *client
	exited  chan struct{}
	task    *task
	actor   *actor
	blocked bool
	blockW  *waiter // the waiter that blocked it
	dead    bool
	fnsSent map[wire.ID]bool
	forAct  *actor // started for this actor's creation
	gpus    []int  // the GPUs this worker owns (CUDA_VISIBLE_DEVICES)
	node    *node  // the node it runs on
	group   *confine.Group
	pending *task // a GPU task waiting for this worker, started for it
}

func (w *worker) signal(sig syscall.Signal) {
	if w.node != nil && w.node.member != nil {
		if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
			w.node.member.conn.Send(wire.TKillWorker, 0, &wire.WorkerExit{Worker: w.id})
		}
		return
	}
	if w.cmd != nil && w.cmd.Process != nil {
		syscall.Kill(-w.cmd.Process.Pid, sig)
		w.cmd.Process.Signal(sig)
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
	owner       *client
	job         *job
	res         sched.Resources
	resKey      string
	pendingDeps int
	worker      *worker
	retriesLeft int
	finished    bool
	pg          *pgroup
	bundle      int // bundle the resources came from, -1 for the node
	actor       *actor
	allocated   bool
	gpus        []int
	node        *node // where the resources were taken (nil until then)
}

func resKey(r sched.Resources) string { return r.String() }

func (a *Agent) newJob(c *client, au *wire.Auth) *job {
	a.nextJob++
	j := &job{id: fmt.Sprintf("%s-%04x", a.cfg.ClusterID[:8], a.nextJob), driver: c, lang: au.Lang, exe: au.Exe,
		path: au.Path, cwd: au.Cwd, workers: map[string]*worker{}}
	a.jobs[j.id] = j
	if a.head != nil {
		if err := a.head.StartJob(j.id, au.PID, au.Exe); err != nil {
			a.log.Warn("record job", "job", j.id, "error", err)
		}
	}
	a.log.Debug("driver connected", "job", j.id, "pid", au.PID, "lang", au.Lang)
	if j.lang == "python" {
		n := a.cfg.PrestartWorkers
		for i := 0; i < n; i++ {
			a.spawnWorker(j, nil)
		}
	}
	return j
}

func (a *Agent) endJob(j *job, reason string) {
	if j.ended {
		return
	}
	j.ended = true
	for _, w := range j.workers {
		w.signal(syscall.SIGKILL)
	}
	for _, ac := range a.actors {
		if ac.job == j && ac.state != actorDead {
			a.actorDead(ac, "its job ended: "+reason)
		}
	}
	keep := a.ready[:0]
	for _, t := range a.ready {
		if t == nil {
			continue
		}
		if t.job == j {
			a.finish(t)
		} else {
			keep = append(keep, t)
		}
	}
	a.ready = keep
	for _, pg := range a.pgs {
		if pg.job == j {
			a.removePG(pg.id)
		}
	}
	delete(a.jobs, j.id)
	a.cfg.Observer.EndJob(j.id) // obs: what the job left live
	if a.head != nil {
		a.head.EndJob(j.id, "FINISHED")
	}
	a.log.Debug("job ended", "job", j.id, "reason", reason)
}

// submit handles SUBMIT.
func (a *Agent) submit(c *client, m *wire.Task) error {
	if c.job == nil || c.job.ended {
		return fmt.Errorf("this connection (role %s) cannot submit tasks", c.role)
	}
	if m.Nret < 0 || m.Nret > 1<<16 {
		return fmt.Errorf("task %s asks for %d return values", m.Name, m.Nret)
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
	t := &task{spec: m, owner: c, job: c.job, res: res, resKey: resKey(res), retriesLeft: m.Retries, bundle: -1}
	for i := 0; i < m.Nret; i++ {
		a.store.Expect(m.Task.WithIndex(uint32(i+1)), c.id)
	}
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
		if m.Bundle >= len(pg.bundles) {
			a.fail(t, "infeasible", fmt.Sprintf("%s asks for bundle %d of placement group %s, which has %d bundles", m.Name, m.Bundle, m.PG, len(pg.bundles)))
			return nil
		}
		t.pg = pg
		if !pg.canEverFit(res, m.Bundle) {
			a.fail(t, "infeasible", fmt.Sprintf("%s needs %s, more than its placement group bundle holds", m.Name, res))
			return nil
		}
	} else if big := a.biggestNode(res); !big.total.Fits(res) {
		a.fail(t, "infeasible", fmt.Sprintf("%s needs %s but no node of the cluster has that much: the largest offers %s (%s); ask for less or start the cluster with more (e.g. shoal run --num-cpus)",
			m.Name, res, big.total, big.total.Missing(res)))
		return nil
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
			a.fail(t, "object_lost", fmt.Sprintf("%s: argument %s was freed before the task ran", t.spec.Name, d))
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
		a.ready = append(a.ready, t)
		a.schedule()
	}
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
	for _, d := range t.spec.Deps {
		a.store.Unpin(d)
	}
	for _, r := range t.spec.Refs {
		a.store.Unpin(r)
	}
	if !t.spec.ArgObj.IsZero() {
		a.store.Unpin(t.spec.ArgObj)
	}
	if t.allocated && t.spec.Kind == wire.KindTask {
		a.releaseRes(t)
	}
	if t.spec.Kind == wire.KindTask && t.gpus != nil {
		a.freeGPUs(t.node, t.gpus)
		t.gpus = nil
	}
	if t.worker != nil && t.worker.task == t {
		t.worker.task = nil
	}
	if t.spec.Kind != wire.KindActorCreate || t.actor == nil || t.actor.state == actorDead {
		delete(a.tasks, t.spec.Task)
	}
}

func (a *Agent) releaseRes(t *task) {
	if !t.allocated {
		return
	}
	t.allocated = false
	if w := t.worker; w != nil && w.blocked && w.task == t {
		// given back already while the worker waited; the wait no longer blocks this task
		w.blocked = false
		if w.blockW != nil {
			w.blockW.blocked = false
			w.blockW = nil
		}
		return
	}
	a.pool(t).Add(t.res)
}

// pool returns the resources t draws from: the node's, or its placement-group bundle's (the
// node's again once the group is removed).
func (a *Agent) pool(t *task) sched.Resources {
	if t.pg != nil && t.pg.state == pgCreated && t.bundle >= 0 {
		return t.pg.avail[t.bundle]
	}
	if t.node != nil {
		return t.node.avail
	}
	return a.avail
}

// tryAlloc takes t's resources if they fit now.
func (a *Agent) tryAlloc(t *task) bool {
	if t.pg == nil {
		n := a.pickNode(t)
		if n == nil {
			return false
		}
		n.avail.Sub(t.res)
		t.node = n
		t.bundle = -1
		t.allocated = true
		return true
	}
	if t.pg.state != pgCreated {
		return false
	}
	for i := range t.pg.bundles {
		if t.spec.Bundle >= 0 && i != t.spec.Bundle {
			continue
		}
		if t.pg.avail[i].Fits(t.res) {
			t.pg.avail[i].Sub(t.res)
			t.bundle = i
			t.node = t.pg.nodes[i]
			t.allocated = true
			return true
		}
	}
	return false
}

// schedule places ready tasks on idle workers, starting workers where needed, and retries
// pending placement groups. It looks at no more than scanMax waiting tasks per call, so a long
// queue costs O(1) per event; runnable tasks are nearly always at the front (FIFO).
func (a *Agent) schedule() {
	if a.closed {
		return
	}
	a.placePending()
	if len(a.ready) == 0 {
		return
	}
	const scanMax = 128
	blocked := map[string]bool{}
	need := map[jobNode]int{}
	scanned, end := 0, 0
	for i := 0; i < len(a.ready) && scanned < scanMax; i++ {
		end = i + 1
		t := a.ready[i]
		if t == nil {
			continue
		}
		if t.finished {
			a.ready[i] = nil
			continue
		}
		scanned++
		key := t.resKey
		if t.pg != nil {
			key += t.pg.id.String()
		}
		if blocked[key] || t.job.ended {
			continue
		}
		if !a.fitsNow(t) {
			blocked[key] = true
			continue
		}
		if n := gpuCount(t.res["GPU"]); n > 0 {
			nd, ids := a.placeGPUTask(t, n)
			if nd == nil {
				blocked[key] = true
				continue
			}
			a.takeGPUs(nd, ids)
			t.gpus = ids
			a.ready[i] = nil
			if w := a.idleWorkerOn(t.job, nd, gpuKey(ids)); w != nil {
				a.run(t, w)
			} else if w := a.spawnWorkerOn(t.job, nil, ids, nd); w != nil {
				w.pending = t
				t.worker = w
			} else {
				a.releaseGPUTask(t)
				a.fail(t, "worker_died", fmt.Sprintf("%s: could not start a worker for GPUs %s", t.spec.Name, gpuKey(ids)))
			}
			continue
		}
		n := a.nodeFor(t)
		w := a.idleWorkerOn(t.job, n, "")
		if w == nil {
			need[jobNode{t.job, n}]++
			continue
		}
		a.tryAlloc(t)
		a.ready[i] = nil
		a.run(t, w)
	}
	// squeeze the holes out of the scanned prefix and drop them from the front
	k := end
	for i := end - 1; i >= 0; i-- {
		if a.ready[i] != nil {
			k--
			a.ready[k] = a.ready[i]
		}
	}
	for i := 0; i < k; i++ {
		a.ready[i] = nil
	}
	a.ready = a.ready[k:]
	for jn, n := range need {
		a.ensureWorkers(jn.j, jn.n, n)
	}
}

type jobNode struct {
	j *job
	n *node
}

// fitsNow reports whether t's resources are available now, without taking them.
func (a *Agent) fitsNow(t *task) bool {
	if t.pg == nil {
		return a.pickNode(t) != nil
	}
	if t.pg.state != pgCreated {
		return false
	}
	for i := range t.pg.bundles {
		if (t.spec.Bundle < 0 || i == t.spec.Bundle) && t.pg.avail[i].Fits(t.res) {
			return true
		}
	}
	return false
}

func (a *Agent) idleWorker(j *job) *worker { return a.idleWorkerOn(j, a.local, "") }

// idleWorkerFor takes an idle worker of j on this node that owns exactly the GPU set key.
func (a *Agent) idleWorkerFor(j *job, key string) *worker { return a.idleWorkerOn(j, a.local, key) }

// idleWorkerOn takes an idle worker of j on node n that owns exactly the GPU set key.
func (a *Agent) idleWorkerOn(j *job, n *node, key string) *worker {
	for i := len(j.idle) - 1; i >= 0; i-- {
		w := j.idle[i]
		if w.dead || w.task != nil || w.actor != nil {
			j.idle = append(j.idle[:i], j.idle[i+1:]...)
			continue
		}
		if w.node == n && gpuKey(w.gpus) == key {
			j.idle = append(j.idle[:i], j.idle[i+1:]...)
			return w
		}
	}
	return nil
}

// releaseGPUTask gives back what a GPU task took before it ran.
func (a *Agent) releaseGPUTask(t *task) {
	a.freeGPUs(t.node, t.gpus)
	t.gpus = nil
	if t.allocated {
		t.allocated = false
		a.pool(t).Add(t.res)
	}
}

// ensureWorkers starts workers for n runnable tasks that have none: a few at a time, and no
// more task workers in all than the node has CPUs (plus two spares for tasks that need none).
func (a *Agent) ensureWorkers(j *job, nd *node, n int) {
	limit := int(nd.total["CPU"]) + 2
	if limit < 4 {
		limit = 4
	}
	pool, starting, blocked := 0, 0, 0
	for _, w := range j.workers {
		if w.node != nd || w.dead {
			continue
		}
		if w.client == nil {
			starting++
		}
		if w.blocked {
			blocked++
		}
		if w.actor == nil && w.forAct == nil {
			pool++
		}
	}
	for starting < n && starting < limit && pool < limit+blocked {
		pool++
		starting++
		if a.spawnWorkerOn(j, nil, nil, nd) == nil {
			return
		}
	}
}

// run sends t to w.
func (a *Agent) run(t *task, w *worker) {
	t.worker = w
	if t.spec.Kind == wire.KindActorCreate {
		ac := t.actor
		ac.worker = w
		w.actor = ac
	} else {
		w.task = t
	}
	a.exec(t, w)
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
	case wire.KindTask:
		a.finish(t)
		w.task = nil
		if !w.dead {
			w.job.idle = append(w.job.idle, w)
		}
		a.schedule()
	case wire.KindActorCreate:
		a.actorCreated(t.actor, m.Err, m.Rets)
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

// blockWorker gives a waiting worker's CPUs back; it reports whether it did.
func (a *Agent) blockWorker(w *worker) bool {
	t := w.task
	if t == nil || w.blocked || !t.allocated {
		return false
	}
	a.pool(t).Add(t.res)
	w.blocked = true
	a.schedule()
	return true
}

func (a *Agent) unblockWorker(w *worker) {
	if w == nil || !w.blocked {
		return
	}
	w.blocked = false
	w.blockW = nil
	if t := w.task; t != nil && t.allocated {
		a.pool(t).Sub(t.res)
	}
}

// spawnWorker starts a worker process for j on this node that owns no GPUs.
func (a *Agent) spawnWorker(j *job, forAct *actor) *worker {
	return a.spawnWorkerOn(j, forAct, nil, a.local)
}

// spawnWorkerGPUs starts a worker process for j on this node that owns the GPUs gpus.
func (a *Agent) spawnWorkerGPUs(j *job, forAct *actor, gpus []int) *worker {
	return a.spawnWorkerOn(j, forAct, gpus, a.local)
}

// spawnWorkerOn starts a worker process for j on node nd: here, or through nd's member agent.
func (a *Agent) spawnWorkerOn(j *job, forAct *actor, gpus []int, nd *node) *worker {
	if a.closed || a.stopping || j.ended || nd == nil || !nd.alive {
		return nil // the cluster is going away: a worker started now could outlive it
	}
	if nd.member != nil {
		return a.spawnRemote(j, forAct, nd, gpus)
	}
	j.nextW++
	id := fmt.Sprintf("%s-w%d", j.id, j.nextW)
	var cmd *exec.Cmd
	switch j.lang {
	case "python":
		cmd = exec.Command(j.exe, "-u", "-m", "shoal._worker")
	case "go":
		cmd = exec.Command(j.exe)
	default:
		a.log.Error("cannot start workers for this driver's language", "job", j.id, "lang", j.lang)
		return nil
	}
	env := os.Environ()
	if a.cfg.Scrub != nil {
		env = a.cfg.Scrub(env)
	}
	env = filterEnv(env, "SHOAL_", "PYTHONPATH=")
	env = append(env, a.workerEnv(j, id, a.local)...)
	env = append(env, a.gpuEnv(a.local, gpus)...)
	cmd.Env = env
	if j.cwd != "" {
		if st, err := os.Stat(j.cwd); err == nil && st.IsDir() {
			cmd.Dir = j.cwd
		}
	}
	cmd.Stdout, cmd.Stderr = a.workerOutput(j.id, id) // obs: per-task logs (observe.go)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	w := &worker{id: id, job: j, cmd: cmd, exited: make(chan struct{}), fnsSent: map[wire.ID]bool{}, forAct: forAct, gpus: gpus, node: a.local}
	cg, err := a.confineWorker(w)
	if err != nil {
		a.log.Error("confine worker; starting it unconfined", "worker", id, "error", err)
	}
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(cg.Fd())
	}
	err = cmd.Start()
	if cg != nil {
		cg.Close()
	}
	if err != nil {
		a.closeGroup(w)
		a.log.Error("start worker", "job", j.id, "exe", j.exe, "error", err)
		return nil
	}
	a.setAffinity(cmd.Process.Pid, gpuCPUs(a.cfg.GPUs, a.cfg.CPUs, gpus))
	j.starting++
	j.workers[id] = w
	a.workers[id] = w
	go func() {
		err := cmd.Wait()
		a.mu.Lock()
		defer a.mu.Unlock()
		close(w.exited)
		why := "exited"
		if err != nil {
			why = err.Error()
		}
		a.workerLost(w, "worker process "+why)
		a.closeGroup(w)
		delete(a.workers, w.id)
		delete(w.job.workers, w.id)
		a.schedule()
	}()
	return w
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
	w.job.starting--
	if t := w.pending; t != nil {
		w.pending = nil
		if !t.finished {
			a.run(t, w)
			return
		}
	}
	w.job.idle = append(w.job.idle, w)
	a.schedule()
}

// workerLost handles a worker whose connection closed or whose process exited.
func (a *Agent) workerLost(w *worker, why string) {
	if w.dead {
		return
	}
	w.dead = true
	if w.client == nil {
		w.job.starting--
		if !w.job.ended && !a.closed {
			a.log.Warn("worker exited before connecting", "worker", w.id, "reason", why)
		}
	}
	w.signal(syscall.SIGKILL)
	if t := w.pending; t != nil && !t.finished {
		w.pending = nil
		t.worker = nil
		a.releaseGPUTask(t)
		if t.spec.Kind == wire.KindActorCreate {
			a.actorDead(t.actor, "its worker could not start ("+why+")")
		} else {
			a.fail(t, "worker_died", fmt.Sprintf("the worker started for %s exited before it connected (%s)", t.spec.Name, why))
		}
	}
	if t := w.task; t != nil && !t.finished {
		a.releaseRes(t)
		w.task = nil
		t.worker = nil
		if t.retriesLeft != 0 && !w.job.ended {
			if t.retriesLeft > 0 {
				t.retriesLeft--
			}
			t.spec.Attempt++
			a.observe(t, obs.Retrying, why) // obs:
			a.log.Warn("worker died while running a task; retrying", "task", t.spec.Name, "worker", w.id, "attempt", t.spec.Attempt, "reason", why)
			a.ready = append([]*task{t}, a.ready...)
		} else {
			a.fail(t, "worker_died", fmt.Sprintf("the worker running %s died (%s) and no retries were left (max_retries=%d)", t.spec.Name, why, t.spec.Retries))
		}
	}
	if ac := w.actor; ac != nil && ac.worker == w {
		a.actorWorkerDied(ac, why)
	}
}
