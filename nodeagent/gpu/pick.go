package gpu

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNotEnough means Pick was asked for more GPUs than the topology offers.
var ErrNotEnough = errors.New("not enough free GPUs")

// maxCombinations bounds Pick's exhaustive search; past it Pick grows sets greedily.
const maxCombinations = 200_000

// Pick chooses n of t's GPUs for one task and returns their Index values, sorted.
//
// t holds the candidates: pass the free GPUs only (Without removes the busy ones). GPUs in
// MIG mode are never picked whole, since CUDA exposes only their MIG instances. Among the
// sets of n GPUs Pick prefers, in this order:
//
//  1. the fewest NUMA nodes (one, when one node has n free GPUs; an unknown node counts as
//     one more node);
//  2. the most GPUs on numaPreferred (ignored when it is negative), typically the node of the
//     CPUs the task was given;
//  3. the most NVLink-connected pairs, so that collectives stay on NVLink;
//  4. the lowest indices, so that the answer is deterministic.
//
// Pick is pure: it does no I/O and keeps no state. It fails with ErrNotEnough when fewer than
// n GPUs can be picked, and for a negative n.
func Pick(t *Topology, n int, numaPreferred int) ([]int, error) {
	if n < 0 {
		return nil, fmt.Errorf("pick %d GPUs: negative count", n)
	}
	var cands []Device
	if t != nil {
		for _, d := range t.Devices {
			if !d.MIG {
				cands = append(cands, d)
			}
		}
	}
	if n > len(cands) {
		return nil, fmt.Errorf("pick %d GPUs: %w: %d free", n, ErrNotEnough, len(cands))
	}
	if n == 0 {
		return nil, nil
	}
	slices.SortFunc(cands, func(a, b Device) int { return a.Index - b.Index })
	p := newPicker(cands, numaPreferred)

	var best []int
	if combinations(len(cands), n) <= maxCombinations {
		best = p.exhaustive(n)
	} else {
		best = p.greedy(n)
	}
	out := make([]int, len(best))
	for i, c := range best {
		out[i] = cands[c].Index
	}
	slices.Sort(out)
	return out, nil
}

// Without returns a copy of t without the GPUs whose Index is in used.
func (t *Topology) Without(used ...int) *Topology {
	if t == nil {
		return nil
	}
	out := *t
	out.Devices = nil
	for _, d := range t.Devices {
		if !slices.Contains(used, d.Index) {
			out.Devices = append(out.Devices, d)
		}
	}
	return &out
}

// picker scores sets of candidates, named by their position in cands.
type picker struct {
	cands     []Device
	preferred int
	linked    [][]bool
}

func newPicker(cands []Device, preferred int) *picker {
	pos := map[string]int{}
	for i, d := range cands {
		if d.UUID != "" {
			pos[d.UUID] = i
		}
		if d.PCIBusID != "" {
			pos[d.PCIBusID] = i
		}
	}
	linked := make([][]bool, len(cands))
	for i := range linked {
		linked[i] = make([]bool, len(cands))
	}
	for i, d := range cands {
		for _, peer := range d.NVLinkPeers {
			if j, ok := pos[peer]; ok && j != i {
				// A link is a link from either end.
				linked[i][j], linked[j][i] = true, true
			}
		}
	}
	return &picker{cands: cands, preferred: preferred, linked: linked}
}

type score struct{ nodes, preferred, links int }

// better reports whether a is preferred to b; ties keep the earlier set.
func (a score) better(b score) bool {
	if a.nodes != b.nodes {
		return a.nodes < b.nodes
	}
	if a.preferred != b.preferred {
		return a.preferred > b.preferred
	}
	return a.links > b.links
}

func (p *picker) score(set []int) score {
	var s score
	var nodes []int
	for k, i := range set {
		node := p.cands[i].NUMANode
		if !slices.Contains(nodes, node) {
			nodes = append(nodes, node)
		}
		if p.preferred >= 0 && node == p.preferred {
			s.preferred++
		}
		for _, j := range set[k+1:] {
			if p.linked[i][j] {
				s.links++
			}
		}
	}
	s.nodes = len(nodes)
	return s
}

// exhaustive scores every set of n candidates in lexicographic order.
func (p *picker) exhaustive(n int) []int {
	set := make([]int, n)
	for i := range set {
		set[i] = i
	}
	best := slices.Clone(set)
	bestScore := p.score(set)
	m := len(p.cands)
	for {
		// Advance to the next combination.
		i := n - 1
		for i >= 0 && set[i] == m-n+i {
			i--
		}
		if i < 0 {
			return best
		}
		set[i]++
		for j := i + 1; j < n; j++ {
			set[j] = set[j-1] + 1
		}
		if s := p.score(set); s.better(bestScore) {
			best, bestScore = slices.Clone(set), s
		}
	}
}

// greedy grows one set from each candidate, adding at each step the candidate on the
// preferred node, then on the seed's node, then with the most links into the set, then with
// the most links at all (so that pairs are not split), then the lowest index; it returns the
// best of these sets.
func (p *picker) greedy(n int) []int {
	degree := make([]int, len(p.cands))
	for i := range p.cands {
		for j := range p.cands {
			if p.linked[i][j] {
				degree[i]++
			}
		}
	}
	var best []int
	var bestScore score
	for seed := range p.cands {
		set := []int{seed}
		for len(set) < n {
			next, nextKey := -1, [4]int{}
			for c := range p.cands {
				if slices.Contains(set, c) {
					continue
				}
				var key [4]int
				if p.preferred >= 0 && p.cands[c].NUMANode == p.preferred {
					key[0] = 1
				}
				if p.cands[c].NUMANode == p.cands[seed].NUMANode {
					key[1] = 1
				}
				for _, i := range set {
					if p.linked[i][c] {
						key[2]++
					}
				}
				key[3] = degree[c]
				if next < 0 || keyGreater(key, nextKey) {
					next, nextKey = c, key
				}
			}
			set = append(set, next)
		}
		slices.Sort(set)
		if s := p.score(set); best == nil || s.better(bestScore) {
			best, bestScore = set, s
		}
	}
	return best
}

func keyGreater(a, b [4]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return false
}

// combinations is m choose n, saturating past maxCombinations.
func combinations(m, n int) int {
	n = min(n, m-n)
	c := 1
	for i := 1; i <= n; i++ {
		c = c * (m - n + i) / i
		if c > maxCombinations {
			return maxCombinations + 1
		}
	}
	return c
}
