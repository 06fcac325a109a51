package train

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoal-hpc/shoal/wire"
)

func TestParseNNodes(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int
		bad    bool
	}{
		{"", 0, 0, false}, {"0", 0, 0, false}, {"3", 3, 3, false}, {"2:4", 2, 4, false}, {" 1 : 1 ", 1, 1, false},
		{"4:2", 0, 0, true}, {"0:2", 0, 0, true}, {"-1", 0, 0, true}, {"a:b", 0, 0, true}, {"2:", 0, 0, true}, {"1:2:3", 0, 0, true},
		{"1:99999999", 0, 0, true},
	} {
		lo, hi, err := ParseNNodes(tc.in)
		if tc.bad != (err != nil) || lo != tc.lo || hi != tc.hi {
			t.Errorf("ParseNNodes(%q) = %d, %d, %v", tc.in, lo, hi, err)
		}
		if err != nil && !errors.Is(err, ErrNodes) {
			t.Errorf("ParseNNodes(%q): %v does not wrap ErrNodes", tc.in, err)
		}
	}
}

func FuzzParseNNodes(f *testing.F) {
	for _, s := range []string{"", "3", "2:4", "4:2", "1:2:3", " 2 : 3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseNNodes(s)
		if err != nil {
			if !errors.Is(err, ErrNodes) {
				t.Fatal(err)
			}
			return
		}
		if lo < 0 || hi < lo || (lo == 0) != (hi == 0) {
			t.Fatalf("ParseNNodes(%q) = %d, %d", s, lo, hi)
		}
	})
}

// A gang of --nnodes 2:3 on 3 nodes: 3 nodes' ranks; after one is lost, 2 nodes'; after two,
// an error that says what is left.
func TestReplanner(t *testing.T) {
	node := func(id string, alive bool) wire.NodeInfo {
		return wire.NodeInfo{ID: id, Alive: alive, Total: map[string]float64{"CPU": 2}}
	}
	nodes := []wire.NodeInfo{node("n1", true), node("n2", true), node("n3", true)}
	replan := Replanner(func() ([]wire.NodeInfo, error) { return nodes, nil }, PlanOptions{NprocPerNode: "2"}, 2, 3)
	if n, res, err := replan(); n != 6 || res["CPU"] != 1 || err != nil {
		t.Fatalf("3 live nodes: %d ranks %v %v", n, res, err)
	}
	nodes[2].Alive = false
	if n, _, err := replan(); n != 4 || err != nil {
		t.Fatalf("2 live nodes: %d ranks %v", n, err)
	}
	nodes[1].Alive = false
	if _, _, err := replan(); err == nil || !strings.Contains(err.Error(), "1 live node(s) left, fewer than --nnodes 2:3") {
		t.Fatalf("1 live node: %v", err)
	}
	nodes = append(nodes, node("n4", true), node("n5", true), node("n6", true))
	if n, _, err := replan(); n != 6 || err != nil { // at most MAX nodes
		t.Fatalf("4 live nodes: %d ranks %v", n, err)
	}
}
