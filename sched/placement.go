package sched

import (
	"fmt"
	"sort"
)

// Strategy is a placement-group strategy, spelled as Ray spells it.
type Strategy string

// Strategies.
const (
	Pack         Strategy = "PACK"
	Spread       Strategy = "SPREAD"
	StrictPack   Strategy = "STRICT_PACK"
	StrictSpread Strategy = "STRICT_SPREAD"
)

// ParseStrategy validates s.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case Pack, Spread, StrictPack, StrictSpread:
		return Strategy(s), nil
	case "":
		return Pack, nil
	}
	return "", fmt.Errorf("placement group strategy %q: use PACK, SPREAD, STRICT_PACK or STRICT_SPREAD", s)
}

// Node is a candidate node for placement: its name, total and available resources.
type Node struct {
	ID        string
	Total     Resources
	Available Resources
}

// ErrInfeasible is returned when no amount of waiting can place the bundles.
type ErrInfeasible struct{ Reason string }

func (e *ErrInfeasible) Error() string { return "infeasible placement group: " + e.Reason }

// PlaceBundles assigns each bundle to a node index, or returns ok=false when the bundles do not
// fit now (they may later), or an *ErrInfeasible when they never can on these nodes.
func PlaceBundles(strategy Strategy, bundles []Resources, nodes []Node) (assign []int, ok bool, err error) {
	if len(bundles) == 0 {
		return nil, false, &ErrInfeasible{"a placement group needs at least one bundle"}
	}
	for i, b := range bundles {
		fitsSomewhere := false
		for _, n := range nodes {
			if n.Total.Fits(b) {
				fitsSomewhere = true
			}
		}
		if !fitsSomewhere {
			return nil, false, &ErrInfeasible{fmt.Sprintf("bundle %d %s is larger than every node", i, b)}
		}
	}
	switch strategy {
	case StrictSpread:
		if len(bundles) > len(nodes) {
			return nil, false, &ErrInfeasible{fmt.Sprintf("STRICT_SPREAD of %d bundles needs %d nodes, the cluster has %d", len(bundles), len(bundles), len(nodes))}
		}
	case StrictPack:
		total := Sum(bundles)
		any := false
		for _, n := range nodes {
			if n.Total.Fits(total) {
				any = true
			}
		}
		if !any {
			return nil, false, &ErrInfeasible{fmt.Sprintf("STRICT_PACK needs %s on one node", total)}
		}
	}
	// Placed on the nodes as if nothing ran there: bundles that do not fit then (a gang larger
	// than the whole cluster) never will, since an allocation never grows.
	if !hasRoom(strategy, bundles, nodes) {
		all := Sum(bundles)
		cluster := Resources{}
		for _, n := range nodes {
			cluster.Add(n.Total)
		}
		return nil, false, &ErrInfeasible{fmt.Sprintf("%d bundles (%s in all, %s) do not fit on the cluster's %d nodes (%s in all) even when they are idle",
			len(bundles), all, strategy, len(nodes), cluster)}
	}
	return placeOn(strategy, bundles, nodes, false)
}

// hasRoom reports whether bundles fit on nodes' total resources.
func hasRoom(strategy Strategy, bundles []Resources, nodes []Node) bool {
	_, ok, _ := placeOn(strategy, bundles, nodes, true)
	return ok
}

// placeOn places bundles on the nodes' available resources, or on their totals.
func placeOn(strategy Strategy, bundles []Resources, nodes []Node, totals bool) (assign []int, ok bool, err error) {
	room := func(n Node) Resources {
		if totals {
			return n.Total
		}
		return n.Available
	}
	if strategy == StrictPack {
		total := Sum(bundles)
		for _, ni := range nodeOrder(strategy, nodes, map[int]bool{}, 0, nil) {
			if room(nodes[ni]).Fits(total) {
				assign = make([]int, len(bundles))
				for i := range assign {
					assign[i] = ni
				}
				return assign, true, nil
			}
		}
		return nil, false, nil
	}
	avail := make([]Resources, len(nodes))
	for i, n := range nodes {
		avail[i] = room(n).Clone()
	}
	assign = make([]int, len(bundles))
	used := map[int]bool{}
	for i, b := range bundles {
		order := nodeOrder(strategy, nodes, used, i, assign)
		placed := false
		for _, ni := range order {
			if strategy == StrictSpread && used[ni] {
				continue
			}
			if strategy == StrictPack && i > 0 && ni != assign[0] {
				continue
			}
			if avail[ni].Fits(b) {
				avail[ni].Sub(b)
				assign[i] = ni
				used[ni] = true
				placed = true
				break
			}
		}
		if !placed {
			return nil, false, nil
		}
	}
	return assign, true, nil
}

// nodeOrder lists node indices in the order to try for the next bundle: PACK prefers nodes
// already used, SPREAD nodes not yet used; ties break by node id for determinism.
func nodeOrder(strategy Strategy, nodes []Node, used map[int]bool, _ int, _ []int) []int {
	idx := make([]int, len(nodes))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ua, ub := used[idx[a]], used[idx[b]]
		if ua != ub {
			if strategy == Pack || strategy == StrictPack {
				return ua
			}
			return ub
		}
		return nodes[idx[a]].ID < nodes[idx[b]].ID
	})
	return idx
}
