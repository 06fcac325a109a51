package rdma

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Config is what every backend's constructor gets.
type Config struct {
	// Secret is the cluster secret; every connection proves both ends know it.
	Secret string
	// Cluster is the cluster id; it keeps names (shm files, sockets) of two clusters apart.
	Cluster string
	// Host is the address this node listens on for network backends ("" = 127.0.0.1).
	Host string
	// SysRoot is where sysfs is (default /sys); tests point it at fixture trees.
	SysRoot string
	// Insecure turns the data plane's encryption off (--insecure-data-plane): TCP carries
	// bytes in clear, and unencrypted backends (ucx) may be used. Default: every TCP stream runs
	// inside TLS 1.3, and only shm (one node) and tcp are chosen.
	Insecure bool
}

// Encrypted reports whether a backend protects its bytes on the network: tcp (TLS unless the
// data plane is insecure) and shm (never leaves the node) do; ucx and nccl do not.
func Encrypted(name string) bool { return name == "tcp" || name == "shm" }

// Ctor builds a backend; it returns an error wrapping ErrNotSupported when the backend
// cannot run on this node.
type Ctor func(cfg Config) (Transport, error)

var (
	regMu    sync.Mutex
	registry = map[string]Ctor{
		"tcp": func(cfg Config) (Transport, error) {
			return NewTCP(TCPConfig{Secret: cfg.Secret, Host: cfg.Host, Insecure: cfg.Insecure})
		},
		"shm": func(cfg Config) (Transport, error) {
			// SHOAL_SHM_SINGLE_COPY=1 moves large messages with process_vm_readv
			return NewShm(ShmConfig{Secret: cfg.Secret, Cluster: cfg.Cluster, SingleCopy: os.Getenv("SHOAL_SHM_SINGLE_COPY") == "1"})
		},
	}
)

// Register makes a backend available under name (e.g. rdma/ucx registers "ucx" from its init
// function). A later registration of the same name replaces the earlier one.
func Register(name string, ctor Ctor) {
	regMu.Lock()
	defer regMu.Unlock()
	registry[name] = ctor
}

// Names returns the registered backend names, sorted.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New builds the backend called name. An unknown name is an error that lists the known ones;
// a backend that cannot run here returns an error wrapping ErrNotSupported.
func New(name string, cfg Config) (Transport, error) {
	regMu.Lock()
	ctor := registry[name]
	regMu.Unlock()
	if ctor == nil {
		return nil, fmt.Errorf("transport %q: unknown; choose one of %s", name, strings.Join(Names(), ", "))
	}
	t, err := ctor(cfg)
	if err != nil {
		return nil, fmt.Errorf("transport %s: %w", name, err)
	}
	return t, nil
}

// Preference is the order in which Choose tries backends for a peer on another node.
var Preference = []string{"ucx", "tcp"}

// Choose names the backend for a connection to a peer: shm when the peer is on this node and
// both can run shm; else the first of Preference that both ends offer, where "ucx" counts only
// when the data plane is insecure (UCX cannot run inside TLS) and this node has an active
// InfiniBand or RoCE port; else "tcp". mine and theirs are the backends each end can run.
func Choose(sameNode bool, mine, theirs []string, sysRoot string, insecure bool) string {
	has := func(l []string, n string) bool {
		for _, x := range l {
			if x == n {
				return true
			}
		}
		return false
	}
	if sameNode && has(mine, "shm") && has(theirs, "shm") {
		return "shm"
	}
	for _, n := range Preference {
		if !has(mine, n) || !has(theirs, n) {
			continue
		}
		if !insecure && !Encrypted(n) {
			continue
		}
		if n == "ucx" && !HasRDMAPort(sysRoot) {
			continue
		}
		return n
	}
	return "tcp"
}

// HasRDMAPort reports whether sysfs under root (default /sys) shows an InfiniBand device with
// an ACTIVE port (link layer InfiniBand, or Ethernet for RoCE).
func HasRDMAPort(root string) bool {
	if root == "" {
		root = "/sys"
	}
	states, _ := filepath.Glob(filepath.Join(root, "class/infiniband/*/ports/*/state"))
	for _, s := range states {
		b, err := os.ReadFile(s)
		if err == nil && strings.Contains(string(b), "ACTIVE") {
			return true
		}
	}
	return false
}
