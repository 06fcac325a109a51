//go:build linux

package confine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Confiner makes Groups under one parent cgroup. Build it with New.
type Confiner struct {
	log        hclog.Logger
	parent     string
	madeParent bool

	mu     sync.Mutex
	groups map[string]*Group
}

// Group is one confined cgroup: a directory with a device program attached. Processes put in
// it open only the devices its rules allow.
type Group struct {
	c    *Confiner
	name string
	dir  string

	mu   sync.Mutex
	link link.Link // nil once closed
}

// New probes, once, whether this process can confine devices, and prepares the parent cgroup.
// An error wrapping ErrNotSupported means it cannot (New logs why at Warn, once); the caller
// falls back to CUDA_VISIBLE_DEVICES. Any other error is inconclusive. A nil logger discards
// logs. A process needs one Confiner: two with the same parent would remove it under each
// other.
func New(logger hclog.Logger, opts ...Option) (*Confiner, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	o := options{proc: "/proc"}
	for _, opt := range opts {
		opt(&o)
	}
	c, err := newConfiner(logger, o)
	if errors.Is(err, ErrNotSupported) {
		logger.Warn("GPU confinement unavailable: workers see their GPUs through CUDA_VISIBLE_DEVICES only, and could open others",
			"error", err)
	}
	return c, err
}

func newConfiner(logger hclog.Logger, o options) (*Confiner, error) {
	parent := o.parent
	if parent == "" {
		var err error
		if parent, err = defaultParent(o.proc); err != nil {
			return nil, err
		}
	}
	parent = filepath.Clean(parent)
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(parent), &st); err != nil {
		return nil, fmt.Errorf("stat cgroup %s: %w", filepath.Dir(parent), err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("%s is not in a cgroup v2 hierarchy: %w", filepath.Dir(parent), ErrNotSupported)
	}

	// Try-load the program every group starts from, so that a verifier that rejects it shows
	// now; the features probe then tells a kernel without the program type from the rest.
	probe, err := loadProgram(DefaultRules())
	if err != nil {
		if ferr := features.HaveProgramType(ebpf.CGroupDevice); errors.Is(ferr, ebpf.ErrNotSupported) {
			return nil, classify("probe kernel for cgroup device programs", ferr)
		}
		return nil, classify("load device program", err)
	}
	defer probe.Close()

	c := &Confiner{log: logger, parent: parent, groups: map[string]*Group{}}
	switch err := os.Mkdir(parent, 0o755); {
	case err == nil:
		c.madeParent = true
	case errors.Is(err, os.ErrExist):
		// shoal-<pid> is this process's by its name: a leftover of a dead agent whose pid
		// came round again is taken over and removed at Close. A parent the admin named is
		// left alone.
		c.madeParent = o.parent == ""
	default:
		return nil, classify("create cgroup "+parent, err)
	}
	// Attaching to the parent proves the kernel lets this process attach below its ancestors'
	// programs. The probe program allows the defaults, and lives only for this call.
	l, err := link.AttachCgroup(link.CgroupOptions{Path: parent, Attach: ebpf.AttachCGroupDevice, Program: probe})
	if err != nil {
		c.removeParent()
		return nil, classify("attach device program to "+parent, err)
	}
	if err := l.Close(); err != nil {
		c.removeParent()
		return nil, fmt.Errorf("detach probe program from %s: %w", parent, err)
	}
	logger.Debug("device confinement ready", "parent", parent)
	return c, nil
}

// defaultParent is shoal-<pid> below this process's cgroup v2.
func defaultParent(proc string) (string, error) {
	mi, err := os.ReadFile(filepath.Join(proc, "self/mountinfo"))
	if err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	m, err := findCgroup2(bytes.NewReader(mi))
	if err != nil {
		return "", err
	}
	own := "/"
	if b, err := os.ReadFile(filepath.Join(proc, "self/cgroup")); err == nil {
		if own, err = ownCgroup(bytes.NewReader(b)); err != nil {
			return "", err
		}
	}
	return filepath.Join(m.dirOf(own), "shoal-"+strconv.Itoa(os.Getpid())), nil
}

// classify sorts an error from a probe or an attach into the three-way contract.
func classify(action string, err error) error {
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%s: %w: %w", action, ErrNotSupported, err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.EROFS):
		return fmt.Errorf("%s: %w: needs root (or CAP_BPF and CAP_SYS_ADMIN) and a writable cgroup v2 tree: %w",
			action, ErrNotSupported, err)
	}
	return fmt.Errorf("%s: %w", action, err)
}

// loadProgram loads the device program for rules. Kernels before 5.11 charge BPF memory to
// RLIMIT_MEMLOCK, whose default is too small; on EPERM the limit is lifted (which root may
// do) and the load tried once more.
func loadProgram(rules []Rule) (*ebpf.Program, error) {
	insns, err := DeviceProgram(rules)
	if err != nil {
		return nil, err
	}
	load := func(insns asm.Instructions) (*ebpf.Program, error) {
		return ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "shoal_devices",
			Type: ebpf.CGroupDevice,
			// The program calls no helper, GPL-only or other, so it declares no license.
			Instructions: insns,
		})
	}
	prog, err := load(insns)
	if errors.Is(err, unix.EPERM) {
		inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
		if unix.Setrlimit(unix.RLIMIT_MEMLOCK, &inf) == nil {
			prog, err = load(insns)
		}
	}
	return prog, err
}

// Parent is the cgroup directory the groups are made in.
func (c *Confiner) Parent() string { return c.parent }

// Confine makes the group name (one path element, unique among this Confiner's open groups)
// whose processes may open only what rules allow. It fails for invalid rules or names, and
// with an error wrapping ErrNotSupported when the kernel refuses the attach for lack of
// privilege.
func (c *Confiner) Confine(name string, rules []Rule) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	prog, err := loadProgram(rules)
	if err != nil {
		return nil, classify("load device program for "+name, err)
	}
	// The link holds its own reference to the program.
	defer prog.Close()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.groups == nil {
		return nil, errors.New("confine: Confiner is closed")
	}
	if _, ok := c.groups[name]; ok {
		return nil, fmt.Errorf("confine %s: group already exists", name)
	}
	dir := filepath.Join(c.parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, classify("create cgroup "+dir, err)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupDevice, Program: prog})
	if err != nil {
		_ = os.Remove(dir)
		return nil, classify("attach device program to "+dir, err)
	}
	g := &Group{c: c, name: name, dir: dir, link: l}
	c.groups[name] = g
	c.log.Debug("confined group", "group", name, "dir", dir, "rules", len(rules))
	return g, nil
}

// Close closes every group still open and removes the parent cgroup if New created it. It
// fails, leaving those groups confined, when processes are still in them.
func (c *Confiner) Close() error {
	c.mu.Lock()
	groups := make([]*Group, 0, len(c.groups))
	for _, g := range c.groups {
		groups = append(groups, g)
	}
	c.mu.Unlock()
	var errs []error
	for _, g := range groups {
		errs = append(errs, g.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.mu.Lock()
	c.groups = nil
	c.mu.Unlock()
	if c.madeParent {
		if err := removeCgroup(c.parent); err != nil {
			return err
		}
		c.madeParent = false
	}
	return nil
}

func (c *Confiner) removeParent() {
	if c.madeParent {
		_ = os.Remove(c.parent)
		c.madeParent = false
	}
}

// Dir is the group's cgroup directory. To start a process inside the group, so that not even
// its first instruction runs unconfined, open Dir and pass the descriptor as
// syscall.SysProcAttr's CgroupFD with UseCgroupFD (Linux 5.7 and later).
func (g *Group) Dir() string { return g.dir }

// AddProcess moves the process pid (all its threads) into the group. Devices it opens from
// then on are checked; descriptors it already holds are not.
func (g *Group) AddProcess(pid int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.link == nil {
		return fmt.Errorf("add process %d to %s: group is closed", pid, g.name)
	}
	if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("add process %d to %s: %w", pid, g.name, err)
	}
	return nil
}

// Close detaches the program and removes the cgroup. Processes that exited need nothing; while
// any is still in the group Close fails and leaves it confined. Closing twice is a no-op.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.link == nil {
		return nil
	}
	procs, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
	if err != nil {
		return fmt.Errorf("close group %s: %w", g.name, err)
	}
	if n := len(bytes.Fields(procs)); n > 0 {
		return fmt.Errorf("close group %s: %d processes still in %s", g.name, n, g.dir)
	}
	if err := g.link.Close(); err != nil {
		return fmt.Errorf("close group %s: detach device program: %w", g.name, err)
	}
	g.link = nil
	g.c.mu.Lock()
	if g.c.groups != nil {
		delete(g.c.groups, g.name)
	}
	g.c.mu.Unlock()
	return removeCgroup(g.dir)
}

// removeCgroup removes an empty cgroup directory. The kernel may report EBUSY for a moment
// after the last process left, while it finishes tearing the task down.
func removeCgroup(dir string) error {
	var err error
	for range 50 {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}
