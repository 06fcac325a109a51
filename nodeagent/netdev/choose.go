package netdev

import (
	"cmp"
	"net/netip"
	"path"
	"slices"
	"strconv"
)

// PreferredNIC picks the interface for NCCL's and UCX's sockets near NUMA node numa (any
// node when numa < 0). Only interfaces that are up and have a usable address (not loopback,
// not link-local) are candidates. When allowed is not empty, only interfaces matching one
// of its names or path.Match globs are; loopback is a candidate only when allowed names it
// literally. Among candidates it prefers, in this order: a physical interface over a
// virtual one, one with an IPv4 address, one on numa, the fastest; ties go to the first
// name. ok is false when there is no candidate.
func (n *Node) PreferredNIC(numa int, allowed []string) (NIC, bool) {
	var best *NIC
	for i := range n.NICs {
		c := &n.NICs[i]
		if !c.Up || !admitted(c, allowed) || !hasUsableAddr(c, false) {
			continue
		}
		if best == nil || compareNIC(c, best, numa) < 0 {
			best = c
		}
	}
	if best == nil {
		return NIC{}, false
	}
	return *best, true
}

// compareNIC orders a before b (negative) when a is the better choice.
func compareNIC(a, b *NIC, numa int) int {
	return cmp.Or(
		-cmp.Compare(b2i(!a.Virtual), b2i(!b.Virtual)),
		-cmp.Compare(b2i(hasUsableAddr(a, true)), b2i(hasUsableAddr(b, true))),
		-cmp.Compare(b2i(onNUMA(a.NUMANode, numa)), b2i(onNUMA(b.NUMANode, numa))),
		-cmp.Compare(a.SpeedMbps, b.SpeedMbps),
		cmp.Compare(a.Name, b.Name),
	)
}

// admitted applies the admin's allowed list.
func admitted(c *NIC, allowed []string) bool {
	loopback := c.Kind == KindLoopback
	if len(allowed) == 0 {
		return !loopback
	}
	for _, pat := range allowed {
		if pat == c.Name {
			return true
		}
		if ok, err := path.Match(pat, c.Name); !loopback && err == nil && ok {
			return true
		}
	}
	return false
}

// hasUsableAddr reports whether the interface has an address another node could reach: not
// link-local, and not loopback unless the interface is the loopback one (which the admin
// allowed by name); with v4only, an IPv4 one.
func hasUsableAddr(c *NIC, v4only bool) bool {
	for _, s := range c.Addrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		a := p.Addr().Unmap()
		if (a.IsLoopback() && c.Kind != KindLoopback) || a.IsLinkLocalUnicast() || a.IsUnspecified() || (v4only && !a.Is4()) {
			continue
		}
		return true
	}
	return false
}

func onNUMA(node, want int) bool { return want >= 0 && node == want }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// PreferredHCA picks the RDMA device and port for NCCL near NUMA node numa (any node when
// numa < 0). Only ACTIVE ports are candidates. It prefers, in this order: a device on numa,
// InfiniBand over RoCE, the highest rate; ties go to the first device name and port. ok is
// false when no port is active.
func (n *Node) PreferredHCA(numa int) (dev string, port int, ok bool) {
	var bestDev *RDMADevice
	var bestPort *RDMAPort
	for i := range n.RDMA {
		d := &n.RDMA[i]
		for j := range d.Ports {
			p := &d.Ports[j]
			if p.State != StateActive {
				continue
			}
			if bestPort == nil || compareHCA(d, p, bestDev, bestPort, numa) < 0 {
				bestDev, bestPort = d, p
			}
		}
	}
	if bestPort == nil {
		return "", 0, false
	}
	return bestDev.Name, bestPort.Port, true
}

func compareHCA(ad *RDMADevice, ap *RDMAPort, bd *RDMADevice, bp *RDMAPort, numa int) int {
	return cmp.Or(
		-cmp.Compare(b2i(onNUMA(ad.NUMANode, numa)), b2i(onNUMA(bd.NUMANode, numa))),
		-cmp.Compare(b2i(ap.LinkLayer == LinkInfiniband), b2i(bp.LinkLayer == LinkInfiniband)),
		-cmp.Compare(ap.RateGbps, bp.RateGbps),
		cmp.Compare(ad.Name, bd.Name),
		cmp.Compare(ap.Port, bp.Port),
	)
}

// HCA returns the RDMA device called name.
func (n *Node) HCA(name string) (RDMADevice, bool) {
	i := slices.IndexFunc(n.RDMA, func(d RDMADevice) bool { return d.Name == name })
	if i < 0 {
		return RDMADevice{}, false
	}
	return n.RDMA[i], true
}

// RoCE reports whether the device carries RDMA over Ethernet: one of its ports has an
// Ethernet link layer.
func (d RDMADevice) RoCE() bool {
	return slices.ContainsFunc(d.Ports, RDMAPort.RoCE)
}

// RoCE reports whether the port's link layer is Ethernet.
func (p RDMAPort) RoCE() bool { return p.LinkLayer == LinkEthernet }

// GIDIndex returns the index of the first RoCE v2 GID of port that holds an IPv4-mapped
// address (::ffff:a.b.c.d), the entry NCCL_IB_GID_INDEX should name on RoCE fabrics routed
// over IPv4. ok is false when the port has none or does not exist.
func (d RDMADevice) GIDIndex(port int) (int, bool) {
	for _, p := range d.Ports {
		if p.Port != port {
			continue
		}
		for _, g := range p.GIDs {
			if _, ok := g.IPv4(); ok && g.Type == GIDRoCEv2 {
				return g.Index, true
			}
		}
	}
	return 0, false
}

// IPv4 returns the IPv4 address a GID maps (::ffff:a.b.c.d); ok is false for other GIDs.
func (g GID) IPv4() (netip.Addr, bool) {
	a, err := parseGID(g.GID)
	if err != nil || !a.Is4In6() {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// NCCLEnv returns the NCCL environment that pins a job to nic and to port of the RDMA
// device hca. Names use NCCL's "=" prefix for an exact match, since a bare "mlx5_1" would
// also select mlx5_10 and up: NCCL_SOCKET_IFNAME "=ib0", NCCL_IB_HCA "=mlx5_0:1".
// NCCL_IB_GID_INDEX is set only for RoCE with gidIndex >= 0 (see RDMADevice.GIDIndex).
// A zero nic or an empty hca leaves its variables out, so NCCL picks on its own.
func NCCLEnv(nic NIC, hca string, port int, roce bool, gidIndex int) map[string]string {
	env := map[string]string{}
	if nic.Name != "" {
		env["NCCL_SOCKET_IFNAME"] = "=" + nic.Name
	}
	if hca != "" {
		v := "=" + hca
		if port > 0 {
			v += ":" + strconv.Itoa(port)
		}
		env["NCCL_IB_HCA"] = v
		if roce && gidIndex >= 0 {
			env["NCCL_IB_GID_INDEX"] = strconv.Itoa(gidIndex)
		}
	}
	return env
}
