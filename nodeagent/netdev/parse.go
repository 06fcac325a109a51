package netdev

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// ARPHRD_* values from linux/if_arp.h that /sys/class/net/<if>/type holds.
const (
	arphrdEther      = 1
	arphrdInfiniband = 32
	arphrdLoopback   = 772
)

// Kinds of interface, NIC.Kind.
const (
	KindEther      = "ether"
	KindLoopback   = "loopback"
	KindInfiniband = "infiniband"
	KindOther      = "other"
)

// Values of RDMAPort.LinkLayer and GID.Type.
const (
	LinkInfiniband = "InfiniBand"
	LinkEthernet   = "Ethernet"
	GIDRoCEv1      = "IB/RoCE v1"
	GIDRoCEv2      = "RoCE v2"
	StateActive    = "ACTIVE"
)

// parseKind maps the ARPHRD number in /sys/class/net/<if>/type to NIC.Kind: "" when it is
// not a number.
func parseKind(s string) string {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	switch {
	case err != nil:
		return ""
	case n == arphrdEther:
		return KindEther
	case n == arphrdLoopback:
		return KindLoopback
	case n == arphrdInfiniband:
		return KindInfiniband
	default:
		return KindOther
	}
}

// parseSpeed parses /sys/class/net/<if>/speed in Mbit/s. The kernel writes -1 (older ones
// 4294967295, SPEED_UNKNOWN as unsigned) when the driver cannot tell; that is -1, not an
// error.
func parseSpeed(s string) (int, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return unknown, fmt.Errorf("parse speed %q: %w", s, err)
	}
	if n <= 0 || n >= math.MaxUint32 || n > math.MaxInt32 {
		return unknown, nil
	}
	return int(n), nil
}

// statePattern is the name half of a port state ("ACTIVE", "ACTIVE_DEFER").
var statePattern = regexp.MustCompile(`^[A-Z][A-Z_]*$`)

// parseState parses an RDMA port's state file, "4: ACTIVE", into the state's name.
func parseState(s string) (string, error) {
	num, name, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return "", fmt.Errorf("parse port state %q: want NUMBER: NAME", s)
	}
	if _, err := strconv.ParseUint(num, 10, 8); err != nil {
		return "", fmt.Errorf("parse port state %q: bad number: %w", s, err)
	}
	name = strings.TrimSpace(name)
	if !statePattern.MatchString(name) {
		return "", fmt.Errorf("parse port state %q: bad name %q", s, name)
	}
	return name, nil
}

// ratePattern is the leading number of a port rate: "200", "2.5", "12.5".
var ratePattern = regexp.MustCompile(`^[0-9]{1,6}(\.[0-9]{1,3})?$`)

// parseRate parses an RDMA port's rate file, "200 Gb/sec (4X HDR)", into Gbit/s.
func parseRate(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) < 2 || f[1] != "Gb/sec" || !ratePattern.MatchString(f[0]) {
		return 0, fmt.Errorf("parse port rate %q: want \"N Gb/sec (WIDTH SPEED)\"", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("parse port rate %q: %w", s, err)
	}
	return v, nil
}

// parseGIDType parses gid_attrs/types/<i>: "IB/RoCE v1" or "RoCE v2", the two types the
// kernel names.
func parseGIDType(s string) (string, error) {
	switch t := strings.TrimSpace(s); t {
	case GIDRoCEv1, GIDRoCEv2:
		return t, nil
	default:
		return "", fmt.Errorf("parse gid type %q: want %q or %q", s, GIDRoCEv1, GIDRoCEv2)
	}
}

// parseGID parses a GID as sysfs writes it, eight groups of four hex digits, which is the
// textual form of an IPv6 address.
func parseGID(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("parse gid %q: want 8 groups of hex digits", s)
	}
	return a, nil
}

// zeroGID reports whether a GID is the all-zero entry the kernel shows for unused slots.
func zeroGID(s string) (bool, error) {
	a, err := parseGID(s)
	if err != nil {
		return false, err
	}
	return a.IsUnspecified(), nil
}
