package nodeagent

import (
	"encoding/hex"
	"fmt"
	"syscall"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoal-hpc/shoal/head"
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
}

func (a *Agent) newActor(t *task) error {
	m := t.spec
	if m.Actor.IsZero() {
		return fmt.Errorf("actor creation of %s carries no actor id", m.Name)
	}
	if a.actors[m.Actor] != nil {
		return fmt.Errorf("actor %s already exists", m.Actor)
	}
	ac := &actor{id: m.Actor, job: t.job, create: t, name: m.AName, ns: m.NS, restartsLeft: m.Restarts}
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
		a.actorDead(ac, msg)
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

// actorWorkerDied handles the death of an actor's process: calls in flight fail; the actor
// restarts when it has restarts left, otherwise it is dead.
func (a *Agent) actorWorkerDied(ac *actor, why string) {
	w := ac.worker
	ac.worker = nil
	if w != nil {
		w.actor = nil
	}
	a.releaseActorRes(ac)
	inflight := ac.inflight
	ac.inflight = nil
	for _, t := range inflight {
		a.fail(t, "actor_died", fmt.Sprintf("%s: the actor's process died while running this call (%s)", t.spec.Name, why))
	}
	if ac.state == actorDead {
		return
	}
	if ac.noRestart || ac.restartsLeft == 0 || ac.job.ended {
		a.actorDead(ac, "its process died ("+why+")")
		return
	}
	if ac.restartsLeft > 0 {
		ac.restartsLeft--
	}
	ac.restarts++
	a.log.Warn("restarting actor", "actor", ac.id.String(), "class", ac.create.spec.Name, "restart", ac.restarts, "reason", why)
	a.setActorState(ac, actorRestarting)
	t := ac.create
	t.worker = nil
	t.spec.Attempt++
	a.ready = append(a.ready, t)
	a.schedule()
}

func (a *Agent) releaseActorRes(ac *actor) {
	if t := ac.create; t != nil && t.allocated {
		t.allocated = false
		a.pool(t).Add(t.res)
	}
	if t := ac.create; t != nil && t.gpus != nil {
		a.freeGPUs(t.node, t.gpus)
		t.gpus = nil
	}
}

// actorDead marks ac dead and fails its queued calls.
func (a *Agent) actorDead(ac *actor, why string) {
	if ac.state == actorDead {
		return
	}
	ac.death = why
	a.setActorState(ac, actorDead)
	a.releaseActorRes(ac)
	if w := ac.worker; w != nil {
		w.signal(syscall.SIGKILL)
	}
	for _, t := range append(ac.inflight, ac.queue...) {
		if !t.finished {
			a.fail(t, "actor_died", fmt.Sprintf("%s: the actor is dead: %s", t.spec.Name, why))
		}
	}
	ac.inflight, ac.queue = nil, nil
	if t := ac.create; t != nil {
		if !t.finished {
			a.fail(t, "actor_died", fmt.Sprintf("%s: the actor died before it was created: %s", t.spec.Name, why))
		}
		delete(a.tasks, t.spec.Task)
	}
	a.schedule()
}

// killActor kills an actor's process; with noRestart it never comes back.
func (a *Agent) killActor(id wire.ID, noRestart bool, why string) error {
	ac := a.actors[id]
	if ac == nil {
		return fmt.Errorf("kill actor %s: no such actor on this node", id)
	}
	if noRestart {
		ac.noRestart = true
	}
	if ac.worker != nil {
		ac.worker.signal(syscall.SIGKILL)
		if noRestart {
			ac.death = why
		}
		return nil
	}
	if noRestart {
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
