package train

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/shoal-hpc/shoal/client"
)

// Standby ranks (`--spare-nodes K` with warm spares). A spare node's agent alone would make a
// rank moved to it start cold (Python and `import torch`, seconds of CPU) while the whole gang
// waits. So at gang start `shoal train` places standby RankActors on the spare nodes, as many as
// a node's ranks, in a placement group of their own (the gang's bundles hold the rank nodes,
// so PACK puts the standbys on what is left: the spares), and has each one make a warm spare
// for the command (RankActor.Standby) without starting a rank. When an attempt loses a node, the
// lost actors are replaced by standbys on one live spare node (TakeOver) and the next attempt
// starts on the survivors (their own warm spares) and the standbys (theirs): no new placement
// group, no new workers, no cold rank.
//
//	gang start: place the gang's group, its actors, start the ranks
//	            └─> standby group (spare nodes' bundles) ─> standby actors ─> Standby(spec): warm spare
//	node lost:  the lost actors killed; TakeOver: for each lost node, a live spare node with as
//	            many unused standbys ─> they take the lost actors' places; the next attempt starts
//	            none fits (or no standbys left) ─> as before: every actor and group dropped, Replan
//
// The gang's group keeps its bundles on the lost node (the scheduler places them again when room
// comes back, as Ray does); both groups are given back when the gang ends or is placed anew.

// StandbyPick is one standby taking a lost actor's place.
type StandbyPick struct {
	Lost    int // index of the lost actor in the gang
	Standby int // index of the standby that takes its place
}

// TakeOver plans which standbys take the places of the lost actors: the lost actors of one node
// move together to one live node that has as many unused standbys, preferring nodes where no
// surviving rank runs (a spare node), then by name. placed is where each of the gang's actors ran,
// standby where each standby runs, live the nodes alive now. ok is false when some lost node's
// ranks fit nowhere; then no standby is used.
func TakeOver(lost []int, placed, standby []Placed, live map[string]bool) (picks []StandbyPick, ok bool) {
	if len(lost) == 0 {
		return nil, false
	}
	isLost := map[int]bool{}
	byNode := map[string][]int{} // the lost actors of each node
	var lostNodes []string
	for _, i := range lost {
		if i < 0 || i >= len(placed) || isLost[i] {
			return nil, false
		}
		isLost[i] = true
		n := placed[i].Node
		if _, seen := byNode[n]; !seen {
			lostNodes = append(lostNodes, n)
		}
		byNode[n] = append(byNode[n], i)
	}
	slices.Sort(lostNodes)
	busy := map[string]bool{} // nodes with a surviving rank
	for i, p := range placed {
		if !isLost[i] {
			busy[p.Node] = true
		}
	}
	free := map[string][]int{} // unused standbys on each live node
	var nodes []string
	for j, s := range standby {
		if s.Node == "" || !live[s.Node] {
			continue
		}
		if _, seen := free[s.Node]; !seen {
			nodes = append(nodes, s.Node)
		}
		free[s.Node] = append(free[s.Node], j)
	}
	slices.SortFunc(nodes, func(a, b string) int {
		if busy[a] != busy[b] {
			if busy[a] {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	for _, ln := range lostNodes {
		need := byNode[ln]
		found := false
		for _, n := range nodes {
			if len(free[n]) >= len(need) {
				for k, i := range need {
					picks = append(picks, StandbyPick{Lost: i, Standby: free[n][k]})
				}
				free[n] = free[n][len(need):]
				found = true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return picks, true
}

// StandbyCount is how many standby ranks `--spare-nodes k` keeps for a gang of ranks on nodes
// nodes: a rank node's share, on each of the k spare nodes.
func StandbyCount(ranks, nodes, k int) int {
	if ranks <= 0 || nodes <= 0 || k <= 0 {
		return 0
	}
	return k * ((ranks + nodes - 1) / nodes)
}

// makeStandbys places the standby ranks (once per gang, when spare nodes are asked for and the
// gang has warm spares and restarts) and has each make its warm spare. A failure only means no
// standbys: a lost node's ranks then start cold, as without them.
func (g *gang) makeStandbys(ctx context.Context, ranks []Rank, w World) {
	n := StandbyCount(g.cfg.Ranks, countNodes(ranks), g.cfg.SpareNodes)
	if n == 0 || len(g.cfg.Preload) == 0 || g.cfg.MaxRestarts == 0 || g.standbyTried {
		return
	}
	g.standbyTried = true
	if _, isPy := ParsePython(g.cfg.Argv); !isPy {
		return
	}
	bundles := make([]map[string]float64, n)
	for i := range bundles {
		bundles[i] = g.cfg.Resources
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pg, err := g.c.NewPlacementGroup(pctx, bundles, "PACK", "shoal-train-standby")
	if err != nil {
		g.say("no standby ranks on the spare nodes (a lost node's ranks will start cold): %v", err)
		return
	}
	g.standbyPG = pg
	opts := []any{client.MaxRestarts(0)}
	for k, v := range g.cfg.Resources {
		opts = append(opts, client.Resource(k, v))
	}
	actors := make([]*client.Actor, n)
	for i := range actors {
		if actors[i], err = g.c.NewActor(ActorType, append([]any{client.InBundle(pg, i)}, opts...)...); err != nil {
			break
		}
	}
	placed := make([]Placed, n)
	if err == nil {
		err = g.callAll(ctx, actors, &placed, "Info", func(int) []any { return []any{g.cfg.Allowed} })
	}
	var made []bool
	if err == nil {
		// the ranks a node's standbys would be there, numbered as on any node; the per-attempt
		// variables (rank, world, master) are not part of a spare, the rest is as Start's
		hypo := Layout(placed, nil)
		byActor := make([]Rank, n)
		for _, r := range hypo {
			byActor[r.Actor] = r
		}
		made = make([]bool, n)
		err = g.callAll(ctx, actors, &made, "Standby", func(i int) []any {
			return []any{StartSpec{Argv: g.cfg.Argv, Env: append(Env(byActor[i], placed[i], w), g.cfg.Env...), Cwd: g.cfg.Cwd,
				Spare: true, Preload: g.cfg.Preload, SpareWaitMs: int(g.cfg.SpareWait / time.Millisecond), Ignore: g.ignored()}}
		})
	}
	if err != nil {
		for _, a := range actors {
			if a != nil {
				g.c.Kill(a)
			}
		}
		pg.Remove()
		g.standbyPG = nil
		g.say("no standby ranks on the spare nodes (a lost node's ranks will start cold): %v", err)
		return
	}
	g.standby, g.standbyPlaced = actors, placed
	var where []string
	for _, p := range placed {
		where = append(where, p.Node)
	}
	g.say("%d standby rank(s) with warm spares on %s, for a lost node's ranks", n, strings.Join(slices.Compact(slices.Sorted(slices.Values(where))), ","))
}

func countNodes(ranks []Rank) int {
	seen := map[string]bool{}
	for _, r := range ranks {
		seen[r.Node] = true
	}
	return len(seen)
}

// takeOver puts standbys in the places of the lost actors (TakeOver) and kills those; it
// reports false when it cannot (no standbys, or none fit), and the caller drops the gang.
func (g *gang) takeOver(lost []int) bool {
	if len(g.standby) == 0 || len(lost) == 0 {
		return false
	}
	live, err := g.liveNodes()
	if err != nil {
		return false
	}
	picks, ok := TakeOver(lost, g.placed, g.standbyPlaced, live)
	if !ok {
		g.say("the standby ranks cannot take the lost node's ranks (none left on a live node): the gang is placed anew")
		return false
	}
	used := map[int]bool{}
	var from, to []string
	for _, p := range picks {
		from = append(from, g.placed[p.Lost].Node)
		to = append(to, g.standbyPlaced[p.Standby].Node)
		g.c.Kill(g.actors[p.Lost])
		g.actors[p.Lost], g.placed[p.Lost] = g.standby[p.Standby], g.standbyPlaced[p.Standby]
		used[p.Standby] = true
	}
	var sa []*client.Actor
	var sp []Placed
	for j := range g.standby {
		if !used[j] {
			sa, sp = append(sa, g.standby[j]), append(sp, g.standbyPlaced[j])
		}
	}
	g.standby, g.standbyPlaced = sa, sp
	g.say("spare node: %d standby rank(s) on %s take the place of the ranks on %s", len(picks),
		strings.Join(slices.Compact(slices.Sorted(slices.Values(to))), ","), strings.Join(slices.Compact(slices.Sorted(slices.Values(from))), ","))
	return true
}

// dropStandbys kills the standby actors left and gives their group back.
func (g *gang) dropStandbys() {
	for _, a := range g.standby {
		g.c.Kill(a)
	}
	g.standby, g.standbyPlaced = nil, nil
	if g.standbyPG != nil {
		g.standbyPG.Remove()
		g.standbyPG = nil
	}
}

// lostList is the sorted indices set in lost.
func lostList(lost map[int]bool) []int {
	var out []int
	for i := range lost {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}
