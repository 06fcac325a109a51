package ucx

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Port is one RDMA port as node discovery sees it (nodeagent/netdev.RDMAPort carries the same
// fields; SysfsPorts reads them for callers below nodeagent).
type Port struct {
	Device    string // "mlx5_0"
	Port      int    // from 1
	State     string // "ACTIVE", "DOWN", ...
	LinkLayer string // "InfiniBand", or "Ethernet" for RoCE
}

// Preferred reports whether a node should carry traffic to peers on other nodes over UCX
// rather than TCP, and why. It prefers UCX when the node has an RDMA port (InfiniBand, or RoCE
// on an Ethernet link layer) whose state is ACTIVE: there UCX moves data with verbs, bypassing
// the kernel. Without one, UCX would itself fall back to TCP sockets, and shoal's own TCP
// transport is the simpler path. The caller still needs UCX itself (New succeeding) on both
// ends.
func Preferred(ports []Port) (bool, string) {
	if len(ports) == 0 {
		return false, "no RDMA device (nothing in /sys/class/infiniband)"
	}
	var seen []string
	for _, p := range ports {
		if p.State == "ACTIVE" && (p.LinkLayer == "InfiniBand" || p.LinkLayer == "Ethernet") {
			kind := "InfiniBand"
			if p.LinkLayer == "Ethernet" {
				kind = "RoCE"
			}
			return true, fmt.Sprintf("RDMA port %s/%d is ACTIVE (%s)", p.Device, p.Port, kind)
		}
		state := p.State
		if state == "" {
			state = "state unknown"
		}
		if p.State == "ACTIVE" {
			state += ", link layer " + strconv.Quote(p.LinkLayer)
		}
		seen = append(seen, fmt.Sprintf("%s/%d %s", p.Device, p.Port, state))
	}
	return false, "no ACTIVE InfiniBand or RoCE port (" + strings.Join(seen, ", ") + ")"
}

// SysfsPorts lists the RDMA ports under root's class/infiniband (root "" means /sys). A
// node without RDMA, or an unreadable tree, gives none; unreadable attributes stay empty.
func SysfsPorts(root string) []Port {
	if root == "" {
		root = "/sys"
	}
	states, _ := filepath.Glob(filepath.Join(root, "class", "infiniband", "*", "ports", "*", "state"))
	sort.Strings(states)
	var out []Port
	for _, s := range states {
		dir := filepath.Dir(s)
		num, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		p := Port{Device: filepath.Base(filepath.Dir(filepath.Dir(dir))), Port: num}
		if b, err := os.ReadFile(s); err == nil {
			// "4: ACTIVE"
			v := strings.TrimSpace(string(b))
			if i := strings.IndexByte(v, ':'); i >= 0 {
				v = strings.TrimSpace(v[i+1:])
			}
			p.State = v
		}
		if b, err := os.ReadFile(filepath.Join(dir, "link_layer")); err == nil {
			p.LinkLayer = strings.TrimSpace(string(b))
		}
		out = append(out, p)
	}
	return out
}
