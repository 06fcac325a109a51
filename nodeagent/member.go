package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
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
	log    hclog.Logger
	conn   *wire.Conn
	node   string
	scrub  func([]string) []string
	cfg    MemberConfig
	stdout *os.File
	stderr *os.File
	mu     sync.Mutex
	// procs starts and ends this node's workers, as the head node's agent's does (spawner.go);
	// once killAll has stopped it, it starts nothing, so no worker can slip in between the
	// sweep and this process's exit (Close runs from a signal handler while Run may be
	// handling a SPAWN).
	procs *spawner
	store *memberStore // this node's object store (memberstore.go); nil without one
	logs  *memberLogs  // this node's workers' lines (nodelogs.go)
	// heartbeats with the head (heartbeat.go): the head's figures from NODE_JOIN's answer
	// (zero: none), when the head was last heard from, and why it was given up
	hb      Heartbeat
	beats   *liveness[string]
	headErr error
	hbSeq   uint64
	// handling is set while Run handles a frame rather than waiting for one
	handling atomic.Bool
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
	// Labels are this node's labels for label selectors (--labels).
	Labels map[string]string
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
	var reply wire.NodeJoinReply
	if err := conn.Call(wire.TNodeJoin, 1, &wire.NodeJoin{Node: cfg.Node, Addr: cfg.Addr, Resources: cfg.Resources, GPUs: cfg.GPUs, CUDA: cfg.CUDA,
		Devices: TopologyToWire(cfg.Topology), Labels: cfg.Labels}, &reply); err != nil {
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
		cfg: cfg, store: st, logs: newMemberLogs()}
	if reply.TimeoutMS > 0 && reply.HeartbeatMS > 0 {
		m.hb = Heartbeat{Timeout: time.Duration(reply.TimeoutMS) * time.Millisecond, Period: time.Duration(reply.HeartbeatMS) * time.Millisecond}
		m.beats = newLiveness[string](m.hb.Timeout)
	}
	if m.stdout == nil {
		m.stdout = os.Stdout
	}
	if m.stderr == nil {
		m.stderr = os.Stderr
	}
	m.procs = &spawner{log: log, scrub: cfg.Scrub, stdout: writer(m.stdout), stderr: writer(m.stderr), confine: cfg.Confine,
		topo: cfg.Topology, cpus: cfg.CPUs, uvm: cfg.UVMMajor, extra: cfg.ExtraDevices}
	if st != nil && reply.LocalTasks && cfg.Resources["CPU"] >= 1 { // (a lease is one CPU)
		st.local = newMemberLocal(log.Named("local"), int(cfg.Resources["CPU"]),
			func(t wire.Type, body any) error { return conn.Send(t, 0, body) }, st.useStored, m.procs.signal)
	}
	return m, nil
}

// Run serves the head until STOP (returning its code) or until the connection is lost
// (returning an error wrapping ErrHeadLost). Either way every worker it started is gone.
func (m *Member) Run() (int, error) {
	defer m.killAll()
	stop := make(chan struct{})
	defer close(stop)
	go m.beat(m.hb, stop) // liveness, where the head checks it, and the node's figures
	for {
		m.handling.Store(false)
		f, err := m.conn.Read()
		if err != nil {
			return 1, m.headLost(err)
		}
		m.handling.Store(true)
		if m.beats != nil {
			m.beats.heard("head", time.Now()) // every frame is a sign of the head's life
		}
		switch f.Type {
		case wire.TSpawn:
			var s wire.Spawn
			if err := f.Decode(&s); err != nil {
				return 1, err
			}
			m.spawn(&s)
		case wire.TMemLimit:
			var l wire.MemLimit
			if err := f.Decode(&l); err != nil {
				return 1, err
			}
			m.memLimit(&l) // memmon.go
		case wire.TKillWorker:
			var k wire.WorkerExit
			if err := f.Decode(&k); err != nil {
				return 1, err
			}
			sig := syscall.SIGKILL
			if k.Signal == int(syscall.SIGINT) {
				sig = syscall.SIGINT // a cancel: the worker interrupts its task
			}
			m.procs.signal(k.Worker, sig)
		case wire.TObjFree:
			var ids wire.IDs
			if err := f.Decode(&ids); err != nil {
				return 1, err
			}
			if m.store != nil {
				m.store.free(ids.IDs)
			}
		case wire.TLeaseFailed:
			var lf wire.LeaseFailed
			if err := f.Decode(&lf); err != nil {
				return 1, err
			}
			if m.store != nil && m.store.local != nil {
				m.store.local.leaseFailed(&lf)
			}
		case wire.THeartbeat:
			if len(f.Body) > 0 && m.store != nil && m.store.local != nil {
				var r wire.HeartbeatReply
				if err := f.Decode(&r); err != nil {
					return 1, err
				}
				m.store.local.setElsewhere(r.FreeElsewhere)
			}
		case wire.TLogQuery, wire.TLogConfig: // obs: nodelogs.go
			if err := m.handleLogs(f); err != nil {
				return 1, err
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
		if m.store.local != nil {
			m.store.local.close()
		}
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
	// The secret comes from this agent, never from SPAWN: the head does not send it, and a
	// SHOAL_SECRET in s.Env would be dropped.
	env := append(filterEnv(s.Env, "SHOAL_SECRET="), "SHOAL_SECRET="+m.cfg.Secret)
	if m.store != nil {
		env = append(env, "SHOAL_STORE_ADDRESS="+m.store.Addr())
		if m.store.local != nil {
			env = append(env, "SHOAL_LOCAL_TASKS=1") // its plain tasks go to this agent (memberlocal.go)
		}
	}
	if m.cfg.Store != nil && m.cfg.Store.SessionDir != "" {
		env = append(env, runtimeEnvDir(m.cfg.Store.SessionDir)) // runtime_env.go
	}
	worker := s.Worker
	if m.store != nil && m.store.local != nil {
		m.store.local.spawned(worker, s.Env)
	}
	out := func() (io.Writer, io.Writer) { return m.workerOutput(worker) } // obs: lines to the head (observe.go)
	err := m.procs.start(spawnSpec{Worker: worker, Argv: s.Argv, Env: env, Cwd: s.Cwd, GPUs: s.GPUs, Output: out}, func(why, stderr string, oom bool) {
		if m.store != nil && m.store.local != nil {
			m.store.local.exited(worker)
		}
		m.conn.Send(wire.TWorkerExit, 0, &wire.WorkerExit{Worker: worker, Msg: why, Stderr: stderr, OOM: oom})
	})
	if errors.Is(err, errStopping) {
		m.conn.Send(wire.TWorkerExit, 0, &wire.WorkerExit{Worker: worker, Msg: "not started: node " + m.node + " is stopping"})
	} else if err != nil {
		m.conn.Send(wire.TWorkerExit, 0, &wire.WorkerExit{Worker: worker, Msg: "not started: " + err.Error()})
	}
}

// killAll ends every worker: SIGTERM, then SIGKILL to its process group after a grace period.
func (m *Member) killAll() { m.procs.stop(2 * time.Second) }
