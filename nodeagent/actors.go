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
	taskRetries  int    // max_task_retries: calls in flight sent again after a restart (-1: forever)
}

func (a *Agent) newActor(t *task) error {
	m := t.spec
	if m.Actor.IsZero() {
		return fmt.Errorf("actor creation of %s carries no actor id", m.Name)
	}
	if a.actors[m.Actor] != nil {
		return fmt.Errorf("actor %s already exists", m.Actor)
	}
	ac := &actor{id: m.Actor, job: t.job, create: t, name: m.AName, ns: m.NS, restartsLeft: m.Restarts, taskRetries: m.TaskRetries}
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

// flushActor sends queued calls whose arguments are ready, in order.
func (a *Agent) flushActor(ac *actor) {
	for len(ac.queue) > 0 {
		t := ac.queue[0]
		if t.finished {
			ac.queue = ac.queue[1:]
			continue
		}
		if ac.state != actorAlive || ac.worker == nil || ac.worker.client == nil || t.pendingDeps > 0 {
			return
		}
		if len(ac.inflight) > 0 && a.execWindowFull(ac.worker) { // sendqueue.go
			return
		}
		ac.queue = ac.queue[1:]
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
// flight fail, queued calls wait for the new instance.
func (a *Agent) actorRestarting(ac *actor, why string) {
	a.requeueCalls(ac) // actorretry.go
	a.unbindActor(ac, why)
	ac.restarts++
	a.log.Warn("restarting actor", "actor", ac.id.String(), "class", ac.create.spec.Name, "restart", ac.restarts, "reason", why)
	a.setActorState(ac, actorRestarting)
}

// unbindActor detaches ac from its (dead) worker and fails the calls it was running.
func (a *Agent) unbindActor(ac *actor, why string) {
	if w := ac.worker; w != nil {
		w.actor = nil
	}
	ac.worker = nil
	if t := ac.create; t != nil {
		t.worker = nil
	}
	inflight := ac.inflight
	ac.inflight = nil
	for _, t := range inflight {
		a.fail(t, "actor_died", fmt.Sprintf("%s: the actor's process died while running this call (%s)", t.spec.Name, why))
	}
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
	a.unbindActor(ac, why)
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
