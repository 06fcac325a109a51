package nodeagent

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoal-hpc/shoal/head"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

type pgState int

const (
	pgPending pgState = iota
	pgCreated
	pgRemoved
)

type pgroup struct {
	id       wire.ID
	job      *job
	name     string
	strategy sched.Strategy
	bundles  []sched.Resources
	avail    []sched.Resources
	nodes    []*node // the node of each bundle
	state    pgState
	ready    wire.ID
}

// ReadyIndex is the last four bytes of a placement group's ready object id.
const ReadyIndex = 0xFFFFFFFC

func (pg *pgroup) canEverFit(res sched.Resources, bundle int) bool {
	for i, b := range pg.bundles {
		if (bundle < 0 || bundle == i) && b.Fits(res) {
			return true
		}
	}
	return false
}

func (a *Agent) createPG(c *client, m *wire.PGCreate) error {
	if c.job == nil {
		return errors.New("only a driver or worker may create placement groups")
	}
	strategy, err := sched.ParseStrategy(m.Strategy)
	if err != nil {
		return err
	}
	if len(m.Bundles) == 0 {
		return errors.New("placement group needs at least one bundle")
	}
	if a.pgs[m.PG] != nil {
		return fmt.Errorf("placement group %s already exists", m.PG)
	}
	pg := &pgroup{id: m.PG, job: c.job, name: m.Name, strategy: strategy, ready: m.PG.WithIndex(ReadyIndex)}
	for i, b := range m.Bundles {
		r := sched.Resources{}
		for k, v := range b {
			if v < 0 {
				return fmt.Errorf("bundle %d asks for %g of %s; amounts must not be negative", i, v, k)
			}
			if v > 0 {
				r[k] = v
			}
		}
		if len(r) == 0 {
			return fmt.Errorf("bundle %d is empty; every bundle needs a resource such as {\"CPU\": 1}", i)
		}
		pg.bundles = append(pg.bundles, r)
	}
	a.pgs[pg.id] = pg
	a.store.Expect(pg.ready, c.id)
	if a.head != nil {
		a.head.PlacementGroupCreated(head.PlacementGroup{ID: pg.id.String(), Job: c.job.id, Name: m.Name, Strategy: string(strategy), Bundles: m.Bundles, State: "PENDING"})
	}
	a.pendPGs = append(a.pendPGs, pg)
	a.placePending()
	return nil
}

// placePending places pending placement groups in creation order.
func (a *Agent) placePending() {
	keep := a.pendPGs[:0]
	for _, pg := range a.pendPGs {
		if pg.state != pgPending {
			continue
		}
		var live []*node
		var nodes []sched.Node
		for _, n := range a.nodes {
			if n.alive {
				live = append(live, n)
				nodes = append(nodes, sched.Node{ID: n.id, Total: n.total, Available: n.avail})
			}
		}
		assign, ok, err := sched.PlaceBundles(pg.strategy, pg.bundles, nodes)
		var inf *sched.ErrInfeasible
		if errors.As(err, &inf) {
			pg.state = pgRemoved
			if o := a.store.SetError(pg.ready, errorData("infeasible", err.Error()+"; the cluster has "+a.total.String())); o != nil {
				a.sealed(o)
			}
			a.setPGState(pg, "INFEASIBLE")
			continue
		}
		if !ok {
			keep = append(keep, pg)
			continue
		}
		for i, b := range pg.bundles {
			n := live[assign[i]]
			n.avail.Sub(b)
			pg.avail = append(pg.avail, b.Clone())
			pg.nodes = append(pg.nodes, n)
		}
		pg.state = pgCreated
		a.setPGState(pg, "CREATED")
		data, _ := msgpack.Marshal(true)
		if o := a.store.PutInline(pg.ready, wire.FmtMsgpack, data, nil, 0); o != nil {
			a.sealed(o)
		}
	}
	a.pendPGs = keep
}

func (a *Agent) setPGState(pg *pgroup, s string) {
	if a.head != nil {
		a.head.PlacementGroupState(pg.id.String(), s)
	}
}

func (a *Agent) removePG(id wire.ID) error {
	pg := a.pgs[id]
	if pg == nil {
		return fmt.Errorf("remove placement group %s: no such placement group", id)
	}
	if pg.state == pgRemoved {
		delete(a.pgs, id)
		return nil
	}
	was := pg.state
	// actors in the group die with it, as in Ray
	for _, ac := range a.actors {
		if ac.create != nil && ac.create.pg == pg && ac.state != actorDead {
			ac.noRestart = true
			a.actorDead(ac, "its placement group was removed")
		}
	}
	if was == pgCreated {
		for i := range pg.bundles {
			pg.nodes[i].avail.Add(pg.avail[i])
		}
	} else if o := a.store.SetError(pg.ready, errorData("cancelled", "placement group was removed before it was placed")); o != nil {
		a.sealed(o)
	}
	pg.state = pgRemoved
	// tasks still running in it give their resources back to the node (see pool)
	for _, t := range a.tasks {
		if t.pg == pg && t.allocated {
			t.bundle = -1
		}
	}
	a.setPGState(pg, "REMOVED")
	delete(a.pgs, id)
	a.schedule()
	return nil
}
