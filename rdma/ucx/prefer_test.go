package ucx

import (
	"strings"
	"testing"
)

// The fixture trees of nodeagent/netdev are copies of real nodes' sysfs: a DGX with two
// InfiniBand HCAs, a RoCE node with one port down, a node with plain NICs only.
const netdevFixtures = "../../nodeagent/netdev/testdata/"

func TestPreferred(t *testing.T) {
	for _, tc := range []struct {
		name, root string
		want       bool
		reason     string
	}{
		{"dgx", netdevFixtures + "dgx/sys", true, "mlx5_0/1 is ACTIVE (InfiniBand)"},
		{"roce", netdevFixtures + "roce/sys", true, "mlx5_0/1 is ACTIVE (RoCE)"},
		{"plain", netdevFixtures + "plain/sys", false, "no RDMA device"},
		{"down", "testdata/sys-down", false, "mlx5_0/1 DOWN"},
		{"missing", "testdata/nonexistent", false, "no RDMA device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Preferred(SysfsPorts(tc.root))
			if got != tc.want || !strings.Contains(why, tc.reason) {
				t.Fatalf("Preferred(%s) = %v, %q; want %v, containing %q", tc.root, got, why, tc.want, tc.reason)
			}
		})
	}
}

func TestSysfsPorts(t *testing.T) {
	got := SysfsPorts(netdevFixtures + "roce/sys")
	want := []Port{{"mlx5_0", 1, "ACTIVE", "Ethernet"}, {"mlx5_1", 1, "DOWN", "Ethernet"}}
	if len(got) != len(want) {
		t.Fatalf("ports: %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("port %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if ok, why := Preferred([]Port{{"mlx5_0", 1, "ACTIVE", ""}}); ok || !strings.Contains(why, `link layer ""`) {
		t.Fatalf("an ACTIVE port of unknown link layer: %v %q", ok, why)
	}
}
