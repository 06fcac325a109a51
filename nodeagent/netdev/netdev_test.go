package netdev

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"testing"
	"testing/fstest"

	"github.com/hashicorp/go-hclog"
)

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: t.Output()})
}

// addrs is a fixture machine's address table, what `ip -br addr` would show.
func addrs(table map[string][]string) Option {
	return WithAddrs(func(name string) ([]string, error) {
		a, ok := table[name]
		if !ok {
			return nil, fmt.Errorf("no interface %q", name)
		}
		return a, nil
	})
}

const zeroMAC = "00:00:00:00:00:00"

var loopback = NIC{Name: "lo", MAC: zeroMAC, Addrs: []string{"127.0.0.1/8", "::1/128"},
	SpeedMbps: -1, MTU: 65536, NUMANode: -1, Up: true, Virtual: true, Kind: KindLoopback}

// choice is what the agent would hand NCCL for a task on one NUMA node.
type choice struct {
	numa    int
	allowed []string
	nic     string // "" when none
	hca     string // "" when none
	port    int
	env     map[string]string
}

// TestDetectFixtures runs Detect on fixture trees laid out like real machines' sysfs
// (testdata/*/sys, with /sys/class entries as symlinks into /sys/devices) and checks what
// `shoal node info` would show and what the agent would tell NCCL.
func TestDetectFixtures(t *testing.T) {
	tests := []struct {
		name    string
		root    string
		addrs   map[string][]string
		want    Node
		choices []choice
	}{
		{
			name: "dgx: two InfiniBand HCAs, one per socket",
			root: "testdata/dgx",
			addrs: map[string][]string{
				"lo": {"127.0.0.1/8", "::1/128"}, "eno1": {"10.1.0.5/16"},
				"ib0": {"10.10.0.5/16", "fe80::e42:a103:65:d6b6/64"}, "ib1": {"10.11.0.5/16"},
				"docker0": {"172.17.0.1/16"},
			},
			want: Node{
				NICs: []NIC{
					{Name: "docker0", MAC: "02:42:5a:11:22:33", Addrs: []string{"172.17.0.1/16"},
						SpeedMbps: -1, MTU: 1500, NUMANode: -1, Virtual: true, Kind: KindEther},
					{Name: "eno1", MAC: "3c:ec:ef:10:20:30", Addrs: []string{"10.1.0.5/16"}, SpeedMbps: 1000,
						MTU: 1500, NUMANode: 0, PCIBusID: "0000:02:00.0", Up: true, Kind: KindEther},
					{Name: "ib0", MAC: "00:00:10:87:fe:80:00:00:00:00:00:00:0c:42:a1:03:00:65:d6:b6",
						Addrs: []string{"10.10.0.5/16", "fe80::e42:a103:65:d6b6/64"}, SpeedMbps: 200000,
						MTU: 2044, NUMANode: 0, PCIBusID: "0000:07:00.0", Up: true, Kind: KindInfiniband},
					{Name: "ib1", MAC: "00:00:10:87:fe:80:00:00:00:00:00:00:0c:42:a1:03:00:65:d6:c6",
						Addrs: []string{"10.11.0.5/16"}, SpeedMbps: 200000,
						MTU: 2044, NUMANode: 1, PCIBusID: "0000:87:00.0", Up: true, Kind: KindInfiniband},
					loopback,
				},
				RDMA: []RDMADevice{
					{Name: "mlx5_0", NetDevs: []string{"ib0"}, NUMANode: 0, PCIBusID: "0000:07:00.0",
						Ports: []RDMAPort{{Port: 1, State: "ACTIVE", LinkLayer: "InfiniBand", RateGbps: 200,
							GIDs: []GID{{0, "fe80:0000:0000:0000:0c42:a103:0065:d6b6", "IB/RoCE v1"}}}}},
					{Name: "mlx5_1", NetDevs: []string{"ib1"}, NUMANode: 1, PCIBusID: "0000:87:00.0",
						Ports: []RDMAPort{{Port: 1, State: "ACTIVE", LinkLayer: "InfiniBand", RateGbps: 200,
							GIDs: []GID{{0, "fe80:0000:0000:0000:0c42:a103:0065:d6c6", "IB/RoCE v1"}}}}},
				},
			},
			choices: []choice{
				{numa: 0, nic: "ib0", hca: "mlx5_0", port: 1,
					env: map[string]string{"NCCL_SOCKET_IFNAME": "=ib0", "NCCL_IB_HCA": "=mlx5_0:1"}},
				{numa: 1, nic: "ib1", hca: "mlx5_1", port: 1,
					env: map[string]string{"NCCL_SOCKET_IFNAME": "=ib1", "NCCL_IB_HCA": "=mlx5_1:1"}},
				// No NUMA preference: equal links, the first name wins.
				{numa: -1, nic: "ib0", hca: "mlx5_0", port: 1,
					env: map[string]string{"NCCL_SOCKET_IFNAME": "=ib0", "NCCL_IB_HCA": "=mlx5_0:1"}},
				// The admin's list has the final say over speed and NUMA.
				{numa: 1, allowed: []string{"eno*"}, nic: "eno1", hca: "mlx5_1", port: 1,
					env: map[string]string{"NCCL_SOCKET_IFNAME": "=eno1", "NCCL_IB_HCA": "=mlx5_1:1"}},
				// docker0 is down; nothing else is allowed.
				{numa: 0, allowed: []string{"docker0"}, hca: "mlx5_0", port: 1,
					env: map[string]string{"NCCL_IB_HCA": "=mlx5_0:1"}},
			},
		},
		{
			name: "roce: dual-port 100GbE ConnectX, one port cabled",
			root: "testdata/roce",
			addrs: map[string][]string{
				"lo": {"127.0.0.1/8", "::1/128"}, "ens1f0": {"192.168.10.11/24", "fe80::bace:f6ff:fe01:203/64"},
				"ens1f1": nil, "eno1": {"10.0.0.21/24"},
			},
			want: Node{
				NICs: []NIC{
					{Name: "eno1", MAC: "3c:ec:ef:40:50:60", Addrs: []string{"10.0.0.21/24"}, SpeedMbps: 1000,
						MTU: 1500, NUMANode: -1, PCIBusID: "0000:00:1f.6", Up: true, Kind: KindEther},
					{Name: "ens1f0", MAC: "b8:ce:f6:01:02:03",
						Addrs:     []string{"192.168.10.11/24", "fe80::bace:f6ff:fe01:203/64"},
						SpeedMbps: 100000, MTU: 9000, NUMANode: 0, PCIBusID: "0000:3b:00.0", Up: true, Kind: KindEther},
					{Name: "ens1f1", MAC: "b8:ce:f6:01:02:04", SpeedMbps: -1, MTU: 9000, NUMANode: 0,
						PCIBusID: "0000:3b:00.1", Kind: KindEther},
					loopback,
				},
				RDMA: []RDMADevice{
					{Name: "mlx5_0", NetDevs: []string{"ens1f0"}, NUMANode: 0, PCIBusID: "0000:3b:00.0",
						Ports: []RDMAPort{{Port: 1, State: "ACTIVE", LinkLayer: "Ethernet", RateGbps: 100,
							GIDs: []GID{
								{0, "fe80:0000:0000:0000:bace:f6ff:fe01:0203", "IB/RoCE v1"},
								{1, "fe80:0000:0000:0000:bace:f6ff:fe01:0203", "RoCE v2"},
								{2, "0000:0000:0000:0000:0000:ffff:c0a8:0a0b", "IB/RoCE v1"},
								{3, "0000:0000:0000:0000:0000:ffff:c0a8:0a0b", "RoCE v2"},
							}}}},
					{Name: "mlx5_1", NetDevs: []string{"ens1f1"}, NUMANode: 0, PCIBusID: "0000:3b:00.1",
						Ports: []RDMAPort{{Port: 1, State: "DOWN", LinkLayer: "Ethernet",
							GIDs: []GID{
								{0, "fe80:0000:0000:0000:bace:f6ff:fe01:0204", "IB/RoCE v1"},
								{1, "fe80:0000:0000:0000:bace:f6ff:fe01:0204", "RoCE v2"},
							}}}},
				},
			},
			choices: []choice{
				{numa: 0, nic: "ens1f0", hca: "mlx5_0", port: 1, env: map[string]string{
					"NCCL_SOCKET_IFNAME": "=ens1f0", "NCCL_IB_HCA": "=mlx5_0:1", "NCCL_IB_GID_INDEX": "3"}},
				// Off the NIC's node the active port is still the only choice.
				{numa: 1, nic: "ens1f0", hca: "mlx5_0", port: 1, env: map[string]string{
					"NCCL_SOCKET_IFNAME": "=ens1f0", "NCCL_IB_HCA": "=mlx5_0:1", "NCCL_IB_GID_INDEX": "3"}},
			},
		},
		{
			name: "plain vm: virtio NIC, a bridge, no /sys/class/infiniband",
			root: "testdata/plain",
			addrs: map[string][]string{
				"lo": {"127.0.0.1/8", "::1/128"}, "eth0": {"192.0.2.2/24", "fd00::2/64", "fe80::fc:ff:fe00:1/64"},
				"shoalbr0": {"198.18.0.1/24", "fe80::8c49:5dff:fe1c:95ed/64"},
			},
			want: Node{
				NICs: []NIC{
					// The virtio device has no numa_node; the PCI function it sits on has.
					{Name: "eth0", MAC: "02:fc:00:00:00:01",
						Addrs:     []string{"192.0.2.2/24", "fd00::2/64", "fe80::fc:ff:fe00:1/64"},
						SpeedMbps: -1, MTU: 1400, NUMANode: 0, PCIBusID: "0000:00:03.0", Up: true, Kind: KindEther},
					loopback,
					{Name: "shoalbr0", MAC: "3a:a7:04:4c:29:9f",
						Addrs:     []string{"198.18.0.1/24", "fe80::8c49:5dff:fe1c:95ed/64"},
						SpeedMbps: 10000, MTU: 1500, NUMANode: -1, Up: true, Virtual: true, Kind: KindEther},
				},
			},
			choices: []choice{
				// The physical NIC beats a faster bridge.
				{numa: 0, nic: "eth0", env: map[string]string{"NCCL_SOCKET_IFNAME": "=eth0"}},
				{numa: -1, allowed: []string{"shoal*"}, nic: "shoalbr0",
					env: map[string]string{"NCCL_SOCKET_IFNAME": "=shoalbr0"}},
				// A glob never picks loopback; naming it does.
				{numa: -1, allowed: []string{"l*"}, env: map[string]string{}},
				{numa: -1, allowed: []string{"lo"}, nic: "lo", env: map[string]string{"NCCL_SOCKET_IFNAME": "=lo"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node, err := Detect(testLogger(t), WithRoot(tt.root), addrs(tt.addrs))
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			if !reflect.DeepEqual(*node, tt.want) {
				t.Errorf("Detect =\n%+v\nwant\n%+v", *node, tt.want)
			}
			for _, c := range tt.choices {
				t.Run(fmt.Sprintf("numa %d allowed %v", c.numa, c.allowed), func(t *testing.T) {
					nic, ok := node.PreferredNIC(c.numa, c.allowed)
					if ok != (c.nic != "") || nic.Name != c.nic {
						t.Errorf("PreferredNIC = %q, %v; want %q", nic.Name, ok, c.nic)
					}
					hca, port, ok := node.PreferredHCA(c.numa)
					if ok != (c.hca != "") || hca != c.hca || port != c.port {
						t.Errorf("PreferredHCA = %q, %d, %v; want %q, %d", hca, port, ok, c.hca, c.port)
					}
					d, _ := node.HCA(hca)
					gid, ok := d.GIDIndex(port)
					if !ok {
						gid = -1
					}
					if env := NCCLEnv(nic, hca, port, d.RoCE(), gid); !maps.Equal(env, c.env) {
						t.Errorf("NCCLEnv = %v, want %v", env, c.env)
					}
				})
			}
		})
	}
}

// TestDetectNoSysfs: without /sys/class/net there is nothing to report, and the caller is
// told to fall back.
func TestDetectNoSysfs(t *testing.T) {
	_, err := Detect(testLogger(t), WithRoot(t.TempDir()), addrs(nil))
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Detect on an empty root: %v, want ErrNotSupported", err)
	}
}

// TestReaderLayouts covers sysfs shapes the fixture machines do not have, on in-memory
// trees: class entries that are plain directories, device links that are not links,
// malformed and unreadable values, an RDMA device without ports.
func TestReaderLayouts(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s + "\n")} }
	fsys := fstest.MapFS{
		// A copied tree without links: the device is a directory naming its PCI slot.
		"sys/class/net/eth0/type":             file("1"),
		"sys/class/net/eth0/operstate":        file("up"),
		"sys/class/net/eth0/mtu":              file("abc"),
		"sys/class/net/eth0/speed":            file("25000"),
		"sys/class/net/eth0/device/uevent":    file("DRIVER=ice\nPCI_SLOT_NAME=0000:51:00.0\n"),
		"sys/class/net/eth0/device/numa_node": file("1"),
		// A tunnel: no device, operstate unknown, admin down; type 65534 (ARPHRD_NONE).
		"sys/class/net/wg0/type":      file("65534"),
		"sys/class/net/wg0/operstate": file("unknown"),
		"sys/class/net/wg0/flags":     file("0x1090"),
		"sys/class/net/wg0/speed":     file("4294967295"),
		// An RDMA device whose port values are garbage, and one without ports.
		"sys/class/infiniband/rxe0/ports/1/state":             file("ACTIVE"),
		"sys/class/infiniband/rxe0/ports/1/rate":              file("fast"),
		"sys/class/infiniband/rxe0/ports/1/link_layer":        file("Ethernet"),
		"sys/class/infiniband/rxe0/ports/1/gids/0":            file("not-a-gid"),
		"sys/class/infiniband/rxe0/ports/1/gids/1":            file("fe80::1"),
		"sys/class/infiniband/rxe0/ports/1/gid_attrs/types/1": file("RoCE v3"),
		"sys/class/infiniband/broken/device/numa_node":        file("0"),
	}
	r := &reader{log: testLogger(t), fsys: fsys, addrs: func(string) ([]string, error) { return nil, errors.New("none") }}
	nics, err := r.nics()
	if err != nil {
		t.Fatal(err)
	}
	want := []NIC{
		{Name: "eth0", SpeedMbps: 25000, NUMANode: 1, PCIBusID: "0000:51:00.0", Up: true, Kind: KindEther},
		{Name: "wg0", SpeedMbps: -1, NUMANode: -1, Virtual: true, Kind: KindOther},
	}
	if !reflect.DeepEqual(nics, want) {
		t.Errorf("nics =\n%+v\nwant\n%+v", nics, want)
	}
	wantRDMA := []RDMADevice{{Name: "rxe0", NUMANode: -1, Ports: []RDMAPort{{Port: 1, LinkLayer: "Ethernet",
		GIDs: []GID{{Index: 1, GID: "fe80::1"}}}}}}
	if got := r.rdmaDevices(); !reflect.DeepEqual(got, wantRDMA) {
		t.Errorf("rdmaDevices =\n%+v\nwant\n%+v", got, wantRDMA)
	}
}
