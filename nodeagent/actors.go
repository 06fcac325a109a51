package nodeagent

import (
	"encoding/hex"
	"fmt"
	"syscall"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoal-hpc/shoal/head"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// Actor lifecycle:
//
//	PENDING ──(constructor ran)──> ALIVE ──(process died, restarts left)──> RESTARTING ──> ALIVE
//	   │                             │
//	   └──(constructor raised)──> DEAD <──(killed, no restarts left, or job ended)

type actorState int

const (
	actorPending actorState = iota
	actorAlive
	actorRestarting
	actorDead
)

var actorStateNames = [...]string{"PENDING", "ALIVE", "RESTARTING", "DEAD"}

type actor struct {
	id           wire.ID
	job          *job
	create       *task
	name, ns     string
	state        actorState
	worker       *worker
	restartsLeft int // -1: forever
	restarts     int
	queue        []*task // calls not yet sent to the worker, in order
	inflight     []*task // sent, in order
	death        string
	noRestart    bool
	failedWith   string // why its constructor failed, for the death the core then reports
	conc         int    // max_concurrency over its concurrency groups (<= 1: in order)
	detached     bool   // outlives its driver's job (it runs in a job of its own)
	terminating  bool   // its last handle is gone: end it once its queued calls are sent
	termSent     bool   // TERMINATE went to its current worker
}

func (a *Agent) newActor(t *task) error {
	m := t.spec
	if m.Actor.IsZero() {
		return fmt.Errorf("actor creation of %s carries no actor id", m.Name)
	}
	if a.actors[m.Actor] != nil {
		return fmt.Errorf("actor %s already exists", m.Actor)
	}
	ac := &actor{id: m.Actor, job: t.job, create: t, name: m.AName, ns: m.NS, restartsLeft: m.Restarts,
		conc: m.Conc, detached: m.Detached}
	if ac.detached {
		t.job = a.detachedJob(t.job, ac)
		ac.job = t.job
	}
	if a.head != nil {
		if err := a.head.ActorCreated(head.Actor{ID: m.Actor.String(), Job: t.job.id, Name: m.AName, NS: m.NS, Class: m.Name, State: "PENDING", Node: a.cfg.NodeID, Meta: m.Meta}); err != nil {
			return err
		}
	}
	t.actor = ac
	a.actors[ac.id] = ac
	return nil
}

func (a *Agent) setActorState(ac *actor, s actorState) {
	ac.state = s
	if a.head != nil && s == actorAlive && ac.worker != nil && ac.worker.node != nil {
		a.head.ActorPlaced(ac.id.String(), ac.worker.node.id) // the node it runs on, not the head's
	}
	if a.head != nil {
		a.head.ActorState(ac.id.String(), actorStateNames[s], ac.restarts, ac.death)
	}
}

// actorCreated handles the DONE of a constructor.
func (a *Agent) actorCreated(ac *actor, failed bool, rets []wire.Ret) {
	if ac == nil || ac.state == actorDead {
		return
	}
	if failed {
		msg := "its constructor raised an exception"
		if len(rets) > 0 && rets[0].Fmt == wire.FmtError {
			var e struct {
				Msg string `msgpack:"msg"`
			}
			if msgpack.Unmarshal(rets[0].Data, &e) == nil && e.Msg != "" {
				msg = "its constructor raised: " + e.Msg
			}
		}
		ac.noRestart = true
		ac.failedWith = msg // the core kills its worker and reports it dead (ActorDied)
		return
	}
	a.setActorState(ac, actorAlive)
	a.flushActor(ac)
}

// flushActor sends queued calls whose arguments are ready, in the order sched.ActorQueue
// decides (in order for a sequential actor, as ready for a threaded or async one); an actor
// whose last handle is gone gets TERMINATE after its last queued call.
func (a *Agent) flushActor(ac *actor) {
	for {
		for len(ac.queue) > 0 && ac.queue[0].finished {
			ac.queue = ac.queue[1:]
		}
		if ac.state != actorAlive || ac.worker == nil || ac.worker.client == nil {
			return
		}
		if len(ac.queue) == 0 {
			if ac.terminating && !ac.termSent {
				ac.termSent = true
				ac.worker.client.conn.Send(wire.TTerminate, 0, nil)
			}
			return
		}
		if len(ac.inflight) > 0 && a.execWindowFull(ac.worker) { // sendqueue.go
			return
		}
		q := ac.queue
		i := sched.ActorQueue{Concurrency: ac.conc, Len: len(q), Ready: func(i int) bool {
			return !q[i].finished && q[i].pendingDeps == 0
		}}.Next()
		if i < 0 {
			return
		}
		t := q[i]
		if i == 0 {
			ac.queue = q[1:]
		} else {
			ac.queue = append(q[:i:i], q[i+1:]...)
		}
		ac.inflight = append(ac.inflight, t)
		t.worker = ac.worker
		a.exec(t, ac.worker)
	}
}

func (a *Agent) actorCallDone(t *task) {
	ac := t.actor
	for i, x := range ac.inflight {
		if x == t {
			ac.inflight = append(ac.inflight[:i], ac.inflight[i+1:]...)
			break
		}
	}
	a.finish(t)
	a.flushActor(ac) // calls held back by the send window (sendqueue.go)
}

// actorRestarting handles the core's decision to restart ac after its process died: calls in
// flight with retries left (max_task_retries) go to the new instance first, the others fail;
// queued calls wait for it.
func (a *Agent) actorRestarting(ac *actor, why string) {
	a.unbindActor(ac, why, true)
	ac.restarts++
	ac.termSent = false
	a.log.Warn("restarting actor", "actor", ac.id.String(), "class", ac.create.spec.Name, "restart", ac.restarts, "reason", why)
	a.setActorState(ac, actorRestarting)
}

// unbindActor detaches ac from its (dead) worker and fails the calls it was running, or, when
// it restarts, queues again those with retries left (sched.ActorCallOnDeath).
func (a *Agent) unbindActor(ac *actor, why string, restarting bool) {
	if w := ac.worker; w != nil {
		w.actor = nil
	}
	ac.worker = nil
	if t := ac.create; t != nil {
		t.worker = nil
	}
	inflight := ac.inflight
	ac.inflight = nil
	var again []*task
	for _, t := range inflight {
		if t.finished {
			continue
		}
		retry, left := sched.ActorCallOnDeath(restarting, t.spec.Retries)
		if retry {
			t.spec.Retries = left
			t.spec.Attempt++
			t.worker = nil
			again = append(again, t)
			continue
		}
		a.fail(t, "actor_died", fmt.Sprintf("%s: the actor's process died while running this call (%s)", t.spec.Name, why))
	}
	ac.queue = append(again, ac.queue...)
}

// actorDead marks ac dead and fails its queued calls.
func (a *Agent) actorDead(ac *actor, why string) {
	if ac.state == actorDead {
		return
	}
	if ac.failedWith != "" {
		why = ac.failedWith
	}
	if w := ac.worker; w != nil {
		w.signal(syscall.SIGKILL)
	}
	a.unbindActor(ac, why, false)
	ac.death = why
	a.setActorState(ac, actorDead)
	for _, t := range ac.queue {
		if !t.finished {
			a.fail(t, "actor_died", fmt.Sprintf("%s: the actor is dead: %s", t.spec.Name, why))
		}
	}
	ac.queue = nil
	if t := ac.create; t != nil {
		if !t.finished {
			a.fail(t, "actor_died", fmt.Sprintf("%s: the actor died before it was created: %s", t.spec.Name, why))
		}
		delete(a.tasks, t.spec.Task)
		if t.cid != 0 {
			delete(a.coreTasks, t.cid)
		}
	}
	if ac.detached && ac.job != nil && !ac.job.ended {
		a.endJob(ac.job, "its detached actor died")
	}
}

// killActor kills an actor's process; with noRestart it never comes back.
func (a *Agent) killActor(id wire.ID, noRestart bool, why string) error {
	ac := a.actors[id]
	if ac == nil {
		return fmt.Errorf("kill actor %s: no such actor on this node", id)
	}
	if noRestart {
		ac.noRestart = true
		ac.failedWith = why
	}
	if t := ac.create; t != nil && t.cid != 0 && a.coreTasks[t.cid] != nil {
		a.feed(sched.KillActor{Task: t.cid, NoRestart: noRestart})
		return nil
	}
	if noRestart { // still waiting for its constructor's arguments: the core never saw it
		a.actorDead(ac, why)
	}
	return nil
}

func (a *Agent) getActor(c *client, seq uint64, m *wire.GetActor) error {
	if a.head == nil {
		return fmt.Errorf("this agent has no head to look actors up in")
	}
	rec, err := a.head.LookupActor(m.NS, m.Name)
	if err != nil {
		return c.conn.SendError(seq, "not_found", fmt.Sprintf("failed to look up actor with name %q in namespace %q: %v", m.Name, m.NS, err))
	}
	var id wire.ID
	b, err := hex.DecodeString(rec.ID)
	if err != nil || len(b) != 16 {
		return fmt.Errorf("[internal error] actor table holds a bad id %q", rec.ID)
	}
	copy(id[:], b)
	return c.conn.Send(wire.TOK, seq, &wire.GetActorReply{Actor: id, Meta: rec.Meta})
}

// detachedJob makes the job a detached actor runs in: its own, with its creator's program
// (interpreter, path, working directory, namespace), so that it outlives its creator's job.
// It ends when the actor dies (actorDead) or the cluster stops.
func (a *Agent) detachedJob(parent *job, ac *actor) *job {
	a.nextJob++
	j := &job{id: fmt.Sprintf("%s-%04x", a.cfg.ClusterID[:8], a.nextJob), cid: sched.JobID(a.nextJob), lang: parent.lang,
		exe: parent.exe, path: parent.path, cwd: parent.cwd, ns: parent.ns, workers: map[string]*worker{}}
	a.jobs[j.id] = j
	a.coreJobs[j.cid] = j
	if a.head != nil {
		a.head.JobStarted(j.id, 0, fmt.Sprintf("detached actor %s of job %s", ac.create.spec.Name, parent.id))
	}
	a.log.Debug("detached actor's job", "job", j.id, "parent", parent.id, "actor", ac.id.String())
	a.feed(sched.JobStarted{Job: j.cid, Driver: a.local.cid})
	return j
}

// actorExit handles ACTOR_EXIT: the worker's actor ends on purpose (exit_actor(),
// __ray_terminate__, TERMINATE). It is not restarted; its calls fail with why.
func (a *Agent) actorExit(c *client, m *wire.ActorExit) error {
	w := c.worker
	if w == nil {
		return fmt.Errorf("ACTOR_EXIT from a connection that is not a worker")
	}
	if w.actor == nil {
		return nil // killed meanwhile
	}
	why := m.Why
	if why == "" {
		why = "the actor exited on purpose"
	}
	return a.killActor(w.actor.id, true, why)
}

// actorHandleFreed runs when an object is freed: when it is the value of an actor's creation
// (every handle holds a reference to it, counted as objects are, docs/ray-actors.md "Handle
// counting"), the actor's last handle is gone, and an actor that has no name and is not
// detached ends after its queued calls (TERMINATE: __ray_shutdown__, then exit).
func (a *Agent) actorHandleFreed(id wire.ID) {
	if id.Index() != 1 {
		return
	}
	t := a.tasks[id.WithIndex(0)]
	if t == nil || t.spec.Kind != wire.KindActorCreate || t.actor == nil || t.spec.Lang != "python" {
		return // the Go SDK's handles are not counted (it releases the creation's value early)
	}
	ac := t.actor
	if ac.name != "" || ac.detached || ac.state == actorDead || ac.terminating {
		return
	}
	ac.terminating = true
	a.flushActor(ac)
}
