package train

import (
	"fmt"
	"math"
	"time"
)

// Growing an elastic gang back within an allocation (--nnodes MIN:MAX). A gang that shrank
// after a lost node runs on fewer ranks than MAX allows; when a node joins (a YARN replacement
// container, a `shoal join`), it grows back at a checkpoint, as torchrun's elastic agent
// restarts its workers when membership changes:
//
//	every GrowCheck while the gang runs and no checkpoint is due:
//	  Replan() gives more ranks than run, and the live nodes that hold no rank have room
//	  for the extra ones ─> checkpoint due (reason "grow": a 'G' on fd 6, shoal.train.checkpoint_due())
//	  ─> rank 0 reports one (or --checkpoint-timeout passes) ─> the ranks are stopped
//	  ─> a new placement group on the live nodes, ranks and world size anew ─> the next attempt
//	     from the checkpoint (not counted against --max-restarts)
//
// A gang that ends by itself before it checkpoints has simply finished.

// roomToGrow returns the ranks the gang would have if it restarted now, when that is more than
// it runs and the live nodes that hold none of its ranks have room for the difference; else 0.
func (g *gang) roomToGrow(placed []Placed) int {
	if g.cfg.Replan == nil {
		return 0
	}
	n, res, err := g.cfg.Replan()
	if err != nil || n <= g.cfg.Ranks {
		return 0
	}
	nodes, err := g.c.Nodes()
	if err != nil {
		return 0
	}
	used := map[string]bool{}
	for _, p := range placed {
		used[p.Node] = true
	}
	for _, p := range g.standbyPlaced {
		used[p.Node] = true
	}
	fit := 0
	for _, nd := range nodes {
		if !nd.Alive || used[nd.ID] {
			continue
		}
		k := math.MaxInt
		for r, v := range res {
			if v > 0 {
				k = min(k, int(nd.Available[r]/v))
			}
		}
		if k != math.MaxInt {
			fit += k
		}
	}
	if fit < n-g.cfg.Ranks {
		return 0
	}
	return n
}

// nodeSettle is how long a gang whose rank died of SIGTERM (not from shoal train: a
// NodeManager cleaning up a container whose agent died) watches for the rank's node to be lost.
const nodeSettle = time.Second

// goneNodes returns the actors (indexes into placed) whose node the head no longer has alive;
// with settle, it asks again every 100 ms for up to nodeSettle until one is.
func (g *gang) goneNodes(placed []Placed, settle bool) map[int]bool {
	deadline := time.Now().Add(nodeSettle)
	for {
		live, err := g.liveNodes()
		if err != nil {
			return nil
		}
		out := map[int]bool{}
		for i, p := range placed {
			if !live[p.Node] {
				out[i] = true
			}
		}
		if len(out) > 0 || !settle || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// grow places the next attempt on the nodes there are now, after an attempt stopped to grow.
func (g *gang) grow() error {
	g.dropActors()
	n, r, err := g.cfg.Replan()
	if err != nil {
		g.say("cannot go on: %v", err)
		return fmt.Errorf("%w: %v", ErrPlacement, err)
	}
	g.say("elastic: %d ranks instead of %d on the nodes there are now", n, g.cfg.Ranks)
	g.cfg.Ranks, g.cfg.Resources = n, r
	return nil
}

// liveNodes is the set of the cluster's nodes the head has alive.
func (g *gang) liveNodes() (map[string]bool, error) {
	nodes, err := g.c.Nodes()
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, n := range nodes {
		if n.Alive {
			live[n.ID] = true
		}
	}
	return live, nil
}
