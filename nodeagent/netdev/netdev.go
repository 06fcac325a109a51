package netdev

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// ErrNotSupported means the node has no sysfs network class to read (see the package
// comment); the caller falls back to its configuration.
var ErrNotSupported = errors.New("network discovery not supported")

// unknown marks a number the kernel could not report.
const unknown = -1

// Paths relative to the root given by WithRoot.
const (
	classNet = "sys/class/net"
	classIB  = "sys/class/infiniband"
	devices  = "sys/devices"
)

// NIC is one network interface. Fields the kernel cannot report are unknown: -1 for
// numbers, "" for strings, nil for lists.
type NIC struct {
	// Name is the kernel's interface name ("eth0", "ib0", "ens1f0").
	Name string
	// MAC is the hardware address as sysfs writes it; 20 bytes long for IPoIB.
	MAC string
	// Addrs are the interface's addresses in CIDR form ("192.0.2.2/24", "fe80::1/64").
	Addrs []string
	// SpeedMbps is the link speed in Mbit/s; -1 when unknown (virtual interfaces, links down).
	SpeedMbps int
	// MTU is the interface's MTU in bytes; 0 when unknown.
	MTU int
	// NUMANode is the NUMA node of the interface's device, -1 when unknown.
	NUMANode int
	// PCIBusID is the bus id of the nearest PCI device ("0000:07:00.0"); "" for virtual
	// interfaces and devices on other buses.
	PCIBusID string
	// Up is true when the kernel's operstate is "up", or "unknown" (drivers that do not
	// track it: lo, tun, wireguard) while the interface is administratively up (IFF_UP).
	Up bool
	// Virtual is true for interfaces with no backing device (lo, bridges, veths, bonds).
	Virtual bool
	// Kind is "ether", "loopback" or "infiniband" from the ARPHRD type, "other" for any other
	// type and "" when unknown.
	Kind string
}

// RDMADevice is one RDMA device (an HCA, or a RoCE function of a NIC).
type RDMADevice struct {
	// Name is the verbs device name ("mlx5_0").
	Name string
	// NetDevs are the network interfaces of the same PCI function ("ib0", "ens1f0"), sorted.
	NetDevs []string
	// NUMANode is the NUMA node of the device, -1 when unknown.
	NUMANode int
	// PCIBusID is the bus id of the device ("0000:07:00.0"), "" when unknown.
	PCIBusID string
	// Ports are the device's ports, sorted by number.
	Ports []RDMAPort
}

// RDMAPort is one port of an RDMA device.
type RDMAPort struct {
	// Port is the port number, from 1.
	Port int
	// State is the port's state ("ACTIVE", "DOWN", "INIT", "ARMED"); "" when unknown.
	State string
	// LinkLayer is "InfiniBand" or "Ethernet" (RoCE); "" when unknown.
	LinkLayer string
	// RateGbps is the port's signalling rate in Gbit/s (200 for "200 Gb/sec (4X HDR)");
	// 0 when unknown.
	RateGbps float64
	// GIDs are the port's non-zero GIDs, sorted by index.
	GIDs []GID
}

// GID is one entry of a port's GID table.
type GID struct {
	// Index is the entry's index, what NCCL_IB_GID_INDEX and UCX_IB_GID_INDEX take.
	Index int
	// GID is the entry as sysfs writes it ("fe80:0000:0000:0000:0c42:a103:0065:d6b6").
	GID string
	// Type is "IB/RoCE v1" or "RoCE v2"; "" when unknown.
	Type string
}

// Node is what Detect found.
type Node struct {
	// NICs are the network interfaces, sorted by name.
	NICs []NIC
	// RDMA are the RDMA devices, sorted by name; empty on a node without RDMA.
	RDMA []RDMADevice
}

// Option changes how Detect probes.
type Option func(*config)

type config struct {
	root  string
	addrs func(name string) ([]string, error)
}

// WithRoot makes Detect read sysfs under dir instead of /, so tests can use fixture trees.
// It does not change where addresses come from: pair it with WithAddrs.
func WithRoot(dir string) Option {
	return func(c *config) { c.root = dir }
}

// WithAddrs replaces the source of interface addresses, by default net.InterfaceByName.
// The function returns the addresses of one interface in CIDR form; an error leaves that
// interface without addresses.
func WithAddrs(fn func(name string) ([]string, error)) Option {
	return func(c *config) { c.addrs = fn }
}

// Detect reports the node's network interfaces and RDMA devices. It fails, with an error
// wrapping ErrNotSupported, only when /sys/class/net cannot be listed; everything else that
// is missing or malformed is left unknown (see the package comment). A nil logger discards
// logs.
func Detect(logger hclog.Logger, opts ...Option) (*Node, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cfg := config{root: "/", addrs: interfaceAddrs}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.root == "" {
		cfg.root = "/"
	}
	if cfg.addrs == nil {
		cfg.addrs = interfaceAddrs
	}
	r := &reader{log: logger, fsys: os.DirFS(cfg.root), addrs: cfg.addrs}
	nics, err := r.nics()
	if err != nil {
		return nil, err
	}
	node := &Node{NICs: nics, RDMA: r.rdmaDevices()}
	logger.Debug("found network devices", "nics", len(node.NICs), "rdma_devices", len(node.RDMA))
	return node, nil
}

// interfaceAddrs lists an interface's addresses from the kernel, in CIDR form.
func interfaceAddrs(name string) ([]string, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out, nil
}

// reader reads one node's sysfs.
type reader struct {
	log   hclog.Logger
	fsys  fs.FS
	addrs func(string) ([]string, error)
}

// entries lists the names in dir, sorted.
func (r *reader) entries(dir string) ([]string, error) {
	ents, err := fs.ReadDir(r.fsys, dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names, nil
}

// readString reads a sysfs attribute without its trailing newline.
func (r *reader) readString(name string) (string, error) {
	b, err := fs.ReadFile(r.fsys, name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// numaNode reads a device's numa_node: -1 when missing, malformed or negative (the kernel
// itself writes -1 on machines without NUMA).
func (r *reader) numaNode(dir string) int {
	s, err := r.readString(dir + "/numa_node")
	if err != nil {
		return unknown
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		r.log.Warn("ignoring malformed numa_node", "path", "/"+dir+"/numa_node", "error", err)
		return unknown
	}
	return max(n, unknown)
}

// resolve follows the symlink at name, a path in r.fsys, and returns where it points, also
// as a path in r.fsys. A relative target is taken from base, the real directory holding the
// link (which differs from path.Dir(name) when name was reached through another link); an
// absolute target is taken as a path on the node, under the root. ok is false when name is
// not a symlink or points outside the root.
func (r *reader) resolve(name, base string) (string, bool) {
	target, err := fs.ReadLink(r.fsys, name)
	if err != nil {
		return "", false
	}
	var p string
	if path.IsAbs(target) {
		p = path.Clean(strings.TrimPrefix(target, "/"))
	} else {
		p = path.Join(base, target)
	}
	if !fs.ValidPath(p) || p == "." {
		return "", false
	}
	return p, true
}

// realPath is where a class entry (sys/class/net/eth0) lives under sys/devices, or the
// entry itself when it is a plain directory (a fixture that copies a machine without its
// links).
func (r *reader) realPath(classEntry string) string {
	if p, ok := r.resolve(classEntry, path.Dir(classEntry)); ok {
		return p
	}
	return classEntry
}

// hardware is what a class device's device link says about the hardware below it.
type hardware struct {
	present bool   // there is a device entry at all
	bus     string // the nearest PCI bus id on the way up from the device, "" when none
	pciDir  string // that PCI function's directory, "" when unknown
}

// deviceOf reads dir/device, the link from a class device (dir, which really lives at real)
// to its hardware.
func (r *reader) deviceOf(dir, real string) hardware {
	link := dir + "/device"
	if p, ok := r.resolve(link, real); ok {
		bus, busDir := nearestPCI(p)
		return hardware{present: true, bus: bus, pciDir: busDir}
	}
	if _, err := fs.Stat(r.fsys, link); err != nil {
		return hardware{}
	}
	// A device directory that is not a link: its uevent may still name the PCI slot.
	if s, err := r.readString(link + "/uevent"); err == nil {
		for line := range strings.SplitSeq(s, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PCI_SLOT_NAME="); ok && isBusID(v) {
				return hardware{present: true, bus: v}
			}
		}
	}
	return hardware{present: true}
}

// numa is the NUMA node of a class device's hardware: the device's own numa_node, else that
// of the PCI function it hangs off (a virtio device has none of its own).
func (r *reader) numa(dir string, hw hardware) int {
	if !hw.present {
		return unknown
	}
	if n := r.numaNode(dir + "/device"); n != unknown || hw.pciDir == "" {
		return n
	}
	return r.numaNode(hw.pciDir)
}

// busIDPattern is a PCI bus id in sysfs form: domain:bus:device.function.
var busIDPattern = regexp.MustCompile(`^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

func isBusID(s string) bool { return busIDPattern.MatchString(s) }

// nearestPCI returns the last PCI bus id among the components of p, a path under
// sys/devices, and the directory it names: the PCI function the device hangs off, through
// virtio or other buses.
func nearestPCI(p string) (bus, dir string) {
	parts := strings.Split(p, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if isBusID(parts[i]) {
			return parts[i], strings.Join(parts[:i+1], "/")
		}
	}
	return "", ""
}

// errNoClass wraps the failure to list /sys/class/net.
func errNoClass(err error) error {
	return fmt.Errorf("list /%s: %w: %w", classNet, ErrNotSupported, err)
}
