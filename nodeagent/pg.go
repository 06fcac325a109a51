package nodeagent

import (
	"errors"
	"fmt"

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
	cid      sched.GroupID
	job      *job
	name     string
	strategy sched.Strategy
	bundles  []sched.Resources
	nodes    []*node // the node of each bundle, once placed
	state    pgState
	ready    wire.ID
}

// ReadyIndex is the last four bytes of a placement group's ready object id.
const ReadyIndex = 0xFFFFFFFC

func (a *Agent) createPG(c *client, m *wire.PGCreate) error {
	if c.job == nil {
		return errors.New("only a driver or worker may create placement groups")
	}
	strategy, err := sched.ParseStrategy(m.Strategy)
	if err != nil {
		return err
	}
	raw := make([]sched.Resources, len(m.Bundles))
	for i, b := range m.Bundles {
		raw[i] = b
	}
	bundles, err := sched.Bundles(raw)
	if err != nil {
		return err
	}
	if a.pgs[m.PG] != nil {
		return fmt.Errorf("placement group %s already exists", m.PG)
	}
	pg := &pgroup{id: m.PG, job: c.job, name: m.Name, strategy: strategy, ready: m.PG.WithIndex(ReadyIndex), bundles: bundles}
	a.pgs[pg.id] = pg
	a.store.Expect(pg.ready, c.id)
	if a.head != nil {
		a.head.PlacementGroupCreated(head.PlacementGroup{ID: pg.id.String(), Job: c.job.id, Name: m.Name, Strategy: string(strategy), Bundles: m.Bundles, State: "PENDING"})
	}
	a.nextGroup++
	pg.cid = sched.GroupID(a.nextGroup)
	a.coreGroups[pg.cid] = pg
	a.feed(sched.GroupCreate{Group: pg.cid, Job: c.job.cid, Strategy: strategy, Bundles: pg.bundles})
	return nil
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
	delete(a.pgs, id)
	if pg.state == pgRemoved {
		return nil
	}
	// the core kills its actors (as Ray does), fails its queued tasks and gives its room back;
	// a group removed before it was placed seals its ready object with an error (GroupFailed)
	a.feed(sched.GroupRemove{Group: pg.cid})
	delete(a.coreGroups, pg.cid)
	pg.state = pgRemoved
	a.setPGState(pg, "REMOVED")
	return nil
}
