package gpu

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// machine builds a topology of n GPUs, perNode to a NUMA node (0 for unknown nodes), with
// the NVLinks that link(i, j) reports; peers are named by UUID.
func machine(n, perNode int, link func(i, j int) bool) *Topology {
	t := &Topology{}
	for i := range n {
		node := -1
		if perNode > 0 {
			node = i / perNode
		}
		t.Devices = append(t.Devices, Device{Index: i, UUID: fmt.Sprintf("GPU-%d", i), NUMANode: node, MinorNumber: i})
	}
	for i := range t.Devices {
		for j := range t.Devices {
			if i != j && link(i, j) {
				t.Devices[i].NVLinkPeers = append(t.Devices[i].NVLinkPeers, t.Devices[j].UUID)
			}
		}
	}
	return t
}

func TestPick(t *testing.T) {
	nvswitch := func(i, j int) bool { return true }
	pairs := func(i, j int) bool { return i^1 == j }
	none := func(i, j int) bool { return false }
	dgx := machine(8, 4, nvswitch) // two sockets of four GPUs on NVSwitches
	bridged := machine(8, 4, pairs)
	noNUMA := machine(8, 0, pairs)
	withMIG := machine(8, 4, nvswitch)
	withMIG.Devices[0].MIG = true
	oneWay := machine(4, 0, func(i, j int) bool { return i == 3 && j == 2 })
	byBus := machine(4, 0, none)
	for i := range byBus.Devices {
		byBus.Devices[i].PCIBusID = fmt.Sprintf("0000:%02x:00.0", i)
	}
	byBus.Devices[1].NVLinkPeers = []string{"0000:03:00.0"}
	big := machine(32, 8, pairs) // past maxCombinations for n >= 6: Pick goes greedy
	if combinations(29, 6) <= maxCombinations {
		t.Fatal("the greedy cases would not run greedy")
	}

	for _, tc := range []struct {
		name      string
		topo      *Topology
		n, prefer int
		want      []int
		err       error
	}{
		{name: "whole preferred socket", topo: dgx, n: 4, prefer: 1, want: []int{4, 5, 6, 7}},
		{name: "two on the preferred socket", topo: dgx, n: 2, prefer: 0, want: []int{0, 1}},
		{name: "no preference", topo: dgx, n: 2, prefer: -1, want: []int{0, 1}},
		{name: "all", topo: dgx, n: 8, prefer: 0, want: []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{name: "fewest nodes beat the preferred node", topo: dgx.Without(0, 1, 4), n: 3, prefer: 0, want: []int{5, 6, 7}},
		{name: "one socket is full", topo: dgx.Without(0, 1), n: 4, prefer: 0, want: []int{4, 5, 6, 7}},
		{name: "spill over from the preferred node", topo: dgx.Without(0, 1, 4), n: 4, prefer: 0, want: []int{2, 3, 5, 6}},
		{name: "linked pair on the preferred node", topo: bridged.Without(1), n: 2, prefer: 0, want: []int{2, 3}},
		{name: "linked pair, NUMA unknown", topo: noNUMA.Without(0), n: 2, prefer: 0, want: []int{2, 3}},
		{name: "two linked pairs", topo: noNUMA.Without(0, 3), n: 4, prefer: -1, want: []int{4, 5, 6, 7}},
		{name: "MIG GPU not picked whole", topo: withMIG, n: 4, prefer: 0, want: []int{4, 5, 6, 7}},
		{name: "link named from one end", topo: oneWay, n: 2, prefer: -1, want: []int{2, 3}},
		{name: "peer named by bus id", topo: byBus, n: 2, prefer: -1, want: []int{1, 3}},
		{name: "greedy on a large node", topo: big.Without(16), n: 6, prefer: 2, want: []int{18, 19, 20, 21, 22, 23}},
		{name: "greedy keeps pairs", topo: big.Without(0, 2, 5), n: 8, prefer: 0, want: []int{1, 3, 4, 6, 7, 8, 9, 10}},
		{name: "zero", topo: dgx, n: 0, prefer: 0, want: nil},
		{name: "too many", topo: dgx.Without(3), n: 8, prefer: 0, err: ErrNotEnough},
		{name: "MIG does not count", topo: withMIG, n: 8, prefer: 0, err: ErrNotEnough},
		{name: "no GPUs", topo: &Topology{}, n: 1, prefer: 0, err: ErrNotEnough},
		{name: "nil topology", topo: nil, n: 1, prefer: 0, err: ErrNotEnough},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Pick(tc.topo, tc.n, tc.prefer)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Pick error %v, want %v", err, tc.err)
			}
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("Pick(%d, prefer %d) = %v, want %v", tc.n, tc.prefer, got, want)
			}
		})
	}
	if _, err := Pick(dgx, -1, 0); err == nil {
		t.Error("Pick of -1 GPUs did not fail")
	}
}

func TestWithout(t *testing.T) {
	topo := machine(4, 2, func(i, j int) bool { return false })
	topo.Driver = "550.54.15"
	got := topo.Without(1, 3)
	if len(got.Devices) != 2 || got.Devices[0].Index != 0 || got.Devices[1].Index != 2 || got.Driver != topo.Driver {
		t.Errorf("Without(1, 3) = %+v", got)
	}
	if len(topo.Devices) != 4 {
		t.Error("Without changed its receiver")
	}
}
