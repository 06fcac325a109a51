package nodeagent

import (
	"errors"
	"fmt"

	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// Task features beyond a plain call (docs/ray-tasks.md), in the shell: streamed generator
// returns (GEN_ITEM), retry on a retryable exception and max_calls (DONE's retry and exit),
// scheduling strategies (turned into the core's sched.Policy), the cancel of a call running on
// an actor (TASK_CANCEL), and logical GPUs.
//
// A streaming generator task has one return value, index 1, the end of its stream: sealed at
// DONE with the number of values it yielded, or with the error that ended it. Its yields are
// the ids of index 2, 3, ...: the agent expects the next one for the submitter before the
// worker sends it (so a GET or WAIT of it waits instead of answering "lost"), stores each as
// it comes and pushes it in READY; the one expected past the end is dropped when the task ends.

// errInvalid is an error the client caused with a bad argument: it is answered with code
// "value_error" (the Python SDK raises ValueError), not "bad_request".
type errInvalid struct{ msg string }

func (e errInvalid) Error() string { return e.msg }

// errorCode is the ERROR code for an error of a request handler.
func errorCode(err error) string {
	var inv errInvalid
	if errors.As(err, &inv) {
		return "value_error"
	}
	return "bad_request"
}

// logicalGPUs gives a node that offers GPUs it has no devices for (--num-gpus, init(num_gpus=)
// on a machine without GPUs) that many logical GPU indices, as Ray does: tasks get them in
// CUDA_VISIBLE_DEVICES and get_gpu_ids(), and nothing is confined.
func logicalGPUs(gpus []int, total sched.Resources) []int {
	n := int(total["GPU"])
	if len(gpus) > 0 || n <= 0 {
		return gpus
	}
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// nodeLabels are n's labels as INFO shows them: its own and ray.io/node-id.
func nodeLabels(n *node) map[string]string {
	out := make(map[string]string, len(n.labels)+1)
	for k, v := range n.labels {
		out[k] = v
	}
	out[sched.LabelNodeID] = n.id
	return out
}

// policyOf turns a task's scheduling strategy into the core's Policy (nil: DEFAULT). A node
// affinity names the node by its id (its name); an unknown one is NoNode, which the core
// fails (hard) or ignores (soft).
func (a *Agent) policyOf(t *task) (*sched.Policy, error) {
	m := t.spec
	if (m.Strategy == "" || m.Strategy == "DEFAULT") && len(m.Selector) == 0 {
		return nil, nil
	}
	p := &sched.Policy{}
	switch m.Strategy {
	case "", "DEFAULT":
	case "SPREAD":
		p.Spread = true
	case "NODE_AFFINITY":
		p.Affinity, p.NodeName, p.Soft = true, m.Node, m.Soft
		p.Node = a.core.NodePolicy(m.Node)
	default:
		return nil, fmt.Errorf("%s: scheduling strategy %q is not one of DEFAULT, SPREAD, NODE_AFFINITY", m.Name, m.Strategy)
	}
	for _, l := range m.Selector {
		p.Labels = append(p.Labels, sched.LabelReq{Key: l.Key, Op: l.Op, Values: l.Values})
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	return p, nil
}

// genItem handles GEN_ITEM: one value a streaming generator task yielded.
func (a *Agent) genItem(c *client, m *wire.GenItem) error {
	w := c.worker
	if w == nil {
		return fmt.Errorf("GEN_ITEM from a connection that is not a worker")
	}
	t := a.tasks[m.Task]
	if t == nil || t.worker != w || t.finished {
		return nil // failed or cancelled meanwhile
	}
	if t.spec.Gen != wire.GenStreaming {
		return fmt.Errorf("GEN_ITEM for task %s, which is not a streaming generator", t.spec.Name)
	}
	if m.Index < 0 || m.Index > 1<<31 || m.Ret.ID != genID(m.Task, m.Index) {
		return fmt.Errorf("GEN_ITEM %d of task %s names object %s, not the yield's id %s", m.Index, t.spec.Name, m.Ret.ID, genID(m.Task, m.Index))
	}
	if m.Index < t.genNext {
		return nil // a retried attempt yields again what its first attempt reported
	}
	if m.Index > t.genNext {
		return fmt.Errorf("GEN_ITEM %d of task %s before item %d", m.Index, t.spec.Name, t.genNext)
	}
	t.genNext++
	if t.owner != nil && a.conns[t.owner.id] == t.owner {
		a.store.Expect(genID(m.Task, t.genNext), t.owner.id)
	}
	if !m.Ret.Stored {
		if err := a.storeBytes(m.Ret.ID, m.Ret.Fmt, m.Ret.Data, m.Ret.Refs, 0); err != nil {
			a.log.Warn("store a generator's yield", "task", t.spec.Name, "error", err)
		}
	}
	o := a.store.Lookup(m.Ret.ID)
	if o == nil || o.Freed() {
		return nil
	}
	if o.Stored() || !o.Local() {
		a.push(t.owner, []wire.Obj{{ID: o.ID, Fmt: o.Fmt, Size: o.Size}})
	} else {
		a.push(t.owner, []wire.Obj{{ID: o.ID, Fmt: o.Fmt, Data: nonNil(o.Inline)}})
	}
	return nil
}

// genID is the id of a streaming generator's yield number i (from 0).
func genID(task wire.ID, i int) wire.ID { return task.WithIndex(uint32(i + 2)) }

// genExpect expects a streaming generator's first yield for its submitter (at SUBMIT).
func (a *Agent) genExpect(t *task) {
	if t.spec.Gen == wire.GenStreaming && t.owner != nil {
		a.store.Expect(genID(t.spec.Task, 0), t.owner.id)
	}
}

// genEnd drops the yield expected past a streaming generator's end (when it finishes).
func (a *Agent) genEnd(t *task) {
	if t.spec.Gen == wire.GenStreaming && t.owner != nil {
		a.store.Decref(genID(t.spec.Task, t.genNext), t.owner.id)
	}
}

// doneHook handles what DONE says beyond the return values; it reports whether DONE is fully
// handled: a retryable exception with retries left runs the task again (its error is not
// stored), and a call cancelled while it ran on an actor ends as cancelled whatever it answered.
func (a *Agent) doneHook(w *worker, t *task, m *wire.Done) bool {
	switch t.spec.Kind {
	case wire.KindTask:
		if t.cancelled && !m.Err && t.spec.Gen == wire.GenNone {
			// cancel() interrupted it, but the SIGINT came before the task began (the worker
			// ignores one while idle): it ends as cancelled all the same, as it would have
			data := errorData("cancelled", t.spec.Name+" was cancelled")
			for i := range m.Rets {
				m.Rets[i] = wire.Ret{ID: m.Rets[i].ID, Fmt: wire.FmtError, Data: data, Refs: []wire.ID{}}
			}
			m.Err, m.Retry = true, false
			return false
		}
		if m.Retry && t.cid != 0 && a.core.CanRetry(t.cid) {
			w.task = nil
			t.worker = nil
			a.feed(sched.TaskFinished{Task: t.cid, Retry: true, WorkerExits: m.Exit})
			return true
		}
	case wire.KindActorMethod:
		if t.cancelled {
			a.fail(t, "cancelled", t.spec.Name+" was cancelled while it ran on its actor")
			a.actorCallDone(t)
			return true
		}
	}
	return false
}

// cancelActorCall cancels a call of an actor (ray.cancel on an actor task): a queued call is
// dropped; a running one is told (TASK_CANCEL: an async call is cancelled, a generator stops at
// its next yield) and ends as cancelled. force=True is refused, as Ray does.
func (a *Agent) cancelActorCall(t *task, force bool) error {
	if force {
		return errInvalid{"force=True is not supported for actor tasks (as in Ray: the actor's state would be lost); cancel without force, or kill() the actor"}
	}
	ac := t.actor
	for i, q := range ac.queue {
		if q == t {
			ac.queue = append(ac.queue[:i], ac.queue[i+1:]...)
			a.fail(t, "cancelled", t.spec.Name+" was cancelled before it ran")
			return nil
		}
	}
	if t.worker != nil && !t.cancelled {
		t.cancelled = true
		if cl := t.worker.client; cl != nil {
			cl.conn.Send(wire.TTaskCancel, 0, &wire.TaskCancel{Task: t.spec.Task})
		}
	}
	return nil
}
