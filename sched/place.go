package sched

import "fmt"

// Node choice for a task, in order of preference (a scheduling strategy first narrows or
// decides it, strategy.go):
//  1. a placement-group task: the bundle it asks for, or the first of its group's bundles with
//     room;
//  2. the node that holds the most bytes of its arguments, when that is at least
//     Config.LocalityBytes (argument locality);
//  3. the node of its submitter (a member's workers keep their work on their node);
//  4. the next node with room, from the queue's cursor (round robin, so queues spread over the
//     cluster and no task scans all nodes while there is room somewhere).
// A node has room for a task when its available resources fit, enough GPUs are free, and a
// worker can run it there: an idle one, one starting, or room under the node's process cap
// (possibly after stopping an idle worker of another kind).

// place places t (the head of q) or reports ok=false when it fits nowhere now. n is NoNode
// with ok=true when t was failed instead.
func (c *Core) place(t *task, q *queue) (NodeID, bool) {
	if j := c.jobs[t.job]; j == nil || j.ended {
		q.pop()
		c.endOfJob(t)
		return NoNode, true
	}
	if g := t.group; g != nil {
		if g.state != groupPlaced {
			return NoNode, false
		}
		for i := range g.bundles {
			if t.bundle >= 0 && int32(i) != t.bundle {
				continue
			}
			if g.nodes[i] == NoNode {
				continue // its node was lost; the bundle waits to be placed again
			}
			nd := c.nodes[g.nodes[i]]
			if !nd.alive || !g.avail[i].Fits(t.shape.res) || len(nd.gpus) < t.shape.gpus || !c.workerRoom(nd, t) {
				continue
			}
			q.pop()
			c.placeOn(t, nd, i)
			return nd.id, true
		}
		return NoNode, false
	}
	spread := false
	if t.pol != nil {
		n, done, wait := c.placePolicy(t, q)
		if done || wait {
			return n, done
		}
		spread = t.pol.Spread
	}
	if f := c.feasible(t.shape); f != "" {
		q.pop()
		c.failTask(t, ErrKindInfeasible, fmt.Sprintf("%s needs %s but no node of the cluster has that much: %s; ask for less or start the cluster with more", t.name, t.shape.res, f))
		return NoNode, true
	}
	if !spread { // SPREAD: no locality and no submitter's node, the cursor goes round
		if n := c.preferred(t); n != NoNode && c.fitsOn(t, c.nodes[n]) {
			q.pop()
			c.placeOn(t, c.nodes[n], -1)
			return n, true
		}
		if t.origin >= 0 && int(t.origin) < len(c.nodes) && c.fitsOn(t, c.nodes[t.origin]) {
			q.pop()
			c.placeOn(t, c.nodes[t.origin], -1)
			return t.origin, true
		}
	}
	nn := len(c.nodes)
	var capped *node // a node with room for t but no process slot
	for k := 0; k < nn; k++ {
		i := (q.cursor + k) % nn
		nd := c.nodes[i]
		if c.fitsOn(t, nd) {
			q.cursor = i
			if spread {
				q.cursor = (i + 1) % nn
			}
			q.pop()
			c.placeOn(t, nd, -1)
			return NodeID(i), true
		}
		if capped == nil && t.kind == KindActor && nd.alive && t.allowedOn(nd) && nd.avail.Fits(t.shape.res) && len(nd.gpus) >= t.shape.gpus {
			capped = nd
		}
	}
	if capped != nil {
		// an actor holds its process for its life: one that no node has a slot for fails
		// now, naming the cap, rather than wait for actors that may never end
		q.pop()
		c.actorDead(t, ErrKindTooManyProcs, c.capMsg(capped, t))
		return NoNode, true
	}
	return NoNode, false
}

// feasible says why no live node could ever hold shape s ("" when one can); cached per shape
// until nodes join or leave, so the scan is once per shape, not per task.
func (c *Core) feasible(s *shape) string {
	if s.gen == c.nodeGen && s.gen != 0 {
		return s.why
	}
	s.gen, s.why = c.nodeGen, ""
	var best *node
	for _, n := range c.nodes {
		if !n.alive {
			continue
		}
		if n.total.Fits(s.res) && len(n.allGPUs) >= s.gpus {
			return ""
		}
		if best == nil || n.total["CPU"] > best.total["CPU"] {
			best = n
		}
	}
	if best == nil {
		s.why = "the cluster has no live node"
	} else {
		s.why = fmt.Sprintf("the largest offers %s (%s)", best.total, best.total.Missing(s.res))
	}
	return s.why
}

// preferred is the node holding the most bytes of t's arguments, if at least LocalityBytes.
func (c *Core) preferred(t *task) NodeID {
	if len(t.args) == 0 {
		return NoNode
	}
	best, bestN := int64(0), NoNode
	var per map[NodeID]int64
	for _, a := range t.args {
		o := c.objects[a]
		if o == nil {
			continue
		}
		for _, n := range o.nodes {
			if !c.nodes[n].alive {
				continue
			}
			if len(t.args) == 1 {
				if o.size > best {
					best, bestN = o.size, n
				}
				continue
			}
			if per == nil {
				per = map[NodeID]int64{}
			}
			per[n] += o.size
			if per[n] > best || per[n] == best && n < bestN {
				best, bestN = per[n], n
			}
		}
	}
	if best < c.cfg.LocalityBytes {
		return NoNode
	}
	return bestN
}

// fitsOn reports whether t could be placed on nd now (outside any placement group).
func (c *Core) fitsOn(t *task, nd *node) bool {
	if !nd.alive || !nd.avail.Fits(t.shape.res) || len(nd.gpus) < t.shape.gpus || !t.allowedOn(nd) {
		return false
	}
	if t.shape.gpus > 0 && c.cfg.GPUs.PickGPUs(nd.id, nd.gpus, t.shape.gpus) == nil {
		return false
	}
	return c.workerRoom(nd, t)
}

// workerRoom reports whether a worker for t can be had on nd: an idle one of its job (tasks
// without GPUs), a pool worker that will be free, or a process slot (possibly after stopping
// an idle worker).
func (c *Core) workerRoom(nd *node, t *task) bool {
	if p := nd.pool[t.pool()]; p != nil && t.shape.gpus == 0 && p.workers > len(p.waiting) {
		return true // a pool worker of its job will be free for it
	}
	if nd.procs < nd.maxProc {
		return true
	}
	return c.evictable(nd, wkey{job: t.job, env: t.env}) != nil
}

// evictable is an idle worker on nd that may be stopped to make room for a worker of key k
// (the oldest idle worker of another job first, then of another GPU set or runtime environment).
func (c *Core) evictable(nd *node, k wkey) *worker {
	var other *worker
	for _, w := range nd.idle {
		if w.job != k.job {
			return w
		}
		if other == nil && (GPUKey(w.gpus) != k.gpus || w.env != k.env) {
			other = w
		}
	}
	return other
}

// placeOn takes t's resources on nd (from bundle b of its group, or the node's when b < 0) and
// gives it a worker: an idle one, or one started for it.
func (c *Core) placeOn(t *task, nd *node, b int) {
	t.state = tPlaced
	t.q = nil
	t.node = nd.id
	t.took = int32(b)
	if b >= 0 {
		t.group.avail[b].Sub(t.shape.res)
		t.group.members[t.id] = t
	} else {
		nd.avail.Sub(t.shape.res)
	}
	if t.shape.gpus > 0 {
		ids := c.cfg.GPUs.PickGPUs(nd.id, nd.gpus, t.shape.gpus)
		if ids == nil { // the bundle's node has the GPUs counted but the picker refuses
			ids = append([]int(nil), nd.gpus[:t.shape.gpus]...)
		}
		t.gpus = ids
		nd.gpus = removeInts(nd.gpus, ids)
	}
	c.giveWorker(t, nd)
}

// unplace gives back what placeOn took.
func (c *Core) unplace(t *task) {
	if t.node == NoNode {
		return
	}
	nd := c.nodes[t.node]
	if !t.lent {
		if t.took >= 0 && t.group != nil && t.group.state == groupPlaced {
			t.group.avail[t.took].Add(t.shape.res)
		} else {
			nd.avail.Add(t.shape.res)
		}
	}
	t.lent = false
	if t.group != nil {
		delete(t.group.members, t.id)
	}
	if len(t.gpus) > 0 {
		if nd.alive {
			nd.gpus = insertSorted(nd.gpus, t.gpus...)
		}
		t.gpus = nil
	}
	if t.took >= 0 && t.group != nil {
		c.groupReleased(t.group)
	}
	t.node, t.took = NoNode, -1
	c.released(nd.id)
}
