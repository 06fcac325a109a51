package train

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func placedOn(nodes ...string) []Placed {
	out := make([]Placed, len(nodes))
	for i, n := range nodes {
		out[i] = Placed{Node: n}
	}
	return out
}

func TestTakeOverPlansWhichStandbysTakeTheLostRanks(t *testing.T) {
	all := map[string]bool{"a": true, "b": true, "c": true, "d": true, "e": true}
	cases := []struct {
		name            string
		lost            []int
		placed, standby []Placed
		live            map[string]bool
		want            []StandbyPick
		ok              bool
	}{
		{"one rank a node, one spare", []int{1}, placedOn("a", "b"), placedOn("c"),
			map[string]bool{"a": true, "c": true}, []StandbyPick{{1, 0}}, true},
		{"a node's two ranks move together to one spare node", []int{2, 3}, placedOn("a", "a", "b", "b"), placedOn("d", "c", "c", "d"),
			map[string]bool{"a": true, "c": true, "d": true}, []StandbyPick{{2, 1}, {3, 2}}, true},
		{"standbys on a lost spare node are not used", []int{0}, placedOn("a", "b"), placedOn("c", "d"),
			map[string]bool{"b": true, "d": true}, []StandbyPick{{0, 1}}, true},
		{"a spare node before a node with a surviving rank", []int{0}, placedOn("a", "b"), placedOn("b", "e"),
			all, []StandbyPick{{0, 1}}, true},
		{"a surviving rank's node when nothing else is left", []int{0}, placedOn("a", "b"), placedOn("b"),
			all, []StandbyPick{{0, 0}}, true},
		{"two lost nodes, two spare nodes", []int{0, 1}, placedOn("a", "b", "e"), placedOn("d", "c"),
			all, []StandbyPick{{0, 1}, {1, 0}}, true},
		{"two lost nodes, one spare node with room for one", []int{0, 1}, placedOn("a", "b", "e"), placedOn("c"),
			all, nil, false},
		{"a node's ranks do not split across spare nodes", []int{0, 1}, placedOn("a", "a", "b", "b"), placedOn("c", "d"),
			all, nil, false},
		{"no standbys left", []int{0}, placedOn("a", "b"), nil, all, nil, false},
		{"nothing lost", nil, placedOn("a"), placedOn("c"), all, nil, false},
		{"an index out of range", []int{5}, placedOn("a"), placedOn("c"), all, nil, false},
		{"a standby that never said where it runs", []int{0}, placedOn("a"), []Placed{{}}, all, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := TakeOver(c.lost, c.placed, c.standby, c.live)
			if ok != c.ok || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("TakeOver(%v) = %v, %v; want %v, %v", c.lost, got, ok, c.want, c.ok)
			}
		})
	}
}

func TestStandbyCountIsANodesShareOnEachSpare(t *testing.T) {
	for _, c := range []struct{ ranks, nodes, k, want int }{
		{2, 2, 1, 1}, {8, 2, 1, 4}, {8, 2, 2, 8}, {5, 2, 1, 3}, {4, 4, 0, 0}, {0, 1, 1, 0}, {3, 0, 1, 0},
	} {
		if got := StandbyCount(c.ranks, c.nodes, c.k); got != c.want {
			t.Errorf("StandbyCount(%d ranks, %d nodes, %d spares) = %d, want %d", c.ranks, c.nodes, c.k, got, c.want)
		}
	}
}

// A standby actor makes a spare without running a rank; the Start that moves a rank to it
// (other per-attempt variables: rank, port) runs in that spare.
func TestStandbyRunsTheMovedRankInItsSpare(t *testing.T) {
	needPython(t)
	dir := writeRank(t)
	r, _ := NewRankActor()
	spec := StartSpec{Argv: []string{"python3", "rank.py", "ok"}, Cwd: dir, Env: []string{"MASTER_PORT=1", "OMP_NUM_THREADS=2", "RANK=0"},
		Spare: true, SpareWaitMs: 200, Preload: []string{"fractions"}}
	if made, err := r.Standby(spec); err != nil || !made {
		t.Fatalf("Standby: %v %v, want a spare being made", made, err)
	}
	if st, _ := r.Poll(0, 0); st.Started {
		t.Fatalf("a standby must run no rank: %+v", st)
	}
	pid := waitSpare(t, r)
	spec.Env = []string{"MASTER_PORT=2000", "OMP_NUM_THREADS=2", "RANK=1"}
	warm, err := r.Start(spec)
	if err != nil || !warm {
		t.Fatalf("Start on a standby: warm=%v err=%v, want its spare used", warm, err)
	}
	st := pollDone(t, r)
	if !st.Warm || st.Code != 0 || !strings.Contains(st.Tail, fmt.Sprintf("PID %d PRELOADED True", pid)) || !strings.Contains(st.Tail, "ENV 2000 2") {
		t.Fatalf("the moved rank must run in the standby's spare (pid %d) with the attempt's variables:\n%+v", pid, st)
	}
	r.Close()
}

func TestStandbyMakesNoSpareForWhatASpareCannotRun(t *testing.T) {
	needPython(t)
	r, _ := NewRankActor()
	for _, spec := range []StartSpec{
		{Argv: []string{"bash", "-c", "true"}, Preload: []string{"fractions"}},
		{Argv: []string{"python3", "-c", "pass"}},
	} {
		if made, err := r.Standby(spec); err != nil || made {
			t.Fatalf("Standby(%q, preload %v) = %v, %v; want no spare and no error", spec.Argv, spec.Preload, made, err)
		}
	}
	if _, err := r.Standby(StartSpec{Argv: []string{"no-such-command-here"}}); err == nil || !strings.Contains(err.Error(), "no-such-command-here") {
		t.Fatalf("Standby of a missing command: %v, want an error naming it", err)
	}
}
