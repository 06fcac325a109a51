package train

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/nodeagent/netdev"
)

// ActorType is the name RankActor is registered under (see Register).
const ActorType = "shoal.train.Rank"

// Rank process lifecycle, inside one RankActor (a shoal worker on the rank's node):
//
//	Info ─> [ReservePort] ─> Start ─> Poll ... ─> exited ─> Poll returns Done
//	                                   │
//	                                   └─ Signal / Stop (SIGTERM, grace, SIGKILL) ─> exited

// Report is one shoal.train.report record a rank wrote to its report pipe.
type Report struct {
	Metrics    map[string]any `msgpack:"metrics" json:"metrics"`
	Checkpoint string         `msgpack:"checkpoint" json:"checkpoint"`
}

// Status is a rank process's state as Poll and Stop see it.
type Status struct {
	Started bool    `msgpack:"started"`
	Done    bool    `msgpack:"done"`
	Code    int     `msgpack:"code"`   // exit code; 128+signal when a signal killed it
	Signal  string  `msgpack:"signal"` // the signal's name when a signal killed it
	Tail    string  `msgpack:"tail"`   // the last lines the rank printed
	Reports int     `msgpack:"reports"`
	Last    *Report `msgpack:"last"` // the last report with a checkpoint
}

// StartSpec is the rank process to start.
type StartSpec struct {
	Argv   []string `msgpack:"argv"`
	Env    []string `msgpack:"env"` // set over the worker's environment
	Cwd    string   `msgpack:"cwd"`
	Prefix string   `msgpack:"prefix"` // put in front of every output line ("[rank3] ")
}

// RankActor runs one rank's process on its node. Its methods run one at a time (it is an
// actor), so every method returns promptly: Poll waits at most the time it is given.
type RankActor struct {
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	status  Status
	tail    *tail
	reports int
	last    *Report
	port    int // the reserved port's socket, held until Stop
	portFD  int
	direct  map[syscall.Signal]time.Time // when this worker last got each signal itself
}

// directWindow is how recent a signal the worker got itself must be for Signal to take the
// same signal from shoal train as a copy of it.
const directWindow = 2 * time.Second

// NewRankActor is RankActor's constructor. The worker catches SIGTERM, SIGINT, SIGHUP, SIGUSR1
// and SIGUSR2 and notes when each came: Slurm sends them to every process of a step (scancel,
// time limits, --signal), the rank process included, and the worker must outlive its rank to
// report how it ended.
func NewRankActor() (*RankActor, error) {
	r := &RankActor{tail: newTail(40), portFD: -1, direct: map[syscall.Signal]time.Time{}}
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for s := range ch {
			r.mu.Lock()
			r.direct[s.(syscall.Signal)] = time.Now()
			r.mu.Unlock()
		}
	}()
	return r, nil
}

// Info says where this rank runs: its node, its GPUs and the NCCL interface and HCA chosen
// there among allowed (names or globs; empty: any).
func (r *RankActor) Info(allowed []string) (Placed, error) {
	host, _ := os.Hostname()
	nccl, _ := NCCL(allowed)
	return Placed{Node: os.Getenv("SHOAL_NODE_ID"), Host: host, GPUs: parseInts(os.Getenv("SHOAL_GPU_IDS")), NCCL: nccl}, nil
}

// NCCL returns the NCCL variables for this node: the interface (among allowed, names or
// globs; empty: any) and RDMA device netdev prefers, and GLOO_SOCKET_IFNAME for the same
// interface, leaving out what the environment sets already (the user's choice wins). Without sysfs it returns an empty map and the error.
func NCCL(allowed []string) (map[string]string, error) {
	out := map[string]string{}
	nd, err := netdev.Detect(hclog.NewNullLogger())
	if err != nil {
		return out, err
	}
	nic, _ := nd.PreferredNIC(-1, allowed)
	hca, port, ok := nd.PreferredHCA(-1)
	roce, gid := false, -1
	if ok {
		if d, found := nd.HCA(hca); found {
			roce = d.RoCE()
			if g, ok := d.GIDIndex(port); ok {
				gid = g
			}
		}
	} else {
		hca = ""
	}
	env := netdev.NCCLEnv(nic, hca, port, roce, gid)
	if nic.Name != "" {
		// gloo (torch's CPU backend) finds its address through the host name otherwise, which
		// on nodes that share a name, or map it to 127.0.1.1, is not the one peers reach
		env["GLOO_SOCKET_IFNAME"] = nic.Name
	}
	for k, v := range env {
		if os.Getenv(k) == "" { // the user's own setting wins
			out[k] = v
		}
	}
	return out, nil
}

// ReservePort binds a TCP port on all of this node's addresses and holds it until Stop, so
// no other program takes it; the socket has SO_REUSEADDR and never listens, which lets the
// rank's own listener (torch's TCPStore sets SO_REUSEADDR too) bind it and listen.
func (r *RankActor) ReservePort() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.portFD >= 0 {
		return r.port, nil
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("reserve a port: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("reserve a port: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("reserve a port: bind: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("reserve a port: %w", err)
	}
	r.portFD, r.port = fd, sa.(*unix.SockaddrInet4).Port
	return r.port, nil
}

// Start starts the rank's process in this worker's process group (so the agent's kill of
// the worker's group reaches it) with a report pipe on fd 3 (SHOAL_TRAIN_REPORT_FD). Once
// that process has exited, Start may start the next attempt's.
func (r *RankActor) Start(s StartSpec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil && !r.status.Done {
		return errors.New("this rank's process is still running")
	}
	// a new attempt of the gang on the same actor
	r.cmd, r.status, r.reports, r.last, r.tail = nil, Status{}, 0, nil, newTail(40)
	if len(s.Argv) == 0 {
		return errors.New("no command to run")
	}
	path, err := exec.LookPath(s.Argv[0])
	if err != nil {
		return fmt.Errorf("run %q on %s: %w", s.Argv[0], os.Getenv("SHOAL_NODE_ID"), err)
	}
	rp, wp, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("make the report pipe: %w", err)
	}
	op, ow, err := os.Pipe()
	if err != nil {
		rp.Close()
		wp.Close()
		return fmt.Errorf("make the output pipe: %w", err)
	}
	cmd := exec.Command(path, s.Argv[1:]...)
	cmd.Args[0] = s.Argv[0] // argv[0] as the user wrote it, as a shell would
	base := os.Environ()
	var kept []string
	for _, kv := range base {
		if !strings.HasPrefix(kv, "SHOAL_WORKER_ID=") { // the rank is a driver, not this worker
			kept = append(kept, kv)
		}
	}
	cmd.Env = MergeEnv(kept, append(s.Env, "SHOAL_TRAIN_REPORT_FD=3"))
	cmd.Dir = s.Cwd
	if cmd.Dir != "" {
		if st, err := os.Stat(cmd.Dir); err != nil || !st.IsDir() {
			cmd.Dir = ""
		}
	}
	cmd.Stdout, cmd.Stderr = ow, ow
	cmd.ExtraFiles = []*os.File{wp}
	// Pdeathsig fires when the thread that started the child ends: start it from a locked
	// thread that lives as long as the child does.
	started := make(chan error, 1)
	r.exited = make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err := cmd.Start()
		started <- err
		if err != nil {
			return
		}
		ow.Close()
		wp.Close()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); r.copyOutput(op, s.Prefix) }()
		go func() { defer wg.Done(); r.readReports(rp) }()
		werr := cmd.Wait()
		wg.Wait()
		r.mu.Lock()
		r.status.Done = true
		r.status.Code, r.status.Signal = exitCode(werr, cmd.ProcessState)
		r.mu.Unlock()
		close(r.exited)
	}()
	if err := <-started; err != nil {
		rp.Close()
		wp.Close()
		op.Close()
		ow.Close()
		return fmt.Errorf("start %q: %w", s.Argv[0], err)
	}
	r.cmd = cmd
	r.status.Started = true
	return nil
}

func exitCode(err error, st *os.ProcessState) (int, string) {
	if st == nil {
		if err != nil {
			return 1, ""
		}
		return 0, ""
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), unix.SignalName(ws.Signal())
	}
	return st.ExitCode(), ""
}

// copyOutput passes the rank's output on to the worker's (the job's) output, each line with
// prefix, and keeps the last lines for the failure report. Output is drained even after the
// process exits, until every holder of the pipe (its children too) closed it.
func (r *RankActor) copyOutput(op *os.File, prefix string) {
	defer op.Close()
	br := bufio.NewReaderSize(op, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if !strings.HasSuffix(line, "\n") {
				line += "\n"
			}
			io.WriteString(os.Stdout, prefix+line)
			r.tail.add(strings.TrimRight(line, "\n"))
		}
		if err != nil {
			return
		}
	}
}

func (r *RankActor) readReports(rp *os.File) {
	defer rp.Close()
	sc := bufio.NewScanner(rp)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var rep Report
		if json.Unmarshal(sc.Bytes(), &rep) != nil {
			continue
		}
		r.mu.Lock()
		r.reports++
		if rep.Checkpoint != "" {
			c := rep
			r.last = &c
		}
		r.mu.Unlock()
	}
}

// Poll waits up to ms milliseconds for the process to exit and returns its status.
func (r *RankActor) Poll(ms int) (Status, error) {
	r.mu.Lock()
	ex := r.exited
	r.mu.Unlock()
	if ex != nil && ms > 0 {
		select {
		case <-ex:
		case <-time.After(time.Duration(ms) * time.Millisecond):
		}
	}
	return r.snapshot(), nil
}

func (r *RankActor) snapshot() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Tail = r.tail.String()
	s.Reports, s.Last = r.reports, r.last
	return s
}

// Signal sends sig to the rank's process, if it runs, unless this worker got sig itself
// within directWindow: then Slurm signalled every process of the step, the rank included, and
// a second copy would run the rank's handler (a checkpoint on SIGUSR1) twice. It reports
// whether it sent the signal.
func (r *RankActor) Signal(sig int) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.direct[syscall.Signal(sig)]; ok && time.Since(t) < directWindow {
		return false, nil
	}
	if r.cmd != nil && !r.status.Done {
		r.cmd.Process.Signal(syscall.Signal(sig))
		return true, nil
	}
	return false, nil
}

// Stop ends the rank's process: SIGTERM, then SIGKILL after graceMs; it returns once the
// process is gone, and frees the reserved port.
func (r *RankActor) Stop(graceMs int) (Status, error) {
	r.mu.Lock()
	cmd, ex := r.cmd, r.exited
	if r.portFD >= 0 {
		unix.Close(r.portFD)
		r.portFD = -1
	}
	r.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ex:
		case <-time.After(time.Duration(graceMs) * time.Millisecond):
			cmd.Process.Kill()
			<-ex
		}
	}
	return r.snapshot(), nil
}

// tail keeps the last n lines.
type tail struct {
	mu    sync.Mutex
	n     int
	lines []string
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(line) > 1000 {
		line = line[:1000] + "..."
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

func parseInts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var v int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &v); err == nil {
			out = append(out, v)
		}
	}
	return out
}
