package fingerprint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Node is what a node agent may offer, as seen by this process.
type Node struct {
	// CPUs are the logical CPU ids in this process's affinity mask, sorted.
	CPUs []int
	// NUMANodes are the NUMA nodes holding at least one of CPUs, sorted by ID, each with only
	// those CPUs. Without NUMA information in sysfs there is one node 0 with all CPUs.
	NUMANodes []NUMANode
	// Sockets, Cores and ThreadsPerCore come from sysfs topology and count only CPUs:
	// Sockets and Cores are the packages and physical cores holding at least one of them,
	// ThreadsPerCore the most of them found on one core. Without topology in sysfs each CPU
	// counts as a core of one socket; 0 means unknown (platforms other than Linux).
	Sockets, Cores, ThreadsPerCore int
	// MemoryBytes is min(MemTotal, the smallest cgroup v1 or v2 memory limit of this process).
	MemoryBytes uint64
	// MemorySource says where MemoryBytes came from: "meminfo", or "cgroup v2 FILE" /
	// "cgroup v1 FILE" with the limit file's path on the node.
	MemorySource string
	// CPUQuota is the smallest cgroup CPU quota of this process in CPUs (1.5 = 150 ms per
	// 100 ms period), 0 when unlimited.
	CPUQuota float64
	// Hostname is the kernel's host name.
	Hostname string
}

// NUMANode is one NUMA node restricted to the allowed CPUs.
type NUMANode struct {
	ID   int
	CPUs []int
	// MemoryBytes is the node's MemTotal, not lowered by cgroup limits; 0 when unknown.
	MemoryBytes uint64
}

// OfferCPUs is the number of CPUs the agent may offer: the allowed CPUs, lowered to the
// cgroup CPU quota when that is smaller, and at least 1.
func (n *Node) OfferCPUs() float64 {
	offer := float64(len(n.CPUs))
	if n.CPUQuota > 0 && n.CPUQuota < offer {
		offer = n.CPUQuota
	}
	return max(offer, 1)
}

// Request is what every fingerprinter is given.
type Request struct {
	// CPUs is the process's affinity mask, sorted and without duplicates. Fingerprinters
	// report only these CPUs.
	CPUs []int
	// Cgroups locates this process's cgroups; zero when none are mounted.
	Cgroups Cgroups
}

// Cgroups locates this process's cgroups in the mounted hierarchies.
type Cgroups struct {
	// V2 is the process's cgroup in the unified hierarchy.
	V2 Cgroup
	// V1 maps a cgroup v1 controller ("memory", "cpu") to the process's cgroup in the
	// hierarchy that controller is mounted in.
	V1 map[string]Cgroup
}

// Cgroup is one cgroup directory. Both paths are paths on the node (not under WithRoot);
// Dir is Mount or below it. The zero Cgroup means none.
type Cgroup struct {
	Mount string
	Dir   string
}

// levels lists the cgroup's directory and its ancestors up to the mount point, leaf first.
func (c Cgroup) levels() []string {
	if c.Dir == "" {
		return nil
	}
	var dirs []string
	for d := c.Dir; ; d = path.Dir(d) {
		dirs = append(dirs, d)
		if d == c.Mount || d == "/" || d == "." {
			return dirs
		}
	}
}

// Fingerprinter reports one capability of the node into resp. It returns an error only when
// a required source is unusable; missing optional sources are logged and skipped.
type Fingerprinter interface {
	Fingerprint(req *Request, resp *Node) error
}

// factory builds a fingerprinter that reads the node through fsys.
type factory func(logger hclog.Logger, fsys fs.FS) Fingerprinter

// Option changes how Detect probes.
type Option func(*config)

type config struct {
	root     string
	affinity func() ([]int, error)
}

// WithRoot makes Detect read /proc and /sys under dir instead of /, so tests can use
// fixture trees. It does not change how the affinity mask is read: pair it with WithAffinity.
func WithRoot(dir string) Option {
	return func(c *config) { c.root = dir }
}

// WithAffinity replaces the source of the affinity mask; the default is
// sched_getaffinity of this process on Linux, and 0..runtime.NumCPU()-1 elsewhere.
func WithAffinity(fn func() ([]int, error)) Option {
	return func(c *config) { c.affinity = fn }
}

// Detect fingerprints the node. It fails when the affinity mask cannot be read or is empty,
// or when no memory size can be found; missing optional sources only lower what it reports
// (see the package comment). A nil logger discards logs.
func Detect(logger hclog.Logger, opts ...Option) (*Node, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cfg := config{root: "/", affinity: defaultAffinity}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.root == "" {
		cfg.root = "/"
	}
	cpus, err := cfg.affinity()
	if err != nil {
		return nil, fmt.Errorf("read cpu affinity: %w", err)
	}
	cpus, err = normalizeCPUs(cpus)
	if err != nil {
		return nil, fmt.Errorf("read cpu affinity: %w", err)
	}
	fsys := os.DirFS(cfg.root)
	req := &Request{CPUs: cpus, Cgroups: discoverCgroups(logger.Named("cgroup"), fsys)}
	node := &Node{}
	// The fingerprinters are independent and write disjoint fields; the sorted order only
	// keeps the logs stable.
	names := make([]string, 0, len(builtins))
	for name := range builtins {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fp := builtins[name](logger.Named(name), fsys)
		if err := fp.Fingerprint(req, node); err != nil {
			return nil, fmt.Errorf("fingerprint %s: %w", name, err)
		}
	}
	logger.Debug("fingerprinted node", "cpus", len(node.CPUs), "numa_nodes", len(node.NUMANodes),
		"memory_bytes", node.MemoryBytes, "memory_source", node.MemorySource, "cpu_quota", node.CPUQuota)
	return node, nil
}

func normalizeCPUs(cpus []int) ([]int, error) {
	out := slices.Clone(cpus)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil, errors.New("empty cpu mask")
	}
	if out[0] < 0 {
		return nil, fmt.Errorf("negative cpu id %d", out[0])
	}
	return out, nil
}

// readFile reads a file named by its path on the node.
func readFile(fsys fs.FS, name string) ([]byte, error) {
	return fs.ReadFile(fsys, fsPath(name))
}

// fsPath turns a path on the node into an fs.FS path.
func fsPath(name string) string {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	if p == "" {
		return "."
	}
	return p
}
