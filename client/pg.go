package client

import (
	"context"
	"fmt"

	"github.com/shoal-hpc/shoal/wire"
)

// tailPG and tailPGReady end the ids of placement groups and of their ready objects.
const (
	tailPG      = 0xFFFFFFFD
	tailPGReady = 0xFFFFFFFC
)

// PlacementGroup is a set of resource bundles reserved together (a gang): tasks and actors
// placed in a bundle with InBundle draw from its reservation.
type PlacementGroup struct {
	c       *Client
	id      wire.ID
	bundles []map[string]float64
}

// ID returns the placement group's id in hex.
func (pg *PlacementGroup) ID() string { return pg.id.String() }

// Bundles returns the number of bundles.
func (pg *PlacementGroup) Bundles() int { return len(pg.bundles) }

// NewPlacementGroup reserves bundles with strategy (PACK, SPREAD, STRICT_PACK or
// STRICT_SPREAD; "" is PACK) and waits until all of them are placed, ctx ends, or the agent
// finds them infeasible (an error matching ErrInfeasible that says what the cluster has).
// A group that is not placed when ctx ends is removed.
func (c *Client) NewPlacementGroup(ctx context.Context, bundles []map[string]float64, strategy, name string) (*PlacementGroup, error) {
	id := c.newID(tailPG)
	// The agent gives this connection a reference to the ready object but pushes no READY
	// for it: Get asks with GET (no slot), and the reference is given back with DECREF.
	ready := ObjectRef{id: id.WithIndex(tailPGReady), c: c}
	defer c.send(wire.TDecref, &wire.IDs{IDs: []wire.ID{ready.id}})
	if err := c.request(context.Background(), wire.TPGCreate, &wire.PGCreate{PG: id, Bundles: bundles, Strategy: strategy, Name: name}, nil); err != nil {
		return nil, fmt.Errorf("create placement group of %d bundles: %w", len(bundles), err)
	}
	pg := &PlacementGroup{c: c, id: id, bundles: bundles}
	var ok bool
	if err := c.Get(ctx, ready, &ok); err != nil {
		c.request(context.Background(), wire.TPGRemove, &wire.One{ID: id}, nil)
		return nil, fmt.Errorf("place %d bundles (%s): %w", len(bundles), strategy, err)
	}
	return pg, nil
}

// Remove gives the group's resources back; actors in it die, as in Ray.
func (pg *PlacementGroup) Remove() error {
	if err := pg.c.request(context.Background(), wire.TPGRemove, &wire.One{ID: pg.id}, nil); err != nil {
		return fmt.Errorf("remove placement group %s: %w", pg.id, err)
	}
	return nil
}

// InBundle places a task or an actor in bundle i of pg (-1: any bundle of it).
func InBundle(pg *PlacementGroup, i int) Option {
	return option{name: "InBundle", scope: forTask | forActor, set: func(o *options) { o.pg, o.bundle = pg, i }}
}

func (o options) placeIn(spec *wire.Task) {
	if o.pg != nil {
		spec.PG, spec.Bundle = o.pg.id, o.bundle
	}
}

// Nodes lists the cluster's nodes with their total and available resources, the head node
// first.
func (c *Client) Nodes() ([]wire.NodeInfo, error) {
	r, err := c.info()
	if err != nil {
		return nil, err
	}
	return r.Nodes, nil
}
