package sched

import (
	"fmt"
	"sort"
	"strings"
)

// Scheduling strategies of a task or actor outside placement groups (Ray's
// scheduling_strategy and label_selector; docs/ray-tasks.md):
//   - SPREAD: no argument locality and no preference for the submitter's node; each placement
//     moves the queue's cursor past the node it used, so consecutive tasks go round the nodes
//     that have room (best effort, as in Ray: a busy cluster still places where room is).
//   - node affinity, hard: only that node; a node that is unknown or lost fails the task
//     (ErrKindUnschedulable) rather than waiting for it forever; one too small is infeasible.
//   - node affinity, soft: that node when it is alive and has room now, else as DEFAULT.
//   - label selector: only nodes whose labels satisfy every requirement; when no live node
//     does (or none that also has the resources), the task fails at once: an allocation never
//     grows, so no node will come that matches (Ray would wait for an autoscaler).
// Every node carries the label LabelNodeID = its name, as Ray's ray.io/node-id.

// LabelNodeID is the label every node carries, its name (Ray's default label).
const LabelNodeID = "ray.io/node-id"

// ErrKindUnschedulable: a hard node affinity names a node that is not (or no longer) alive.
const ErrKindUnschedulable = "unschedulable"

// LabelReq is one requirement of a label selector: the label Key must have one of Values
// (Op "in"), or must not (Op "!in"; a node without the label satisfies it).
type LabelReq struct {
	Key    string
	Op     string
	Values []string
}

// Policy is a task's scheduling strategy; the zero value is Ray's DEFAULT.
type Policy struct {
	Spread   bool
	Affinity bool   // Node is set
	Node     NodeID // NoNode with Affinity: the node named is unknown
	NodeName string // as the submitter named it, for errors
	Soft     bool
	Labels   []LabelReq
}

func (p *Policy) key() string {
	if p == nil {
		return ""
	}
	var b strings.Builder
	if p.Spread {
		b.WriteString("spread;")
	}
	if p.Affinity {
		fmt.Fprintf(&b, "node=%d,%v;", p.Node, p.Soft)
	}
	for _, l := range p.Labels {
		fmt.Fprintf(&b, "%s %s %q;", l.Key, l.Op, l.Values)
	}
	return b.String()
}

// Validate checks a policy from a submitter.
func (p *Policy) Validate() error {
	if p.Spread && p.Affinity {
		return fmt.Errorf("a task cannot both SPREAD and have a node affinity")
	}
	for _, l := range p.Labels {
		if l.Key == "" {
			return fmt.Errorf("label selector with an empty key")
		}
		if l.Op != "in" && l.Op != "!in" {
			return fmt.Errorf("label selector %q: operator %q is neither \"in\" nor \"!in\"", l.Key, l.Op)
		}
		if len(l.Values) == 0 {
			return fmt.Errorf("label selector %q: no values", l.Key)
		}
	}
	return nil
}

// labelsMatch reports whether nd's labels satisfy every requirement.
func labelsMatch(nd *node, reqs []LabelReq) bool {
	for _, r := range reqs {
		v, ok := nd.labels[r.Key]
		if r.Key == LabelNodeID {
			v, ok = nd.name, true
		}
		in := false
		if ok {
			for _, x := range r.Values {
				if x == v {
					in = true
					break
				}
			}
		}
		if in != (r.Op == "in") {
			return false
		}
	}
	return true
}

// allowedOn reports whether t's policy lets it run on nd (resources aside).
func (t *task) allowedOn(nd *node) bool {
	p := t.pol
	if p == nil {
		return true
	}
	if p.Affinity && !p.Soft && p.Node != nd.id {
		return false
	}
	return labelsMatch(nd, p.Labels)
}

// placePolicy places t (the head of q, outside a placement group) by its policy. done says
// whether it decided (placed or failed t); otherwise the default placement goes on, or, with
// wait, t waits for room.
func (c *Core) placePolicy(t *task, q *queue) (n NodeID, done, wait bool) {
	p := t.pol
	if len(p.Labels) > 0 {
		if why := c.labelFeasible(t); why != "" {
			q.pop()
			c.failTask2(t, ErrKindInfeasible, why)
			return NoNode, true, false
		}
	}
	if !p.Affinity {
		return NoNode, false, false
	}
	var nd *node
	if p.Node >= 0 && int(p.Node) < len(c.nodes) {
		nd = c.nodes[p.Node]
	}
	if p.Soft {
		if nd != nil && c.fitsOn(t, nd) {
			q.pop()
			c.placeOn(t, nd, -1)
			return nd.id, true, false
		}
		return NoNode, false, false // anywhere else its labels allow
	}
	switch {
	case nd == nil || !nd.alive:
		why := "is not a node of this cluster"
		if nd != nil {
			why = "is not alive"
		}
		q.pop()
		c.unschedulable(t, fmt.Sprintf("%s has a hard node affinity (NodeAffinitySchedulingStrategy soft=False) to node %s, which %s; use soft=True to let it run elsewhere", t.name, p.NodeName, why))
		return NoNode, true, false
	case !nd.total.Fits(t.shape.res) || len(nd.allGPUs) < t.shape.gpus:
		q.pop()
		c.failTask2(t, ErrKindInfeasible, fmt.Sprintf("%s needs %s but node %s, which its node affinity names, offers %s (%s)", t.name, t.shape.res, nd.name, nd.total, nd.total.Missing(t.shape.res)))
		return NoNode, true, false
	case !labelsMatch(nd, p.Labels):
		q.pop()
		c.failTask2(t, ErrKindInfeasible, fmt.Sprintf("%s has a hard node affinity to node %s, which does not match its label_selector", t.name, nd.name))
		return NoNode, true, false
	case c.fitsOn(t, nd):
		q.pop()
		c.placeOn(t, nd, -1)
		return nd.id, true, false
	}
	return NoNode, false, true // room on its node comes later
}

// labelFeasible says why no live node both matches t's label selector and could ever hold
// its resources ("" when one can).
func (c *Core) labelFeasible(t *task) string {
	matched := 0
	for _, nd := range c.nodes {
		if !nd.alive || !labelsMatch(nd, t.pol.Labels) {
			continue
		}
		matched++
		if nd.total.Fits(t.shape.res) && len(nd.allGPUs) >= t.shape.gpus {
			return ""
		}
	}
	sel := make([]string, 0, len(t.pol.Labels))
	for _, l := range t.pol.Labels {
		sel = append(sel, fmt.Sprintf("%s %s (%s)", l.Key, l.Op, strings.Join(l.Values, ",")))
	}
	sort.Strings(sel)
	if matched == 0 {
		return fmt.Sprintf("%s has label_selector %s, which no live node of the cluster matches (nodes get labels from --labels / init(labels=...)); a cluster in an allocation never grows, so it cannot run", t.name, strings.Join(sel, " and "))
	}
	return fmt.Sprintf("%s needs %s, which none of the %d live nodes matching its label_selector %s offers", t.name, t.shape.res, matched, strings.Join(sel, " and "))
}

// unschedulable fails t (or kills the actor it creates) because its policy names a node that
// is gone.
func (c *Core) unschedulable(t *task, msg string) {
	if t.kind == KindActor {
		c.actorDead(t, ErrKindUnschedulable, msg)
		return
	}
	c.failTask(t, ErrKindUnschedulable, msg)
}

// failTask2 fails a task, or an actor's creation, with kind.
func (c *Core) failTask2(t *task, kind, msg string) {
	if t.kind == KindActor {
		c.actorDead(t, kind, msg)
		return
	}
	c.failTask(t, kind, msg)
}

// NodePolicy returns the NodeID of the live or lost node named name, or NoNode: for the shell,
// which resolves a node affinity's node id before it submits.
func (c *Core) NodePolicy(name string) NodeID {
	if id, ok := c.nodeByName[name]; ok {
		return id
	}
	return NoNode
}

// CanRetry reports whether a running task may run again after an application exception it
// declared retryable (retry_exceptions): retries left, not cancelled, its job running.
func (c *Core) CanRetry(id TaskID) bool {
	t := c.tasks[id]
	if t == nil || t.kind != KindTask || t.state != tRunning || t.cancelled || t.retriesLeft == 0 {
		return false
	}
	j := c.jobs[t.job]
	return j != nil && !j.ended
}
