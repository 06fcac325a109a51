//go:build linux

package confine

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/hashicorp/go-hclog"
)

// The test binary doubles as the confined child: with helperEnv set it opens the devices
// listed in its arguments ("PATH:r" or "PATH:w") and prints one line per device, the errno
// number or 0. With helperWait set it first opens them once, prints "ready" and waits
// for a line on stdin before opening them again, so the parent can move it meanwhile.
const (
	helperEnv  = "SHOAL_CONFINE_HELPER"
	helperWait = "SHOAL_CONFINE_HELPER_WAIT"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helper(flagArgs()))
	}
	os.Exit(m.Run())
}

// flagArgs are the arguments after "--".
func flagArgs() []string {
	for i, a := range os.Args {
		if a == "--" {
			return os.Args[i+1:]
		}
	}
	return nil
}

func helper(devices []string) int {
	open := func() {
		for _, d := range devices {
			path, mode, _ := strings.Cut(d, ":")
			flag := os.O_RDONLY
			if mode == "w" {
				flag = os.O_WRONLY
			}
			errno := 0
			f, err := os.OpenFile(path, flag, 0)
			if err == nil {
				f.Close()
			} else if e := syscall.Errno(0); errors.As(err, &e) {
				errno = int(e)
			} else {
				errno = -1
			}
			fmt.Printf("%s %d\n", d, errno)
		}
	}
	if os.Getenv(helperWait) == "1" {
		open()
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return 2
		}
	}
	open()
	return 0
}

// opens maps "PATH:MODE" to the errno of opening it (0 for success), from helper output.
func opens(t *testing.T, out string) map[string]syscall.Errno {
	t.Helper()
	res := map[string]syscall.Errno{}
	for line := range strings.Lines(out) {
		dev, n, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		errno, err := strconv.Atoi(n)
		if err != nil {
			t.Fatalf("helper printed %q", line)
		}
		res[dev] = syscall.Errno(errno)
	}
	return res
}

func helperCmd(devices ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, devices...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	return cmd
}

// testConfiner builds a Confiner or skips the test with New's reason where this machine cannot
// confine. An inconclusive error fails the test.
func testConfiner(t *testing.T, opts ...Option) *Confiner {
	t.Helper()
	logger := hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: t.Output()})
	c, err := New(logger, opts...)
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("device confinement is not supported here: %v", err)
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Confiner.Close: %v", err)
		}
		if _, err := os.Stat(c.Parent()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("parent cgroup %s left behind (stat: %v)", c.Parent(), err)
		}
	})
	return c
}

// testRules allow /dev/null, /dev/urandom for reading only, and the terminals, and leave out
// /dev/zero and /dev/full.
func testRules() []Rule {
	var rules []Rule
	for _, r := range DefaultRules() {
		switch {
		case r.Major == 1 && (r.Minor == 5 || r.Minor == 7):
			continue
		case r.Major == 1 && r.Minor == 9:
			r.Access = "r"
		}
		rules = append(rules, r)
	}
	return rules
}

var probes = []string{"/dev/null:r", "/dev/null:w", "/dev/zero:r", "/dev/full:w", "/dev/urandom:r", "/dev/urandom:w"}

func checkConfined(t *testing.T, got map[string]syscall.Errno) {
	t.Helper()
	want := map[string]syscall.Errno{
		"/dev/null:r": 0, "/dev/null:w": 0, "/dev/urandom:r": 0,
		"/dev/zero:r": syscall.EPERM, "/dev/full:w": syscall.EPERM, "/dev/urandom:w": syscall.EPERM,
	}
	for dev, errno := range want {
		if g, ok := got[dev]; !ok || g != errno {
			t.Errorf("open %s inside the group: %v, want %v", dev, g, errOrOK(errno))
		}
	}
}

func errOrOK(e syscall.Errno) string {
	if e == 0 {
		return "success"
	}
	return e.Error()
}

// TestConfineStartInside starts a process inside the group (clone3 with CLONE_INTO_CGROUP),
// so that it is confined before it executes anything.
func TestConfineStartInside(t *testing.T) {
	c := testConfiner(t)
	g, err := c.Confine("start-inside", testRules())
	if err != nil {
		t.Fatalf("Confine: %v", err)
	}
	if !strings.HasPrefix(g.Dir(), c.Parent()+"/") {
		t.Errorf("group %s is not under %s", g.Dir(), c.Parent())
	}
	dir, err := os.Open(g.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := helperCmd(probes...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	out, err := cmd.Output()
	if errors.Is(err, syscall.ENOSYS) {
		t.Skipf("kernel cannot start a process in a cgroup (clone3 CLONE_INTO_CGROUP, Linux 5.7): %v", err)
	}
	if err != nil {
		t.Fatalf("run helper: %v", err)
	}
	checkConfined(t, opens(t, string(out)))

	// The test process itself is not confined.
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Errorf("open /dev/zero outside the group: %v", err)
	} else {
		f.Close()
	}
	if err := g.Close(); err != nil {
		t.Fatalf("Group.Close: %v", err)
	}
	if _, err := os.Stat(g.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("group cgroup %s left behind (stat: %v)", g.Dir(), err)
	}
}

// TestConfineAddProcess moves a running process into the group: what it opens afterwards is
// checked, and the group cannot be closed while the process is in it.
func TestConfineAddProcess(t *testing.T) {
	c := testConfiner(t)
	g, err := c.Confine("add-process", testRules())
	if err != nil {
		t.Fatalf("Confine: %v", err)
	}
	if _, err := c.Confine("add-process", testRules()); err == nil {
		t.Error("a second group of the same name was made")
	}
	cmd := helperCmd(probes...)
	cmd.Env = append(cmd.Env, helperWait+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	r := bufio.NewReader(stdout)
	var before strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read helper: %v (so far %q)", err, before.String())
		}
		if line == "ready\n" {
			break
		}
		before.WriteString(line)
	}
	for dev, errno := range opens(t, before.String()) {
		if errno != 0 {
			t.Errorf("open %s before the move: %v, want success", dev, errno)
		}
	}

	if err := g.AddProcess(cmd.Process.Pid); err != nil {
		t.Fatalf("AddProcess: %v", err)
	}
	if err := g.Close(); err == nil || !strings.Contains(err.Error(), "still in") {
		t.Errorf("Close with a live process: %v, want a refusal", err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	after, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	checkConfined(t, opens(t, string(after)))
	if err := g.Close(); err != nil {
		t.Fatalf("Close after the process exited: %v", err)
	}
	if err := g.AddProcess(os.Getpid()); err == nil {
		t.Error("AddProcess on a closed group succeeded")
	}
}

// TestDeviceProgramsLoad has the kernel's verifier check every golden program.
func TestDeviceProgramsLoad(t *testing.T) {
	testConfiner(t) // skips where programs cannot be loaded
	for name, rules := range goldenPrograms(t) {
		prog, err := loadProgram(rules)
		if err != nil {
			var verr *ebpf.VerifierError
			if errors.As(err, &verr) {
				t.Errorf("%s: verifier rejects the program: %+v", name, verr)
				continue
			}
			t.Errorf("%s: load: %v", name, err)
			continue
		}
		prog.Close()
	}
}

// TestNewNotSupported checks New's answer where no cgroup v2 is mounted: ErrNotSupported.
func TestNewNotSupported(t *testing.T) {
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	mi, err := os.ReadFile("testdata/mountinfo/v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "self/mountinfo"), mi, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(nil, WithProcRoot(proc)); !errors.Is(err, ErrNotSupported) {
		t.Errorf("New on a cgroup v1 node: %v, want ErrNotSupported", err)
	}
	// A parent outside any cgroup v2 hierarchy.
	if _, err := New(nil, WithParent(filepath.Join(t.TempDir(), "shoal"))); !errors.Is(err, ErrNotSupported) {
		t.Errorf("New with a parent on a plain file system: %v, want ErrNotSupported", err)
	}
}
