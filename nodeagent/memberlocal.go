package nodeagent

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/wire"
)

// Member-local scheduling, the member's side (local.go has the head's; docs/architecture.md
// "Member-local scheduling"). A worker of this node submits a plain task here (LOCAL_SUBMIT on
// the store's socket); it runs on a worker that the head leased to this node for the task's job
// (one CPU each), which asks for tasks with LEASE_NEXT until the lease has been idle for
// leaseIdle. The submitter gets the value from here (LOCAL_GET) while this agent keeps it, and
// the head gets every value too (LOCAL_DONE), so a reference that leaves the submitter works as
// any other. A task that does not fit the rules of eligible, or that would wait here longer
// than spillAfter, is answered "spill" and goes to the head as before.
//
//	worker ──LOCAL_SUBMIT──> queue of its job ──> a leased worker's LEASE_NEXT ──EXEC──> it runs
//	leased worker ──LEASE_NEXT{done}──> kept for the submitter's LOCAL_GET, and LOCAL_DONE ──> head
//	more queued than leases ──LEASE_REQUEST{job, n}──> head (at most this node's CPUs leased)

// leaseIdle is how long a lease with no work is kept before it goes back to the head: long
// enough for a loop of submit-and-get, short enough that the CPU is back for the head's own
// placements (a large argument's node) at once.
const leaseIdle = 5 * time.Millisecond

// spillAfter: a task that would wait longer than this here (its queue's length times its
// function's mean time here, over the node's CPUs) goes to the head, which may run it on
// another node, when the head's last word says another node has a free CPU; past spillAlways
// it goes whatever the word (the others may have room by the time it would start here).
// Before a function's time is known, at most queueUnknown tasks per CPU wait.
const (
	spillAfter   = 50 * time.Millisecond
	spillAlways  = 2 * time.Second
	queueUnknown = 4
	queueMax     = 100_000 // per job, whatever the estimate
)

// The values and records of finished tasks go to the head in batches: at most doneBatch at a
// time, and none waits longer than doneWait (other readers than the submitter see a value at
// the head that much later; the submitter gets it here at once).
const (
	doneBatch = 64
	doneWait  = time.Millisecond
)

// retainMax bounds the bytes of inline values kept for their submitters' LOCAL_GET; past it a
// value is only at the head, where the submitter's get finds it.
const retainMax = 64 << 20

type localTask struct {
	spec      *wire.Task
	submitter uint64 // the store connection it came from
	owner     string // and its worker
	tries     int    // attempts started
	job       *localJob
	lease     *lease // running on (nil: queued)
	cancelled bool   // LOCAL_CANCEL: it ends as cancelled, not retried
	started   time.Time
}

type lease struct {
	id      wire.ID
	job     *localJob
	worker  string
	conn    *wire.Conn
	cid     uint64
	seq     uint64 // the LEASE_NEXT waiting for work (0: none)
	running *localTask
	fnsSent map[wire.ID]bool
	timer   *time.Timer
}

type localJob struct {
	id        string
	queue     []*localTask
	idle      []*lease
	held      int // leases that reached this node (idle or running)
	requested int // leases asked of the head and not yet here
}

type localResult struct {
	ret       wire.LocalRet
	submitter uint64
}

type localWaiter struct {
	conn *wire.Conn
	cid  uint64
	seq  uint64
	ids  []wire.ID
	done bool
}

type memberLocal struct {
	log  hclog.Logger
	send func(wire.Type, any) error // to the head node's agent
	// stored maps a value in this node's store for client cid (a use it RELEASEs); false if it
	// is not there any more
	stored func(id wire.ID, cid uint64) (wire.Obj, bool)
	signal func(worker string, sig syscall.Signal)
	cpus   int

	mu       sync.Mutex
	jobs     map[string]*localJob
	workers  map[string]string // worker id -> its job (from SPAWN)
	leases   map[wire.ID]*lease
	fns      map[wire.ID][]byte
	est      map[wire.ID]time.Duration // a function's mean time here (moving average)
	tasks    map[wire.ID]*localTask    // queued or running, by return value id
	results  map[wire.ID]*localResult  // values kept for their submitters
	retained int64
	waiters  map[wire.ID][]*localWaiter
	gone     map[uint64]bool // store connections that closed (their late tasks are dropped)
	// elsewhere is the free CPUs on the other nodes in the head's last word (HEARTBEAT's
	// answer); negative: no word yet
	elsewhere float64
	fnsHead   map[wire.ID]bool // functions whose code went to the head in a LOCAL_SPILL
	out       wire.LocalDone   // the next LOCAL_DONE
	outTimer  *time.Timer      // flushes out after doneWait (nil: none armed)
	closed    bool
}

func newMemberLocal(log hclog.Logger, cpus int, send func(wire.Type, any) error,
	stored func(wire.ID, uint64) (wire.Obj, bool), signal func(string, syscall.Signal)) *memberLocal {
	return &memberLocal{log: log, send: send, stored: stored, signal: signal, cpus: max(cpus, 1),
		jobs: map[string]*localJob{}, workers: map[string]string{}, leases: map[wire.ID]*lease{},
		fns: map[wire.ID][]byte{}, est: map[wire.ID]time.Duration{}, tasks: map[wire.ID]*localTask{},
		results: map[wire.ID]*localResult{}, waiters: map[wire.ID][]*localWaiter{}, gone: map[uint64]bool{}, elsewhere: -1,
		fnsHead: map[wire.ID]bool{}}
}

// spawned notes the job of a worker this node starts (its SPAWN's SHOAL_JOB_ID).
func (l *memberLocal) spawned(worker string, env []string) {
	for _, e := range env {
		if j, ok := strings.CutPrefix(e, "SHOAL_JOB_ID="); ok {
			l.mu.Lock()
			l.workers[worker] = j
			l.mu.Unlock()
			return
		}
	}
}

// exited forgets a worker whose process ended.
func (l *memberLocal) exited(worker string) {
	l.mu.Lock()
	delete(l.workers, worker)
	l.mu.Unlock()
}

// eligible says why spec cannot run here ("" if it can): only what needs nothing of the head
// (no placement group, strategy, runtime environment or object arguments, one CPU, one return).
func eligible(s *wire.Task) string {
	switch {
	case s.Kind != wire.KindTask:
		return "not a plain task"
	case !s.PG.IsZero() || s.Strategy != "" && s.Strategy != "DEFAULT" || len(s.Selector) > 0:
		return "a scheduling strategy"
	case len(s.Renv) > 0:
		return "a runtime environment"
	case len(s.Deps) > 0 || !s.ArgObj.IsZero() || len(s.Refs) > 0:
		return "object arguments"
	case s.Nret != 1 || s.Gen != 0 || s.RetryExc || s.MaxCalls != 0:
		return "a task feature"
	}
	for k, v := range s.Res {
		if v != 0 && (k != "CPU" || v != 1) {
			return "resources other than one CPU"
		}
	}
	return ""
}

func (l *memberLocal) job(id string) *localJob {
	j := l.jobs[id]
	if j == nil {
		j = &localJob{id: id}
		l.jobs[id] = j
	}
	return j
}

// submit answers LOCAL_SUBMIT from store connection cid of worker.
func (l *memberLocal) submit(cid uint64, worker string, s *wire.Task) wire.LocalSubmitReply {
	if why := eligible(s); why != "" {
		return wire.LocalSubmitReply{Why: why}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(s.Fnb) > 0 { // kept whatever the answer: the submitter sends it once
		l.fns[s.Fn] = s.Fnb
		s.Fnb = nil
	}
	jid, ok := l.workers[worker]
	if !ok || l.closed {
		return wire.LocalSubmitReply{Why: "not a worker of this node"}
	}
	if _, ok := l.fns[s.Fn]; !ok {
		return wire.LocalSubmitReply{Why: "its code is not here"}
	}
	rid := s.Task.WithIndex(1)
	if l.tasks[rid] != nil || l.results[rid] != nil {
		return wire.LocalSubmitReply{Why: "a task of that id is here already"}
	}
	j := l.job(jid)
	if len(j.idle) == 0 {
		room := l.elsewhere < 0 || l.elsewhere >= 1 // another node could start it sooner
		if est, ok := l.est[s.Fn]; ok {
			wait := time.Duration(len(j.queue)+1) * est / time.Duration(l.cpus)
			if wait > spillAlways || room && wait > spillAfter || len(j.queue) >= queueMax {
				return wire.LocalSubmitReply{Why: "it would wait here longer than on another node"}
			}
		} else if len(j.queue) >= queueUnknown*l.cpus {
			return wire.LocalSubmitReply{Why: "this node's share is taken"}
		}
	}
	t := &localTask{spec: s, submitter: cid, owner: worker, job: j}
	l.tasks[rid] = t
	j.queue = append(j.queue, t) // (an idle lease means an empty queue: it runs at once)
	l.dispatch(j)
	l.askLeases(j)
	return wire.LocalSubmitReply{Local: true}
}

// leaseFailed handles LEASE_FAILED: a lease asked for will not come. When no other lease of the
// job is held or asked for, its queued tasks cannot run here: they fail with the lease's error
// (a worker that cannot start fails its tasks the same way through the head).
func (l *memberLocal) leaseFailed(m *wire.LeaseFailed) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j := l.jobs[m.Job]
	if j == nil {
		return
	}
	if j.requested > 0 {
		j.requested--
	}
	if j.held > 0 || j.requested > 0 {
		return
	}
	q := j.queue
	j.queue = nil
	for _, t := range q {
		l.failTask(t, m.Kind, t.spec.Name+": no worker could be leased on this node to run it: "+m.Msg)
	}
}

// setElsewhere records the head's word on the free CPUs of the other nodes, and hands back
// what would now wait here longer than there (reoffer).
func (l *memberLocal) setElsewhere(free float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.elsewhere = free
	l.reoffer()
}

// reoffer hands the tail of each job's queue back to the head (LOCAL_SPILL) while another
// node has a free CPU and that tail would wait here longer than spillAfter: a task queued
// while every node was busy (up to spillAlways of waiting) need not wait here once others
// free up. At most as many tasks go as the head counts free CPUs elsewhere, the newest
// first; a task already tried here (a retry) or of a function whose time is not known stays.
// The submitter's LOCAL_GET then answers "not here" for them, and it asks the head (l.mu held).
func (l *memberLocal) reoffer() {
	budget := int(l.elsewhere)
	if budget < 1 || l.closed {
		return
	}
	for _, j := range l.jobs {
		var back []wire.Task
		var owners []string
		for budget > 0 && len(j.queue) > 0 {
			t := j.queue[len(j.queue)-1]
			est, ok := l.est[t.spec.Fn]
			if !ok || t.tries > 0 || t.cancelled || time.Duration(len(j.queue))*est/time.Duration(l.cpus) <= spillAfter {
				break
			}
			j.queue[len(j.queue)-1] = nil
			j.queue = j.queue[:len(j.queue)-1]
			rid := t.spec.Task.WithIndex(1)
			delete(l.tasks, rid)
			spec := *t.spec
			if !l.fnsHead[spec.Fn] {
				spec.Fnb = l.fns[spec.Fn]
				l.fnsHead[spec.Fn] = true
			}
			back, owners = append(back, spec), append(owners, t.owner)
			budget--
			for _, w := range l.waiters[rid] { // a LOCAL_GET waiting for it: it is at the head now
				l.answer(w, false)
			}
			delete(l.waiters, rid)
		}
		if len(back) == 0 {
			continue
		}
		if err := l.send(wire.TLocalSpill, &wire.LocalSpill{Job: j.id, Tasks: back, Owners: owners}); err != nil {
			l.log.Debug("hand tasks back to the head", "error", err)
		}
		if extra := j.requested - len(j.queue); extra > 0 { // leases asked for them: not needed now
			l.send(wire.TLeaseRequest, &wire.LeaseRequest{Job: j.id, Drop: extra})
			j.requested -= extra
		}
	}
}

// askLeases asks the head for as many more leases as j's queue needs, within the node's CPUs.
func (l *memberLocal) askLeases(j *localJob) {
	n := min(len(j.queue)-j.requested, l.cpus-j.held-j.requested)
	if n <= 0 || l.closed {
		return
	}
	j.requested += n
	if err := l.send(wire.TLeaseRequest, &wire.LeaseRequest{Job: j.id, N: n}); err != nil {
		l.log.Debug("lease request", "error", err)
	}
}

// run sends t to le's waiting LEASE_NEXT (l.mu held).
func (l *memberLocal) run(le *lease, t *localTask) {
	if le.timer != nil {
		le.timer.Stop()
		le.timer = nil
	}
	le.running, t.lease = t, le
	t.tries++
	t.started = time.Now()
	spec := *t.spec
	spec.Attempt = t.tries - 1
	if !le.fnsSent[spec.Fn] {
		spec.Fnb = l.fns[spec.Fn]
		le.fnsSent[spec.Fn] = true
	}
	seq := le.seq
	le.seq = 0
	le.conn.Send(wire.TExec, seq, &spec)
}

// next answers LEASE_NEXT (seq) from store connection cid of worker: the last task's answer
// is kept and goes to the head, and the next task (or the lease's end) back to the worker.
func (l *memberLocal) next(conn *wire.Conn, cid, seq uint64, worker string, m *wire.LeaseNext) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le := l.leases[m.Lease]
	if le == nil {
		jid, ok := l.workers[worker]
		if !ok || l.closed {
			return conn.Send(wire.TOK, seq, &wire.LeaseEnd{End: true})
		}
		j := l.job(jid)
		le = &lease{id: m.Lease, job: j, worker: worker, conn: conn, cid: cid, fnsSent: map[wire.ID]bool{}}
		l.leases[m.Lease] = le
		j.held++
		if j.requested > 0 {
			j.requested--
		}
	} else if le.cid != cid {
		return fmt.Errorf("LEASE_NEXT for lease %s from another connection than its worker's", m.Lease)
	}
	if m.Done != nil && le.running != nil {
		t := le.running
		if m.Done.Task != t.spec.Task || len(m.Done.Rets) != 1 || m.Done.Rets[0].ID != t.spec.Task.WithIndex(1) {
			return fmt.Errorf("LEASE_NEXT answers task %s, but task %s (one return value) was running", m.Done.Task, t.spec.Task)
		}
		le.running = nil
		d := time.Since(t.started)
		if est, ok := l.est[t.spec.Fn]; ok {
			l.est[t.spec.Fn] = (4*est + d) / 5
		} else {
			l.est[t.spec.Fn] = d
		}
		r := m.Done.Rets[0]
		why := ""
		if m.Done.Err {
			why = "raised"
		}
		if t.cancelled && !m.Done.Err {
			// cancel() interrupted it, but the SIGINT came before the task began: it ends as
			// cancelled all the same
			r = wire.Ret{ID: r.ID, Fmt: wire.FmtError, Data: errorData("cancelled", t.spec.Name+" was cancelled")}
			why = "cancelled"
		}
		l.finish(t, wire.LocalRet{ID: r.ID, Fmt: r.Fmt, Data: r.Data, Refs: r.Refs, Stored: r.Stored, Size: r.Size}, why)
		t.lease = nil
	}
	le.seq = seq
	j := le.job
	if len(j.queue) > 0 {
		t := j.queue[0]
		j.queue[0] = nil
		j.queue = j.queue[1:]
		l.run(le, t)
		return nil
	}
	j.idle = append(j.idle, le)
	le.timer = time.AfterFunc(leaseIdle, func() { l.idleEnd(le) })
	if j.requested > 0 { // leases asked for and not given yet are not needed now
		l.send(wire.TLeaseRequest, &wire.LeaseRequest{Job: j.id, Drop: j.requested})
		j.requested = 0
	}
	return nil
}

// finish ends t with value r (why: "" if it did not fail): kept for its submitter, sent to
// the head, and its waiters answered (l.mu held).
func (l *memberLocal) finish(t *localTask, r wire.LocalRet, why string) {
	delete(l.tasks, r.ID)
	r.Owner = t.owner
	l.out.Rets = append(l.out.Rets, r)
	l.out.Tasks = append(l.out.Tasks, wire.LocalTask{Task: t.spec.Task, Name: t.spec.Name, Job: t.job.id, Worker: workerOf(t), Attempt: t.tries - 1, Failed: why})
	if len(l.out.Rets) >= doneBatch {
		l.flushDone()
	} else if l.outTimer == nil {
		l.outTimer = time.AfterFunc(doneWait, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.outTimer = nil
			l.flushDone()
		})
	}
	if r.Stored || l.retained+int64(len(r.Data)) <= retainMax {
		l.results[r.ID] = &localResult{ret: r, submitter: t.submitter}
		l.retained += int64(len(r.Data))
	}
	ws := l.waiters[r.ID]
	delete(l.waiters, r.ID)
	for _, w := range ws {
		l.answer(w, false)
	}
}

// flushDone sends the batch of finished tasks to the head (l.mu held).
func (l *memberLocal) flushDone() {
	if len(l.out.Rets) == 0 {
		return
	}
	if l.outTimer != nil {
		l.outTimer.Stop()
		l.outTimer = nil
	}
	l.send(wire.TLocalDone, &wire.LocalDone{Rets: l.out.Rets, Tasks: l.out.Tasks})
	l.out = wire.LocalDone{}
}

func workerOf(t *localTask) string {
	if t.lease != nil {
		return t.lease.worker
	}
	return ""
}

// failTask ends t with an error value of kind (l.mu held).
func (l *memberLocal) failTask(t *localTask, kind, msg string) {
	l.finish(t, wire.LocalRet{ID: t.spec.Task.WithIndex(1), Fmt: wire.FmtError, Data: errorData(kind, msg)}, kind)
}

// get answers LOCAL_GET (seq) from store connection cid.
func (l *memberLocal) get(conn *wire.Conn, cid, seq uint64, m *wire.LocalGet) error {
	if len(m.IDs) > 1<<16 {
		return fmt.Errorf("LOCAL_GET of %d values: at most 65536 at a time", len(m.IDs))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := &localWaiter{conn: conn, cid: cid, seq: seq, ids: m.IDs}
	pending := false
	for _, id := range m.IDs {
		if l.results[id] == nil && l.tasks[id] != nil {
			pending = true
		}
	}
	if !pending || m.TimeoutMS == 0 {
		l.answer(w, true)
		return nil
	}
	for _, id := range m.IDs {
		if l.results[id] == nil && l.tasks[id] != nil {
			l.waiters[id] = append(l.waiters[id], w)
		}
	}
	if m.TimeoutMS > 0 {
		time.AfterFunc(time.Duration(m.TimeoutMS)*time.Millisecond, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.answer(w, true)
		})
	}
	return nil
}

// answer sends w its values once all are known, or (now) what is known (l.mu held).
func (l *memberLocal) answer(w *localWaiter, now bool) {
	if w.done {
		return
	}
	var pending []int
	for i, id := range w.ids {
		if l.results[id] == nil && l.tasks[id] != nil {
			pending = append(pending, i)
		}
	}
	if len(pending) > 0 && !now {
		return
	}
	w.done = true
	for _, i := range pending { // a get that timed out: its ids' lists let it go (the SDK asks again)
		id := w.ids[i]
		kept := slices.DeleteFunc(l.waiters[id], func(x *localWaiter) bool { return x == w })
		if len(kept) == 0 {
			delete(l.waiters, id)
		} else {
			l.waiters[id] = kept
		}
	}
	objs := make([]wire.Obj, len(w.ids))
	for i, id := range w.ids {
		r := l.results[id]
		if r == nil {
			continue // pending, or not here: the zero ID
		}
		if r.ret.Stored {
			if o, ok := l.stored(id, w.cid); ok {
				objs[i] = o
			}
			continue
		}
		objs[i] = wire.Obj{ID: id, Fmt: r.ret.Fmt, Data: nonNil(r.ret.Data)}
		// given once: the submitter keeps small values itself, and asks the head again for
		// the rest
		delete(l.results, id)
		l.retained -= int64(len(r.ret.Data))
	}
	w.conn.Send(wire.TOK, w.seq, &wire.LocalGetReply{Objs: objs, Pending: pending})
}

// forget drops the values cid no longer refers to (LOCAL_FORGET).
func (l *memberLocal) forget(cid uint64, ids []wire.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if r := l.results[id]; r != nil && r.submitter == cid {
			delete(l.results, id)
			l.retained -= int64(len(r.ret.Data))
		}
	}
}

// cancel answers LOCAL_CANCEL: a queued task never runs, a running one is interrupted (SIGINT
// to its worker, whose task then raises TaskCancelledError) or, with force, its worker killed;
// recursive also cancels what a running task submitted here.
func (l *memberLocal) cancel(m *wire.LocalCancel) wire.LocalCancelReply {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.tasks[m.Task.WithIndex(1)]
	if t == nil {
		_, done := l.results[m.Task.WithIndex(1)]
		return wire.LocalCancelReply{Known: done}
	}
	l.cancelTask(t, m.Force, m.Recursive, 0)
	return wire.LocalCancelReply{Known: true}
}

func (l *memberLocal) cancelTask(t *localTask, force, recursive bool, depth int) {
	le := t.lease
	if le == nil {
		j := t.job
		for i, x := range j.queue {
			if x == t {
				j.queue = append(j.queue[:i], j.queue[i+1:]...)
				break
			}
		}
		l.failTask(t, "cancelled", t.spec.Name+" was cancelled before it ran")
		return
	}
	if recursive && depth < 64 {
		var children []*localTask
		for _, c := range l.tasks {
			if c.submitter == le.cid {
				children = append(children, c)
			}
		}
		for _, c := range children {
			l.cancelTask(c, force, true, depth+1)
		}
	}
	t.cancelled = true
	if force {
		l.signal(le.worker, syscall.SIGKILL) // closedConn ends it as cancelled
	} else {
		l.signal(le.worker, syscall.SIGINT)
	}
}

// idleEnd gives le back to the head when it is still idle.
func (l *memberLocal) idleEnd(le *lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if le.running != nil || le.seq == 0 || l.leases[le.id] != le {
		return
	}
	l.dropIdle(le)
	delete(l.leases, le.id)
	le.job.held--
	le.conn.Send(wire.TOK, le.seq, &wire.LeaseEnd{End: true})
	le.seq = 0
}

func (l *memberLocal) dropIdle(le *lease) {
	le.job.idle = slices.DeleteFunc(le.job.idle, func(x *lease) bool { return x == le })
}

// closedConn handles the end of store connection cid: a lease of it is gone (its task runs
// again, or fails as a crashed worker's), the tasks it submitted that have not started are
// dropped and the values kept for it forgotten (their submitter, who owned them, is gone).
func (l *memberLocal) closedConn(cid uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gone[cid] = true
	for id, le := range l.leases {
		if le.cid != cid {
			continue
		}
		delete(l.leases, id)
		if le.timer != nil {
			le.timer.Stop()
		}
		l.dropIdle(le)
		le.job.held--
		if t := le.running; t != nil {
			le.running = nil
			switch {
			case t.cancelled:
				l.failTask(t, "cancelled", t.spec.Name+" was cancelled (force=True): its worker was killed")
			case l.gone[t.submitter]:
				delete(l.tasks, t.spec.Task.WithIndex(1)) // nobody to run it for
			case t.spec.Retries < 0 || t.tries <= t.spec.Retries:
				t.lease = nil
				t.job.queue = append([]*localTask{t}, t.job.queue...)
				l.log.Warn("retrying a task: its worker exited", "task", t.spec.Name, "attempt", t.tries)
			default:
				l.failTask(t, "worker_died", fmt.Sprintf("%s: the worker running it on this node exited (max_retries=%d)", t.spec.Name, t.spec.Retries))
			}
		}
		l.askLeases(le.job)
		l.dispatch(le.job)
	}
	for _, j := range l.jobs {
		j.queue = slices.DeleteFunc(j.queue, func(t *localTask) bool {
			if t.submitter == cid {
				delete(l.tasks, t.spec.Task.WithIndex(1))
			}
			return t.submitter == cid
		})
	}
	for id, j := range l.jobs {
		if len(j.queue) == 0 && len(j.idle) == 0 && j.held == 0 && j.requested == 0 {
			delete(l.jobs, id)
		}
	}
	for id, r := range l.results {
		if r.submitter == cid {
			delete(l.results, id)
			l.retained -= int64(len(r.ret.Data))
		}
	}
}

// dispatch runs j's queued tasks on its idle leases (l.mu held).
func (l *memberLocal) dispatch(j *localJob) {
	for len(j.queue) > 0 && len(j.idle) > 0 {
		le := j.idle[len(j.idle)-1]
		j.idle = j.idle[:len(j.idle)-1]
		t := j.queue[0]
		j.queue[0] = nil
		j.queue = j.queue[1:]
		l.run(le, t)
	}
}

// close stops the leases' timers (the member is stopping).
func (l *memberLocal) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.flushDone()
	for _, le := range l.leases {
		if le.timer != nil {
			le.timer.Stop()
		}
	}
}
