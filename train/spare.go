package train

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Warm spares. Starting a rank costs the interpreter's start and the training program's heavy
// imports (torch: ~2.5 s of CPU) on every attempt; a restart pays them while the whole gang
// waits. So for a Python command, the RankActor keeps a spare for the next attempt: a Python
// process started with the rank's environment (less the per-attempt variables, perAttempt)
// that has imported the preload modules and waits on a pipe. The next Start on the actor hands
// it the attempt's environment, and it runs the script with the same argv, cwd, fds (1, 2: the
// output pipe; 3: reports; 4: acknowledgements), process group and Pdeathsig as a cold
// process would (train/zygote.py).
//
//	Start(attempt k) ─> the rank runs ─────────────────────> exits / Stop
//	      └─> spare: python -c STUB ─> preload ─> waits ─┐
//	Start(attempt k+1) ─> a usable spare? ─yes─> the start line: it becomes rank k+1 ─> (its own spare)
//	                                       └no─> drop it, start cold
//
// A spare is used only for the command, cwd and environment (but for perAttempt) it was made
// for, and only while it is alive; a lost actor (its node) takes its spare with it, since
// spares are children of the actor's worker with Pdeathsig, in its process group.

//go:embed zygote.py
var zygoteSource string

// spareStub is what the spare's interpreter runs with -c: it reads the zygote from fd 5.
const spareStub = `import os,json;f=os.fdopen(5,"rb");exec(compile(json.loads(f.readline()),"<shoal train spare>","exec"))`

// perAttempt are the variables that may differ between the attempt a spare was made for and
// the one it runs; a spare starts without them, so nothing it preloads sees a stale value.
var perAttempt = map[string]bool{"MASTER_ADDR": true, "MASTER_PORT": true, "TORCHELASTIC_RESTART_COUNT": true,
	"SHOAL_TRAIN_CHECKPOINT": true, "RANK": true, "LOCAL_RANK": true, "WORLD_SIZE": true, "LOCAL_WORLD_SIZE": true,
	"NODE_RANK": true, "GROUP_RANK": true, "ROLE_RANK": true, "ROLE_WORLD_SIZE": true, "TORCHELASTIC_RUN_ID": true,
	"TORCHELASTIC_MAX_RESTARTS": true}

// PreloadAuto is the preload list `shoal train` uses by default: torch, skipped where it is
// not installed (a module name ending in "?" is optional).
var PreloadAuto = []string{"torch?"}

// PyCmd is a Python command line as the interpreter reads it.
type PyCmd struct {
	Interp []string // the interpreter and its options: ["python3", "-u"]
	Mode   string   // "script", "module" (-m) or "code" (-c)
	Target string   // the script's path, the module's name or the code
	Args   []string // what follows: sys.argv[1:]
}

var pythonName = regexp.MustCompile(`^python[0-9.]*$`)

// ParsePython splits argv when it runs a Python interpreter (python, python3, python3.11, by
// any path) on a script, a module (-m) or code (-c), with options a spare can take too;
// otherwise ok is false (stdin, -i, long options, `python dir/` or a zip: those start cold).
func ParsePython(argv []string) (c PyCmd, ok bool) {
	if len(argv) < 2 || !pythonName.MatchString(filepath.Base(argv[0])) {
		return PyCmd{}, false
	}
	c.Interp = []string{argv[0]}
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-m" || a == "-c":
			if i+1 >= len(argv) {
				return PyCmd{}, false
			}
			c.Mode, c.Target, c.Args = map[string]string{"-m": "module", "-c": "code"}[a], argv[i+1], argv[i+2:]
			return c, true
		case strings.HasPrefix(a, "-m") || strings.HasPrefix(a, "-c"):
			c.Mode, c.Target, c.Args = map[string]string{"-m": "module", "-c": "code"}[a[:2]], a[2:], argv[i+1:]
			return c, true
		case a == "-X" || a == "-W":
			if i+1 >= len(argv) {
				return PyCmd{}, false
			}
			c.Interp = append(c.Interp, a, argv[i+1])
			i++
		case strings.HasPrefix(a, "-X") || strings.HasPrefix(a, "-W"):
			c.Interp = append(c.Interp, a)
		case a == "-" || strings.HasPrefix(a, "--"):
			return PyCmd{}, false
		case strings.HasPrefix(a, "-"):
			if strings.Trim(a[1:], "bBdEIOPqsSuvR") != "" { // -i, -h, -V, or a flag taking a value
				return PyCmd{}, false
			}
			c.Interp = append(c.Interp, a)
		default:
			c.Mode, c.Target, c.Args = "script", a, argv[i+1:]
			return c, true
		}
	}
	return PyCmd{}, false
}

// spareable says whether a spare can run c from cwd: a script must be a plain source file.
func spareable(c PyCmd, cwd string) bool {
	if c.Mode != "script" {
		return true
	}
	p := c.Target
	if !filepath.IsAbs(p) && cwd != "" {
		p = filepath.Join(cwd, p)
	}
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || strings.HasSuffix(p, ".pyc") {
		return false
	}
	magic := make([]byte, 4)
	n, _ := io.ReadFull(f, magic)
	return string(magic[:n]) != "PK\x03\x04" // a zip application runs through runpy's path hooks
}

// spare is a started spare and what it was made for.
type spare struct {
	p     *proc
	key   string
	niced bool
}

// A spare starts when its node has a CPU to spare: once spareIdle CPUs were idle over one
// spareSample (/proc/stat), or after spareMaxWait. A node whose ranks are starting, all of them
// importing torch, is then not slowed down by their spares (the interpreter's start included,
// which behind a pyenv shim is a few hundred ms); a node with cores to spare (GPU nodes) starts
// them at once. (The spare's nice 19 does the same where the scheduler honours it.)
var (
	spareIdle    = 1.0
	spareSample  = 250 * time.Millisecond
	spareMaxWait = 30 * time.Second
)

// waitIdle returns true once the node has a CPU to spare among those this process may run on
// (or maxWait passed; spareMaxWait when 0), false as soon as cancelled says so.
func waitIdle(maxWait time.Duration, cancelled func() bool) bool {
	if maxWait <= 0 {
		maxWait = spareMaxWait
	}
	deadline := time.Now().Add(maxWait)
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		set.Zero()
	}
	need := min(spareIdle, 0.5*float64(max(1, set.Count())))
	prevIdle, prevTotal, ok := cpuTimes(&set)
	for ok && time.Now().Before(deadline) {
		time.Sleep(spareSample)
		if cancelled() {
			return false
		}
		idle, total, fine := cpuTimes(&set)
		if !fine {
			break
		}
		if total > prevTotal && (idle-prevIdle)/(total-prevTotal)*float64(set.Count()) >= need {
			break
		}
		prevIdle, prevTotal = idle, total
	}
	return !cancelled()
}

// cpuTimes sums the idle (idle + iowait) and all CPU time of the CPUs in set (all CPUs when
// set is empty) from /proc/stat, in clock ticks.
func cpuTimes(set *unix.CPUSet) (idle, total float64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		if n, err := strconv.Atoi(f[0][3:]); err != nil || (set.Count() > 0 && !set.IsSet(n)) {
			continue
		}
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, false
			}
			if i < 8 { // user nice system idle iowait irq softirq steal; guest time is in user already
				total += float64(n)
			}
			if i == 3 || i == 4 {
				idle += float64(n)
			}
		}
		ok = true
	}
	return idle, total, ok
}

// spareKey is what must be equal for a spare to serve an attempt: argv, cwd, the preload list
// and the environment but for perAttempt.
func spareKey(argv []string, cwd string, env []string, preload []string) string {
	var kept []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !perAttempt[k] {
			kept = append(kept, kv)
		}
	}
	slices.Sort(kept)
	return strings.Join(argv, "\x00") + "\x01" + cwd + "\x01" + strings.Join(preload, ",") + "\x01" + strings.Join(kept, "\x00")
}

func withoutPerAttempt(env []string) []string {
	var out []string
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !perAttempt[k] {
			out = append(out, kv)
		}
	}
	return out
}

// spareNice is the nice value a spare preloads at, where it can be given back the rank's
// priority when it starts: the spare's imports then take only CPU time the running ranks
// leave (a restart comes seconds to hours after the spare was made).
const spareNice = 19

// newSpare starts a spare for the command c, run by path with env from cwd, preloading preload.
func newSpare(path string, argv []string, c PyCmd, env []string, cwd string, preload []string) (*spare, error) {
	p, err := spawn(path, append(slices.Clone(c.Interp), "-c", spareStub), withoutPerAttempt(env), cwd, true)
	if err != nil {
		return nil, err
	}
	s := &spare{p: p, key: spareKey(argv, cwd, env, preload)}
	if base, ok := reniceable(); ok && base < spareNice {
		s.niced = unix.Setpriority(unix.PRIO_PROCESS, p.cmd.Process.Pid, spareNice) == nil
	}
	src, _ := json.Marshal(zygoteSource)
	line, _ := json.Marshal(map[string]any{"preload": preload, "mode": c.Mode, "target": c.Target, "args": c.Args, "cwd": cwd})
	if _, err := p.ctrl.Write(append(append(src, '\n'), append(line, '\n')...)); err != nil {
		s.drop()
		return nil, fmt.Errorf("hand the spare its setup: %w", err)
	}
	return s, nil
}

// argv is the command line c stands for (-mNAME written as -m NAME).
func (c PyCmd) argv() []string {
	out := slices.Clone(c.Interp)
	switch c.Mode {
	case "module":
		out = append(out, "-m")
	case "code":
		out = append(out, "-c")
	}
	return append(append(out, c.Target), c.Args...)
}

func (s *spare) alive() bool {
	select {
	case <-s.p.waited:
		return false
	default:
		return true
	}
}

// activate makes the spare run the rank: its priority back, then the start line. An error
// means the spare is unusable (dead); the caller drops it and starts the rank cold.
func (s *spare) activate(c PyCmd, argv, env []string, cwd string) error {
	if s.niced {
		base, _ := reniceable()
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", s.p.cmd.Process.Pid))
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				unix.Setpriority(unix.PRIO_PROCESS, tid, base)
			}
		}
	}
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	msg := map[string]any{"env": m, "mode": c.Mode, "target": c.Target, "args": c.Args, "cwd": cwd, "orig_argv": argv}
	line, _ := json.Marshal(msg)
	// a spare still importing reads it afterwards; one that cannot (its output pipe full, which
	// nobody reads yet) is given up on
	s.p.ctrl.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := s.p.ctrl.Write(append(line, '\n'))
	s.p.ctrl.Close()
	if err != nil {
		return fmt.Errorf("start the rank in its warm spare: %w", err)
	}
	return nil
}

// drop ends an unused spare and waits for it; it returns the spare's output if it had exited
// on its own (a failed preload), for the message.
func (s *spare) drop() string {
	var out []byte
	if !s.alive() {
		s.p.op.SetReadDeadline(time.Now().Add(time.Second)) // a child of it may hold the pipe
		out, _ = io.ReadAll(io.LimitReader(s.p.op, 16<<10))
	}
	s.p.ctrl.Close()
	s.p.cmd.Process.Signal(syscall.SIGKILL)
	<-s.p.waited
	s.p.closeParent()
	return strings.TrimSpace(string(out))
}

var (
	niceOnce sync.Once
	niceBase int
	niceOK   bool
)

// reniceable returns this process's nice value and whether a process of ours can be given it
// back after being set to spareNice (root with CAP_SYS_NICE, or RLIMIT_NICE allowing it): it
// tries on a thread of its own that ends afterwards.
func reniceable() (int, bool) {
	niceOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked: the thread, reniced, ends with the goroutine
			defer close(done)
			raw, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
			if err != nil {
				return
			}
			niceBase = 20 - raw // the raw system call returns 20 - nice
			tid := unix.Gettid()
			if niceBase >= spareNice || unix.Setpriority(unix.PRIO_PROCESS, tid, spareNice) != nil {
				return
			}
			niceOK = unix.Setpriority(unix.PRIO_PROCESS, tid, niceBase) == nil
		}()
		<-done
	})
	return niceBase, niceOK
}
