package train

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/shoal-hpc/shoal/wire"
)

// Elastic gangs (`--nnodes MIN:MAX`). A gang that lost a node (its actor or agent gone) is
// placed again on the live nodes, MAX at most, with the world size, ranks and LOCAL_WORLD_SIZE
// worked out anew, as long as at least MIN are left; it grows back to MAX in the job's next
// allocation (after a requeue), which plans from all of its nodes.

// ErrNodes wraps an --nnodes value that cannot be read.
var ErrNodes = errors.New("invalid --nnodes")

// ParseNNodes reads --nnodes: "" (every live node), "N", or "MIN:MAX" (elastic). It returns
// min and max, with 0 for "every live node" (and min == max when not elastic).
func ParseNNodes(s string) (lo, hi int, err error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, 0, nil
	}
	a, b, elastic := strings.Cut(s, ":")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi = lo
	var err2 error
	if elastic {
		hi, err2 = strconv.Atoi(strings.TrimSpace(b))
	}
	if err1 != nil || err2 != nil || lo < 1 || hi < lo || hi > 1<<16 {
		return 0, 0, fmt.Errorf("%w %q: give a number of nodes, or MIN:MAX with 1 <= MIN <= MAX (e.g. 2:4)", ErrNodes, s)
	}
	return lo, hi, nil
}

// Replanner returns a Config.Replan for --nnodes lo:hi (hi 0: every live node): the plan on
// the live nodes of nodes(), at most hi of them, or an error naming what is left when fewer
// than lo are.
func Replanner(nodes func() ([]wire.NodeInfo, error), o PlanOptions, lo, hi int) func() (int, map[string]float64, error) {
	return func() (int, map[string]float64, error) {
		ns, err := nodes()
		if err != nil {
			return 0, nil, err
		}
		live := 0
		for _, n := range ns {
			if n.Alive {
				live++
			}
		}
		if live < lo {
			return 0, nil, fmt.Errorf("%d live node(s) left, fewer than --nnodes %d:%d asks for", live, lo, hi)
		}
		o.NNodes = live
		if hi > 0 && live > hi {
			o.NNodes = hi
		}
		return Plan(ns, o)
	}
}
