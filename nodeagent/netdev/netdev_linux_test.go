package netdev

import (
	"os"
	"slices"
	"testing"
)

// TestDetectThisMachine runs Detect on the real /sys of the machine running the tests.
func TestDetectThisMachine(t *testing.T) {
	node, err := Detect(testLogger(t))
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	i := slices.IndexFunc(node.NICs, func(n NIC) bool { return n.Name == "lo" })
	if i < 0 {
		t.Fatalf("no lo among %+v", node.NICs)
	}
	lo := node.NICs[i]
	if lo.Kind != KindLoopback || !lo.Virtual || lo.PCIBusID != "" || !lo.Up {
		t.Errorf("lo = %+v, want an up, virtual loopback without a PCI bus id", lo)
	}
	if !slices.Contains(lo.Addrs, "127.0.0.1/8") {
		t.Errorf("lo addresses %v lack 127.0.0.1/8", lo.Addrs)
	}
	for _, n := range node.NICs {
		t.Logf("%s kind=%s up=%v virtual=%v speed=%d mtu=%d numa=%d pci=%q addrs=%v",
			n.Name, n.Kind, n.Up, n.Virtual, n.SpeedMbps, n.MTU, n.NUMANode, n.PCIBusID, n.Addrs)
	}
	// The RDMA list must be exactly what the kernel lists; on a kernel without InfiniBand
	// (the development VMs) that is nothing.
	var names []string
	if ents, err := os.ReadDir("/sys/class/infiniband"); err == nil {
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	var got []string
	for _, d := range node.RDMA {
		got = append(got, d.Name)
	}
	if !slices.Equal(got, names) {
		t.Errorf("RDMA devices %v, want %v", got, names)
	}
	if len(names) == 0 {
		if _, _, ok := node.PreferredHCA(-1); ok {
			t.Error("PreferredHCA found a port on a machine without RDMA")
		}
	}
}
