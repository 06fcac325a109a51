package sched

import (
	"errors"
	"fmt"
	"sort"
)

// Placement groups in the core: bundles are reserved on nodes by PlaceBundles (in creation
// order, retried when resources are released); tasks in a group draw from their bundle's
// reservation. When a node is lost, the bundles it held are placed again (on a node that keeps
// the strategy's promise) while the others stay where they are.

type groupState uint8

const (
	groupPending groupState = iota
	groupPlaced
	groupRemoved
)

type group struct {
	id       GroupID
	job      JobID
	strategy Strategy
	bundles  []Resources
	avail    []Resources
	nodes    []NodeID // NoNode: not placed (yet, or again after its node was lost)
	state    groupState
	members  map[TaskID]*task
	queues   []*queue
	pending  bool // in c.pendGroups
}

func (g *group) canEverFit(res Resources, bundle int) bool {
	for i, b := range g.bundles {
		if (bundle < 0 || bundle == i) && b.Fits(res) {
			return true
		}
	}
	return false
}

func (c *Core) sortedGroups() []*group {
	gs := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		gs = append(gs, g)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].id < gs[j].id })
	return gs
}

func (c *Core) groupCreate(e GroupCreate) error {
	j := c.jobs[e.Job]
	if j == nil || j.ended {
		return fmt.Errorf("placement group %d of job %d, which is not running", e.Group, e.Job)
	}
	if c.groups[e.Group] != nil {
		return fmt.Errorf("placement group %d created twice", e.Group)
	}
	bundles, err := Bundles(e.Bundles)
	if err != nil {
		return err
	}
	g := &group{id: e.Group, job: e.Job, strategy: e.Strategy, members: map[TaskID]*task{}, bundles: bundles}
	for _, r := range bundles {
		g.avail = append(g.avail, r.Clone())
		g.nodes = append(g.nodes, NoNode)
	}
	c.groups[g.id] = g
	c.pendGroups = append(c.pendGroups, g)
	g.pending = true
	c.groupsDirty = true
	return nil
}

// placeGroups tries the pending groups in creation order.
func (c *Core) placeGroups() {
	if len(c.pendGroups) == 0 {
		return
	}
	var live []*node
	var nodes []Node
	for _, n := range c.nodes {
		if n.alive {
			live = append(live, n)
			nodes = append(nodes, Node{ID: n.name, Total: n.total, Available: n.avail})
		}
	}
	keep := c.pendGroups[:0]
	for _, g := range c.pendGroups {
		if g.state == groupRemoved {
			g.pending = false
			continue
		}
		if !c.placeGroup(g, live, nodes) {
			keep = append(keep, g)
			continue
		}
		g.pending = false
	}
	for i := len(keep); i < len(c.pendGroups); i++ {
		c.pendGroups[i] = nil
	}
	c.pendGroups = keep
}

// placeGroup places g's unplaced bundles, reporting whether it is settled (placed or failed).
func (c *Core) placeGroup(g *group, live []*node, nodes []Node) bool {
	var idx []int
	var want []Resources
	used := map[NodeID]bool{}
	for i, n := range g.nodes {
		if n == NoNode {
			idx = append(idx, i)
			want = append(want, g.bundles[i])
		} else {
			used[n] = true
		}
	}
	if len(idx) == 0 {
		return true
	}
	// nodes the strategy still allows for the bundles to place
	cand, candNodes := live, nodes
	if len(used) > 0 && (g.strategy == StrictSpread || g.strategy == StrictPack) {
		cand, candNodes = nil, nil
		for i, n := range live {
			if used[n.id] == (g.strategy == StrictPack) {
				cand = append(cand, n)
				candNodes = append(candNodes, nodes[i])
			}
		}
	}
	assign, ok, err := PlaceBundles(g.strategy, want, candNodes)
	var inf *ErrInfeasible
	if errors.As(err, &inf) {
		if len(used) > 0 {
			return false // the group had a home: wait for room (a node may come back)
		}
		g.state = groupRemoved
		delete(c.groups, g.id)
		c.emit(GroupFailed{Group: g.id, Kind: ErrKindInfeasible, Msg: err.Error()})
		c.failGroupQueues(g, "its placement group is infeasible: "+err.Error())
		return true
	}
	if !ok {
		return false
	}
	for k, i := range idx {
		nd := cand[assign[k]]
		nd.avail.Sub(g.bundles[i])
		for j := range nodes { // later groups in this round see the room taken
			if nodes[j].ID == nd.name {
				nodes[j].Available = nd.avail
			}
		}
		g.nodes[i] = nd.id
		g.avail[i] = g.bundles[i].Clone()
	}
	g.state = groupPlaced
	c.emit(GroupPlaced{Group: g.id, Nodes: append([]NodeID(nil), g.nodes...)})
	c.groupReleased(g)
	return true
}

// groupReleased runs when room came free in one of g's bundles: its queues try again.
func (c *Core) groupReleased(g *group) {
	if g.state != groupPlaced {
		return
	}
	for _, q := range append([]*queue(nil), g.queues...) {
		c.dispatch(q)
	}
}

func (c *Core) failGroupQueues(g *group, why string) {
	for _, q := range append([]*queue(nil), g.queues...) {
		for {
			t := q.pop()
			if t == nil {
				break
			}
			if t.kind == KindActor {
				c.actorDead(t, ErrKindActorDied, why)
			} else {
				c.failTask(t, ErrKindInfeasible, t.name+": "+why)
			}
		}
		c.dropQueue(q)
	}
}

func (c *Core) groupRemove(id GroupID) {
	g := c.groups[id]
	if g == nil {
		return
	}
	was := g.state
	g.state = groupRemoved
	delete(c.groups, id)
	if was != groupPlaced && !anyPlaced(g) {
		c.emit(GroupFailed{Group: g.id, Kind: ErrKindCancelled, Msg: "placement group was removed before it was placed"})
	}
	// its actors die with it, as in Ray; its running tasks keep their resources, which go back
	// to their node when they end
	ids := make([]TaskID, 0, len(g.members))
	for tid := range g.members {
		ids = append(ids, tid)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for i, n := range g.nodes {
		if n != NoNode && c.nodes[n].alive {
			c.nodes[n].avail.Add(g.avail[i])
		}
	}
	// a member's resources came from its bundle, whose unused room just went back to the
	// node: what it uses stays taken from the node and goes back to it when it ends
	for _, tid := range ids {
		t := g.members[tid]
		t.took = -1
		if t.kind == KindActor && t.state != tDone {
			t.noRestart = true
			if w := t.worker; w != nil {
				c.emit(KillWorker{Worker: w.id, Why: "its placement group was removed"})
				c.workerGone(w)
			}
			t.worker = nil
			c.unplace(t)
			c.actorDead(t, ErrKindActorDied, "its placement group was removed")
		}
	}
	g.members = nil
	c.failGroupQueues(g, "its placement group was removed")
	for _, n := range g.nodes {
		if n != NoNode {
			c.released(n)
		}
	}
}

func anyPlaced(g *group) bool {
	for _, n := range g.nodes {
		if n != NoNode {
			return true
		}
	}
	return false
}

// groupsNodeLost unplaces the bundles that lived on nd; their tasks are already gone.
func (c *Core) groupsNodeLost(nd *node) {
	for _, g := range c.sortedGroups() {
		lost := false
		for i, n := range g.nodes {
			if n == nd.id {
				g.nodes[i] = NoNode
				g.avail[i] = g.bundles[i].Clone()
				lost = true
			}
		}
		if lost && !g.pending {
			g.pending = true
			c.pendGroups = append(c.pendGroups, g)
			c.groupsDirty = true
		}
	}
}

// Bundles checks a placement group's bundles as a user wrote them (no negative amount, none
// empty; zero amounts dropped).
func Bundles(in []Resources) ([]Resources, error) {
	if len(in) == 0 {
		return nil, errors.New("a placement group needs at least one bundle")
	}
	out := make([]Resources, 0, len(in))
	for i, b := range in {
		r := Resources{}
		for k, v := range b {
			if v < 0 {
				return nil, fmt.Errorf("bundle %d asks for %g of %s; amounts must not be negative", i, v, k)
			}
			if v > 0 {
				r[k] = v
			}
		}
		if len(r) == 0 {
			return nil, fmt.Errorf("bundle %d is empty; every bundle needs a resource such as {\"CPU\": 1}", i)
		}
		out = append(out, r)
	}
	return out, nil
}
