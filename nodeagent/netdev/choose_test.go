package netdev

import (
	"maps"
	"testing"
)

func TestPreferredNIC(t *testing.T) {
	nic := func(name string, numa, speed int, virtual bool, addrs ...string) NIC {
		return NIC{Name: name, NUMANode: numa, SpeedMbps: speed, Virtual: virtual, Up: true, Kind: KindEther, Addrs: addrs}
	}
	tests := []struct {
		name    string
		nics    []NIC
		numa    int
		allowed []string
		want    string // "" for none
	}{
		{"fastest on the numa node", []NIC{
			nic("a", 0, 25000, false, "10.0.0.1/24"), nic("b", 0, 100000, false, "10.0.1.1/24"),
			nic("c", 1, 200000, false, "10.0.2.1/24"),
		}, 0, nil, "b"},
		{"numa node over speed, but only with IPv4", []NIC{
			nic("a", 0, 25000, false, "fd00::1/64"), nic("b", 1, 25000, false, "10.0.1.1/24"),
		}, 0, nil, "b"},
		{"physical over virtual, whatever the speed", []NIC{
			nic("br0", 0, 100000, true, "10.0.0.1/24"), nic("eth0", -1, 1000, false, "10.0.1.1/24"),
		}, 0, nil, "eth0"},
		{"link-local only is no address", []NIC{
			nic("a", 0, 100000, false, "fe80::1/64", "169.254.1.1/16"),
		}, 0, nil, ""},
		{"falls back to an IPv6 virtual interface", []NIC{
			nic("br0", 0, -1, true, "fd00::1/64"), {Name: "eth0", Up: false, Addrs: []string{"10.0.0.1/24"}},
		}, 0, nil, "br0"},
		{"down is never chosen", []NIC{{Name: "eth0", Addrs: []string{"10.0.0.1/24"}}}, -1, nil, ""},
		{"allowed globs and names", []NIC{
			nic("ib0", 0, 200000, false, "10.0.0.1/24"), nic("eth0", 0, 1000, false, "10.0.1.1/24"),
			nic("eth1", 0, 10000, false, "10.0.2.1/24"),
		}, 0, []string{"eth*", "bond0"}, "eth1"},
		{"malformed glob still matches literally", []NIC{
			nic("eth[", 0, 1000, false, "10.0.0.1/24"),
		}, 0, []string{"eth["}, "eth["},
		{"unknown numa is no match", []NIC{
			nic("a", -1, 1000, false, "10.0.0.1/24"), nic("b", 0, 1000, false, "10.0.0.2/24"),
		}, -1, nil, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Node{NICs: tt.nics}
			got, ok := n.PreferredNIC(tt.numa, tt.allowed)
			if ok != (tt.want != "") || got.Name != tt.want {
				t.Errorf("PreferredNIC = %q, %v; want %q", got.Name, ok, tt.want)
			}
		})
	}
}

func TestPreferredHCA(t *testing.T) {
	dev := func(name string, numa int, link string, rate float64, state string) RDMADevice {
		return RDMADevice{Name: name, NUMANode: numa,
			Ports: []RDMAPort{{Port: 1, State: state, LinkLayer: link, RateGbps: rate}}}
	}
	tests := []struct {
		name     string
		devs     []RDMADevice
		numa     int
		wantDev  string
		wantPort int
	}{
		{"numa node first", []RDMADevice{
			dev("mlx5_0", 0, LinkInfiniband, 400, "ACTIVE"), dev("mlx5_1", 1, LinkEthernet, 100, "ACTIVE"),
		}, 1, "mlx5_1", 1},
		{"InfiniBand over faster RoCE", []RDMADevice{
			dev("mlx5_0", 0, LinkEthernet, 400, "ACTIVE"), dev("mlx5_1", 0, LinkInfiniband, 100, "ACTIVE"),
		}, 0, "mlx5_1", 1},
		{"then rate", []RDMADevice{
			dev("mlx5_0", 0, LinkInfiniband, 100, "ACTIVE"), dev("mlx5_1", 0, LinkInfiniband, 200, "ACTIVE"),
		}, -1, "mlx5_1", 1},
		{"only active ports", []RDMADevice{
			dev("mlx5_0", 0, LinkInfiniband, 400, "DOWN"), dev("mlx5_1", 1, LinkEthernet, 25, "ACTIVE"),
		}, 0, "mlx5_1", 1},
		{"second port of a VPI card", []RDMADevice{{Name: "mlx4_0", NUMANode: 0, Ports: []RDMAPort{
			{Port: 1, State: "DOWN", LinkLayer: LinkInfiniband, RateGbps: 56},
			{Port: 2, State: "ACTIVE", LinkLayer: LinkEthernet, RateGbps: 40},
		}}}, 0, "mlx4_0", 2},
		{"none active", []RDMADevice{dev("mlx5_0", 0, LinkInfiniband, 400, "INIT")}, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Node{RDMA: tt.devs}
			d, p, ok := n.PreferredHCA(tt.numa)
			if ok != (tt.wantDev != "") || d != tt.wantDev || p != tt.wantPort {
				t.Errorf("PreferredHCA = %q, %d, %v; want %q, %d", d, p, ok, tt.wantDev, tt.wantPort)
			}
		})
	}
}

func TestGIDIndex(t *testing.T) {
	d := RDMADevice{Name: "mlx5_0", Ports: []RDMAPort{{Port: 1, LinkLayer: LinkEthernet, GIDs: []GID{
		{0, "fe80:0000:0000:0000:bace:f6ff:fe01:0203", GIDRoCEv1},
		{1, "fe80:0000:0000:0000:bace:f6ff:fe01:0203", GIDRoCEv2},
		{2, "0000:0000:0000:0000:0000:ffff:c0a8:0a0b", GIDRoCEv1},
		{4, "fd00:0000:0000:0000:0000:0000:0000:0011", GIDRoCEv2},
		{5, "0000:0000:0000:0000:0000:ffff:c0a8:0a0b", GIDRoCEv2},
	}}}}
	if i, ok := d.GIDIndex(1); !ok || i != 5 {
		t.Errorf("GIDIndex(1) = %d, %v; want 5", i, ok)
	}
	if _, ok := d.GIDIndex(2); ok {
		t.Error("GIDIndex(2) found a GID on a port that does not exist")
	}
	if !d.RoCE() {
		t.Error("RoCE() = false for an Ethernet port")
	}
	if (RDMADevice{Ports: []RDMAPort{{LinkLayer: LinkInfiniband}}}).RoCE() {
		t.Error("RoCE() = true for an InfiniBand port")
	}
}

func TestNCCLEnv(t *testing.T) {
	tests := []struct {
		name     string
		nic      NIC
		hca      string
		port     int
		roce     bool
		gidIndex int
		want     map[string]string
	}{
		{"InfiniBand ignores the gid index", NIC{Name: "ib0"}, "mlx5_0", 1, false, 3,
			map[string]string{"NCCL_SOCKET_IFNAME": "=ib0", "NCCL_IB_HCA": "=mlx5_0:1"}},
		{"RoCE v2", NIC{Name: "ens1f0"}, "mlx5_0", 1, true, 3,
			map[string]string{"NCCL_SOCKET_IFNAME": "=ens1f0", "NCCL_IB_HCA": "=mlx5_0:1", "NCCL_IB_GID_INDEX": "3"}},
		{"RoCE without a usable GID leaves NCCL's default", NIC{Name: "ens1f0"}, "mlx5_0", 1, true, -1,
			map[string]string{"NCCL_SOCKET_IFNAME": "=ens1f0", "NCCL_IB_HCA": "=mlx5_0:1"}},
		{"all ports of the HCA", NIC{}, "mlx5_10", 0, false, -1, map[string]string{"NCCL_IB_HCA": "=mlx5_10"}},
		{"sockets only", NIC{Name: "eth0"}, "", 1, true, 3, map[string]string{"NCCL_SOCKET_IFNAME": "=eth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NCCLEnv(tt.nic, tt.hca, tt.port, tt.roce, tt.gidIndex); !maps.Equal(got, tt.want) {
				t.Errorf("NCCLEnv = %v, want %v", got, tt.want)
			}
		})
	}
}
