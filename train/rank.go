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
	"slices"
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
	Seq        int            `msgpack:"seq" json:"-"` // the count of checkpoint reports so far, this one included
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
	Warm    bool    `msgpack:"warm"` // the process was this actor's warm spare (spare.go)
	// ExitedMs is when the process exited (Unix ms, its node's clock; 0 while it runs): of
	// ranks that fail at once, the first one is the cause (gang.go)
	ExitedMs int64 `msgpack:"exited_ms,omitempty"`
}

// StartSpec is the rank process to start.
type StartSpec struct {
	Argv   []string `msgpack:"argv"`
	Env    []string `msgpack:"env"` // set over the worker's environment
	Cwd    string   `msgpack:"cwd"`
	Prefix string   `msgpack:"prefix"` // put in front of every output line ("[rank3] ")
	// Spare keeps a warm spare for the next attempt (spare.go), preloading Preload, when the
	// command is Python; none when Preload is empty.
	Spare   bool     `msgpack:"spare"`
	Preload []string `msgpack:"preload"`
	// SpareWaitMs is the longest a spare waits for an idle CPU before it starts (0: 30 s).
	SpareWaitMs int `msgpack:"spare_wait_ms"`
	// SyncCheckpoints holds each checkpoint report (shoal.train.report blocks) until Poll's
	// ack says shoal train has it: rank 0's, whose checkpoint the gang restarts from.
	SyncCheckpoints bool `msgpack:"sync_checkpoints"`
	// Ignore are signals the rank starts with ignored (`shoal train --requeue`: SIGTERM and
	// the time-limit warning's signal, requeue.go): the ones Slurm sends every process of a
	// step on a preemption or a time-limit warning do not kill it; shoal train tells it that
	// a checkpoint is due instead. A handler the rank installs itself still gets them.
	Ignore []int `msgpack:"ignore"`
}

// RankActor runs one rank's process on its node. Its methods run one at a time (it is an
// actor), so every method returns promptly: Poll waits at most the time it is given.
type RankActor struct {
	mu      sync.Mutex
	cur     *proc
	exited  chan struct{}
	status  Status
	tail    *tail
	reports int
	last    *Report
	ckpts   int           // checkpoint reports of the current process
	acked   int           // of which acknowledged to it
	sync    bool          // acknowledge only on Poll's ack
	news    chan struct{} // a checkpoint report came
	spare   *spare        // for the next attempt
	gen     int           // Start and Close count up: a spare asked for earlier is not made
	port    int           // the reserved port's socket, held until Stop
	portFD  int
	direct  map[syscall.Signal]time.Time // when this worker last got each signal itself
}

// directWindow is how recent a signal the worker got itself must be for Signal to take the
// same signal from shoal train as a copy of it.
const directWindow = 2 * time.Second

// directGrace is how long Signal waits for Slurm's own copy of a signal to reach this worker
// before it passes on the copy `shoal train` sent (a signal for the batch shell only, B:USR1,
// never comes directly, and is passed on this much later).
const directGrace = 300 * time.Millisecond

// NewRankActor is RankActor's constructor. The worker catches SIGTERM, SIGINT, SIGHUP, SIGUSR1
// and SIGUSR2 and notes when each came: Slurm sends them to every process of a step (scancel,
// time limits, --signal), the rank process included, and the worker must outlive its rank to
// report how it ended.
func NewRankActor() (*RankActor, error) {
	r := &RankActor{tail: newTail(40), portFD: -1, direct: map[syscall.Signal]time.Time{}, news: make(chan struct{}, 1)}
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

// proc is a started process with its pipes: fd 1 and 2 the output pipe, fd 3 the report
// pipe (SHOAL_TRAIN_REPORT_FD), fd 4 the acknowledgement pipe (SHOAL_TRAIN_ACK_FD), and for a
// spare fd 5 its control pipe.
type proc struct {
	cmd    *exec.Cmd
	op, rp *os.File // read ends: output, reports
	ack    *os.File // write end: one byte per acknowledged checkpoint report
	ctrl   *os.File // write end of a spare's control pipe
	due    *os.File // write end: one byte each time a checkpoint is due (fd 6, requeue.go)
	waited chan struct{}
	werr   error
}

// spawn starts argv (argv[0] found at path) with env in dir, in this worker's process group
// (so the agent's kill of the worker's group reaches it) and with Pdeathsig.
func spawn(path string, argv, env []string, dir string, withCtrl bool) (*proc, error) {
	var parent, child []*os.File // what this process keeps; what the child gets
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			if f != nil {
				f.Close()
			}
		}
	}
	pipe := func(childReads bool) (*os.File, error) {
		rd, wr, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		if childReads {
			parent, child = append(parent, wr), append(child, rd)
			return wr, nil
		}
		parent, child = append(parent, rd), append(child, wr)
		return rd, nil
	}
	p := &proc{waited: make(chan struct{})}
	var err error
	ok := func(f *os.File, e error) *os.File {
		if e != nil && err == nil {
			err = e
		}
		return f
	}
	p.op = ok(pipe(false))
	p.rp = ok(pipe(false))
	p.ack = ok(pipe(true))
	if withCtrl {
		p.ctrl = ok(pipe(true))
	}
	p.due = ok(pipe(true))
	if err != nil {
		closeAll(parent)
		closeAll(child)
		return nil, fmt.Errorf("make the rank's pipes: %w", err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0] // argv[0] as the user wrote it, as a shell would
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = child[0], child[0]
	// fd 3 reports, fd 4 acks, fd 5 a spare's control pipe (closed in a cold process), fd 6
	// checkpoint-due notes (SHOAL_TRAIN_DUE_FD)
	cmd.ExtraFiles = child[1:]
	if !withCtrl {
		cmd.ExtraFiles = []*os.File{child[1], child[2], nil, child[3]}
	}
	// Pdeathsig fires when the thread that started the child ends: start it from a locked
	// thread that lives as long as the child does.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err := cmd.Start()
		started <- err
		if err != nil {
			return
		}
		p.werr = cmd.Wait()
		close(p.waited)
	}()
	err = <-started
	closeAll(child)
	if err != nil {
		closeAll(parent)
		return nil, err
	}
	p.cmd = cmd
	return p, nil
}

// closeParent closes this process's ends of p's pipes.
func (p *proc) closeParent() {
	for _, f := range []*os.File{p.op, p.rp, p.ack, p.ctrl, p.due} {
		if f != nil {
			f.Close()
		}
	}
}

// Start starts the rank's process, or hands the attempt to this actor's warm spare when it
// has one for this very command (spare.go). Once that process has exited, Start may start the
// next attempt's.
//
// It reports whether the process is the warm spare.
func (r *RankActor) Start(s StartSpec) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && !r.status.Done {
		return false, errors.New("this rank's process is still running")
	}
	// a new attempt of the gang on the same actor
	r.cur, r.status, r.reports, r.last, r.tail = nil, Status{}, 0, nil, newTail(40)
	r.ckpts, r.acked, r.sync = 0, 0, s.SyncCheckpoints
	r.gen++
	path, env, dir, err := startEnv(s)
	if err != nil {
		return false, err
	}
	py, isPy := ParsePython(s.Argv)
	var p *proc
	if sp := r.spare; sp != nil {
		r.spare = nil
		if isPy && sp.alive() && sp.key == spareKey(s.Argv, dir, env, s.Preload) && sp.activate(py, s.Argv, env, dir) == nil {
			p = sp.p
			r.status.Warm = true
		} else if out := sp.drop(); out != "" {
			fmt.Fprintf(os.Stdout, "%sshoal train: starting cold: the warm spare had exited: %s\n", s.Prefix, strings.ReplaceAll(out, "\n", "\n"+s.Prefix))
		}
	}
	if p == nil {
		if p, err = spawn(path, s.Argv, env, dir, false); err != nil {
			return false, fmt.Errorf("start %q: %w", s.Argv[0], err)
		}
	}
	r.attach(p, s.Prefix)
	if s.Spare && isPy && len(s.Preload) > 0 && spareable(py, dir) {
		go r.makeSpare(r.gen, time.Duration(s.SpareWaitMs)*time.Millisecond, path, slices.Clone(s.Argv), py, env, dir, s.Preload)
	}
	return r.status.Warm, nil
}

// startEnv finds s's command and works out its environment and directory as the rank's
// process gets them; it sets the signals s ignores (inherited by the rank and its spares).
func startEnv(s StartSpec) (path string, env []string, dir string, err error) {
	if len(s.Argv) == 0 {
		return "", nil, "", errors.New("no command to run")
	}
	path, err = exec.LookPath(s.Argv[0])
	if err != nil {
		return "", nil, "", fmt.Errorf("run %q on %s: %w", s.Argv[0], os.Getenv("SHOAL_NODE_ID"), err)
	}
	var kept []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SHOAL_WORKER_ID=") { // the rank is a driver, not this worker
			kept = append(kept, kv)
		}
	}
	env = MergeEnv(kept, append(slices.Clone(s.Env), "SHOAL_TRAIN_REPORT_FD=3", "SHOAL_TRAIN_ACK_FD=4", "SHOAL_TRAIN_DUE_FD=6"))
	ignoreSignals(s.Ignore) // inherited by the rank (and its spares) across exec
	dir = s.Cwd
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			dir = ""
		}
	}
	return path, env, dir, nil
}

// Standby makes this actor a standby rank (standby.go): it starts no process, only a warm
// spare for s (the command and environment a rank moved here will get, less the per-attempt
// variables), so that a Start for those ranks later runs in it. It reports whether a spare is
// being made (false: s is not a Python command a spare can run, or no modules to preload).
func (r *RankActor) Standby(s StartSpec) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && !r.status.Done {
		return false, errors.New("this rank's process is still running")
	}
	r.gen++
	path, env, dir, err := startEnv(s)
	if err != nil {
		return false, err
	}
	py, isPy := ParsePython(s.Argv)
	if !isPy || len(s.Preload) == 0 || !spareable(py, dir) {
		return false, nil
	}
	go r.makeSpare(r.gen, time.Duration(s.SpareWaitMs)*time.Millisecond, path, slices.Clone(s.Argv), py, env, dir, s.Preload)
	return true, nil
}

// makeSpare starts the spare for the attempt after attempt gen once the node has a CPU to
// spare, unless another Start or Close came meanwhile.
func (r *RankActor) makeSpare(gen int, wait time.Duration, path string, argv []string, py PyCmd, env []string, dir string, preload []string) {
	stale := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.gen != gen
	}
	if !waitIdle(wait, stale) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen != gen || r.spare != nil {
		return
	}
	if sp, err := newSpare(path, argv, py, env, dir, preload); err == nil {
		r.spare = sp
	}
}

// attach makes p the rank's process: its output and reports are read, and r.exited closes
// once it has exited and its pipes are drained.
func (r *RankActor) attach(p *proc, prefix string) {
	r.cur, r.exited = p, make(chan struct{})
	r.status.Started = true
	ex, t := r.exited, r.tail
	go func() {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); copyOutput(p.op, prefix, t) }()
		go func() { defer wg.Done(); r.readReports(p) }()
		<-p.waited
		exited := time.Now().UnixMilli()
		wg.Wait()
		p.closeParent()
		r.mu.Lock()
		r.status.Done, r.status.ExitedMs = true, exited
		r.status.Code, r.status.Signal = exitCode(p.werr, p.cmd.ProcessState)
		r.mu.Unlock()
		close(ex)
	}()
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
func copyOutput(op *os.File, prefix string, t *tail) {
	br := bufio.NewReaderSize(op, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if !strings.HasSuffix(line, "\n") {
				line += "\n"
			}
			io.WriteString(os.Stdout, prefix+line)
			t.add(strings.TrimRight(line, "\n"))
		}
		if err != nil {
			return
		}
	}
}

// readReports reads the rank's reports. A checkpoint report is acknowledged (one byte on the
// ack pipe, which shoal.train.report waits for) at once, or, with SyncCheckpoints, once Poll
// is told that shoal train has it: then a node lost right after report() returned cannot take
// the checkpoint with it.
func (r *RankActor) readReports(p *proc) {
	sc := bufio.NewScanner(p.rp)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var rep Report
		if json.Unmarshal(sc.Bytes(), &rep) != nil {
			continue
		}
		r.mu.Lock()
		r.reports++
		if rep.Checkpoint != "" {
			r.ckpts++
			rep.Seq = r.ckpts
			r.last = &rep
			if !r.sync {
				r.ackLocked(r.ckpts)
			}
			select {
			case r.news <- struct{}{}:
			default:
			}
		}
		r.mu.Unlock()
	}
}

// ackLocked acknowledges the checkpoint reports up to seq.
func (r *RankActor) ackLocked(seq int) {
	if seq > r.ckpts {
		seq = r.ckpts
	}
	if n := seq - r.acked; n > 0 && r.cur != nil {
		// never blocks the actor: a rank that exited, or does not read its acks, is told nothing
		r.cur.ack.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		r.cur.ack.Write(make([]byte, n))
		r.acked = seq
	}
}

// Poll acknowledges the checkpoint reports up to ack (shoal train has them), then waits up to
// ms milliseconds for the process to exit, or, with SyncCheckpoints, for a checkpoint report
// not acknowledged yet, and returns the status.
func (r *RankActor) Poll(ms, ack int) (Status, error) {
	r.mu.Lock()
	ex := r.exited
	r.ackLocked(ack)
	pending := r.sync && r.ckpts > ack
	r.mu.Unlock()
	if ex != nil && ms > 0 && !pending {
		var news <-chan struct{}
		if r.sync {
			news = r.news
		}
		select {
		case <-ex:
		case <-news:
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
// a second copy would run the rank's handler (a checkpoint on SIGUSR1) twice. Slurm signals the
// step's processes on every node at about the time `shoal train` gets its own copy and passes
// it on, so the direct copy may still be on its way: Signal waits up to directGrace for it
// before it sends. It reports whether it sent the signal.
func (r *RankActor) Signal(sig int) (bool, error) {
	s := syscall.Signal(sig)
	deadline := time.Now().Add(directGrace)
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if t, ok := r.direct[s]; ok && time.Since(t) < directWindow {
			return false, nil
		}
		if !time.Now().Before(deadline) {
			break
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		r.mu.Lock()
	}
	if r.cur != nil && !r.status.Done {
		r.cur.cmd.Process.Signal(s)
		return true, nil
	}
	return false, nil
}

// Stop ends the rank's process: SIGTERM, then SIGKILL after graceMs; it returns once the
// process is gone, and frees the reserved port. The warm spare stays for the next attempt.
func (r *RankActor) Stop(graceMs int) (Status, error) {
	r.mu.Lock()
	p, ex := r.cur, r.exited
	if r.portFD >= 0 {
		unix.Close(r.portFD)
		r.portFD = -1
	}
	r.mu.Unlock()
	if p != nil {
		if ignoresTerm(p.cmd.Process.Pid) {
			graceMs = 0 // SIGTERM would change nothing (IgnoreTerm): no wait for it
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ex:
		case <-time.After(time.Duration(graceMs) * time.Millisecond):
			p.cmd.Process.Kill()
			<-ex
		}
	}
	return r.snapshot(), nil
}

// Close ends the warm spare, if any: the gang is over. (Killing the actor ends it too: it is
// in the worker's process group and has Pdeathsig.)
func (r *RankActor) Close() (bool, error) {
	r.mu.Lock()
	sp := r.spare
	r.spare = nil
	r.gen++
	r.mu.Unlock()
	if sp != nil {
		sp.drop()
	}
	return sp != nil, nil
}

// SparePID is the process id of the warm spare (0: none), for tests.
func (r *RankActor) SparePID() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spare == nil {
		return 0, nil
	}
	return r.spare.p.cmd.Process.Pid, nil
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
