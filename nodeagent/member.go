package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/internal/privdir"
	"github.com/shoal-hpc/shoal/nodeagent/confine"
	"github.com/shoal-hpc/shoal/nodeagent/gpu"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// ErrHeadLost is returned by Member.Run when the head node's agent went away without a STOP.
var ErrHeadLost = errors.New("lost the connection to the head node")

// Member is the agent of a node other than the head node: it joins the head node's agent,
// offers this node's resources, starts the worker processes it is told to start, reports
// their exits, and kills them all when the head says STOP or goes away.
//
//	Join ──> Run: SPAWN / KILL_WORKER ... ──> STOP{code} ──> workers killed ──> Run returns code
type Member struct {
	log     hclog.Logger
	conn    *wire.Conn
	node    string
	scrub   func([]string) []string
	cfg     MemberConfig
	stdout  *os.File
	stderr  *os.File
	mu      sync.Mutex
	workers map[string]*exec.Cmd
	// stopping is set by killAll: from then on spawn starts nothing, so no worker can slip in
	// between killAll's sweep and this process's exit (Close runs from a signal handler while
	// Run may be handling a SPAWN).
	stopping bool
	wg       sync.WaitGroup
	store    *memberStore // this node's object store (memberstore.go); nil without one
}

// MemberConfig configures Join.
type MemberConfig struct {
	HeadAddr  string // tcp:host:port of the head node's agent
	Secret    string
	Node      string // this node's name (SLURMD_NODENAME)
	Addr      string // this node's address, for `shoal status`
	Resources sched.Resources
	GPUs      []int // GPU indices this node offers (from Slurm)
	CUDA      []int // for each of GPUs, the index CUDA sees in the step (nil: the same)
	Scrub     func([]string) []string
	Stdout    *os.File
	Stderr    *os.File
	// Topology is this node's GPUs as NVML sees them (narrowed to Slurm's), sent to the head
	// so it places tasks by NUMA node and NVLink here too; nil without NVML.
	Topology *gpu.Topology
	// Confine, when set, puts every worker in a cgroup whose device program admits only the
	// ordinary character devices, its GPUs and ExtraDevices, as the head node's agent does.
	Confine      *confine.Confiner
	UVMMajor     int
	ExtraDevices []confine.Rule
	// CPUs are the CPUs this agent may use, for pinning GPU workers near their GPUs.
	CPUs []int
	// Store, when set, gives the node an object store of its own, which its workers use and
	// which other nodes pull objects from.
	Store *StoreConfig
}

// JoinRetry calls Join until it succeeds, the deadline passes (the last error is returned), ctx
// ends, or a signal arrives on sigs (returned, with no error, so the caller exits 128+signal).
// The head may not be listening yet when a member starts, so a refused join is retried every
// `every`.
func JoinRetry(ctx context.Context, log hclog.Logger, cfg MemberConfig, deadline time.Time, every time.Duration,
	sigs <-chan os.Signal) (*Member, os.Signal, error) {
	for {
		m, err := Join(log, cfg)
		if err == nil {
			return m, nil, nil
		}
		// a store directory another user made is not going away by trying again
		if time.Now().After(deadline) || errors.Is(err, privdir.ErrNotPrivate) {
			return nil, nil, err
		}
		select {
		case s := <-sigs:
			return nil, s, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(every):
		}
	}
}

// Join connects to the head node's agent and offers this node.
func Join(log hclog.Logger, cfg MemberConfig) (*Member, error) {
	conn, _, err := wire.Dial(cfg.HeadAddr, cfg.Secret, wire.Auth{Role: "member", PID: os.Getpid()})
	if err != nil {
		return nil, fmt.Errorf("join the cluster at %s: %w", cfg.HeadAddr, err)
	}
	var st *memberStore
	if cfg.Store != nil {
		if st, err = newMemberStore(log.Named("store"), cfg.Secret, cfg.Node, cfg.Addr, *cfg.Store); err != nil {
			conn.Close()
			return nil, fmt.Errorf("start node %s's object store: %w", cfg.Node, err)
		}
	}
	if err := conn.Call(wire.TNodeJoin, 1, &wire.NodeJoin{Node: cfg.Node, Addr: cfg.Addr, Resources: cfg.Resources, GPUs: cfg.GPUs, CUDA: cfg.CUDA,
		Devices: TopologyToWire(cfg.Topology)}, nil); err != nil {
		conn.Close()
		if st != nil {
			st.close()
		}
		return nil, fmt.Errorf("join the cluster at %s as node %s: %w", cfg.HeadAddr, cfg.Node, err)
	}
	if st != nil {
		conn.Send(wire.TNodeStore, 0, &wire.NodeStore{Loc: st.xfer.Loc()})
	}
	m := &Member{log: log, conn: conn, node: cfg.Node, scrub: cfg.Scrub, stdout: cfg.Stdout, stderr: cfg.Stderr,
		workers: map[string]*exec.Cmd{}, cfg: cfg, store: st}
	if m.stdout == nil {
		m.stdout = os.Stdout
	}
	if m.stderr == nil {
		m.stderr = os.Stderr
	}
	return m, nil
}

// Run serves the head until STOP (returning its code) or until the connection is lost
// (returning an error wrapping ErrHeadLost). Either way every worker it started is gone.
func (m *Member) Run() (int, error) {
	defer m.killAll()
	defer m.beat()() // obs: heartbeats (memberbeat.go)
	for {
		f, err := m.conn.Read()
		if err != nil {
			return 1, fmt.Errorf("%w: %v", ErrHeadLost, err)
		}
		switch f.Type {
		case wire.TSpawn:
			var s wire.Spawn
			if err := f.Decode(&s); err != nil {
				return 1, err
			}
			m.spawn(&s)
		case wire.TKillWorker:
			var k wire.WorkerExit
			if err := f.Decode(&k); err != nil {
				return 1, err
			}
			m.mu.Lock()
			if cmd := m.workers[k.Worker]; cmd != nil && cmd.Process != nil {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
			m.mu.Unlock()
		case wire.TObjFree:
			var ids wire.IDs
			if err := f.Decode(&ids); err != nil {
				return 1, err
			}
			if m.store != nil {
				m.store.free(ids.IDs)
			}
		case wire.TStop:
			var s wire.Stop
			f.Decode(&s)
			m.log.Debug("the head node stops the cluster", "code", s.Code, "reason", s.Msg)
			return s.Code, nil
		case wire.TError:
			var e wire.Error
			f.Decode(&e)
			return 1, fmt.Errorf("the head node refused this node: %s", e.Msg)
		}
	}
}

// Serve runs the member (see Run) until the head stops it, a signal arrives on sigs, or ctx
// ends; the member is closed on return, its workers gone. sig is the signal that ended it, if
// one did; code and err are Run's otherwise.
func (m *Member) Serve(ctx context.Context, sigs <-chan os.Signal) (code int, sig os.Signal, err error) {
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() { c, e := m.Run(); done <- result{c, e} }()
	defer m.Close()
	select {
	case s := <-sigs:
		return 0, s, nil
	case <-ctx.Done():
		return 1, nil, ctx.Err()
	case r := <-done:
		return r.code, nil, r.err
	}
}

// Close kills the workers and closes the connection.
func (m *Member) Close() error {
	m.killAll()
	err := m.conn.Close()
	if m.store != nil {
		m.store.close()
	}
	return err
}

// StoreStats returns the node's object store figures (zero without a store).
func (m *Member) StoreStats() wire.StoreStats {
	if m.store == nil {
		return wire.StoreStats{}
	}
	return m.store.stats()
}

func (m *Member) spawn(s *wire.Spawn) {
	if len(s.Argv) == 0 {
		m.conn.Send(wire.TWorkerExit, 0, &wire.WorkerExit{Worker: s.Worker, Msg: "had no command"})
		return
	}
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	env := os.Environ()
	if m.scrub != nil {
		env = m.scrub(env)
	}
	// The secret comes from this agent, never from SPAWN: the head does not send it, and a
	// SHOAL_SECRET in s.Env would be dropped.
	cmd.Env = append(filterEnv(env, "SHOAL_", "PYTHONPATH="), filterEnv(s.Env, "SHOAL_SECRET=")...)
	cmd.Env = append(cmd.Env, "SHOAL_SECRET="+m.cfg.Secret)
	if m.store != nil {
		cmd.Env = append(cmd.Env, "SHOAL_STORE_ADDRESS="+m.store.Addr())
	}
	if s.Cwd != "" {
		if st, err := os.Stat(s.Cwd); err == nil && st.IsDir() {
			cmd.Dir = s.Cwd
		}
	}
	cmd.Stdout, cmd.Stderr = m.workerOutput(s.Worker) // obs: lines to the head (observe.go)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	group := m.confine(s, cmd)
	// Start under the lock: killAll either sees this worker or has already set stopping.
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		closeGroup(m.log, group, s.Worker)
		m.conn.Send(wire.TWorkerExit, 0, &wire.WorkerExit{Worker: s.Worker, Msg: "not started: node " + m.node + " is stopping"})
		return
	}
	err := cmd.Start()
	if cmd.SysProcAttr.UseCgroupFD {
		syscall.Close(cmd.SysProcAttr.CgroupFD)
	}
	if err != nil {
		m.mu.Unlock()
		closeGroup(m.log, group, s.Worker)
		m.log.Error("start worker", "worker", s.Worker, "error", err)
		m.conn.Send(wire.TWorkerExit, 0, &wire.WorkerExit{Worker: s.Worker, Msg: "could not start: " + err.Error()})
		return
	}
	m.workers[s.Worker] = cmd
	m.wg.Add(1)
	m.mu.Unlock()
	if len(s.GPUs) > 0 {
		setAffinity(m.log, cmd.Process.Pid, gpuCPUs(m.cfg.Topology, m.cfg.CPUs, s.GPUs))
	}
	go func() {
		defer m.wg.Done()
		err := cmd.Wait()
		why := "exited"
		if err != nil {
			why = err.Error()
		}
		m.mu.Lock()
		delete(m.workers, s.Worker)
		m.mu.Unlock()
		closeGroup(m.log, group, s.Worker)
		m.conn.Send(wire.TWorkerExit, 0, &wire.WorkerExit{Worker: s.Worker, Msg: why})
	}()
}

// killAll ends every worker: SIGTERM, then SIGKILL to its process group after a grace period.
func (m *Member) killAll() {
	m.mu.Lock()
	m.stopping = true
	cmds := make([]*exec.Cmd, 0, len(m.workers))
	for _, c := range m.workers {
		cmds = append(cmds, c)
	}
	m.mu.Unlock()
	for _, c := range cmds {
		syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		for _, c := range cmds {
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
		<-done
	}
	for _, c := range cmds {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL) // leftovers in the process groups
	}
}

// confine makes the worker's cgroup when this member confines workers, and sets cmd to start in
// it. A failure is logged and the worker starts unconfined, as on the head node.
func (m *Member) confine(s *wire.Spawn, cmd *exec.Cmd) *confine.Group {
	if m.cfg.Confine == nil {
		return nil
	}
	rules, err := DeviceRules(m.cfg.Topology, s.GPUs, m.cfg.UVMMajor, m.cfg.ExtraDevices)
	if err == nil {
		var g *confine.Group
		var f *os.File
		if g, f, err = openGroup(m.cfg.Confine, s.Worker, rules); err == nil {
			fd, derr := syscall.Dup(int(f.Fd()))
			f.Close()
			if derr != nil {
				g.Close()
				err = derr
			} else {
				cmd.SysProcAttr.UseCgroupFD = true
				cmd.SysProcAttr.CgroupFD = fd
				return g
			}
		}
	}
	m.log.Error("confine worker; starting it unconfined", "worker", s.Worker, "error", err)
	return nil
}

// closeGroup removes a worker's cgroup, if it has one.
func closeGroup(log hclog.Logger, g *confine.Group, worker string) {
	if g == nil {
		return
	}
	if err := g.Close(); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("remove worker cgroup", "worker", worker, "error", err)
	}
}
