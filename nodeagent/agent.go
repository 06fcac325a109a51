// Package nodeagent is the process that runs on every node of a shoal cluster: it accepts
// authenticated connections from drivers, workers and the CLI, runs the node's object store,
// starts and reuses worker processes, and schedules tasks, actors and placement-group bundles
// on the node's resources.
//
// Lifecycle of an agent:
//
//	New ──> Start (listeners up) ──> serving ──> Close (workers killed, sockets,
//	                                                    shm and spill files removed)
//
// All state lives under one mutex; sockets are written by each connection's own goroutine, so
// holding the lock never waits on a peer.
package nodeagent

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/head"
	"github.com/shoal-hpc/shoal/nodeagent/confine"
	"github.com/shoal-hpc/shoal/nodeagent/gpu"
	"github.com/shoal-hpc/shoal/nodeagent/objstore"
	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/rdma"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// Config configures an agent.
type Config struct {
	ClusterID  string
	Secret     string
	NodeID     string
	SessionDir string // sockets and logs; must exist, mode 0700
	StoreDir   string // /dev/shm/shoal-<cluster>
	SpillDir   string
	// Resources offered; CPU, memory and object_store_memory are filled by the caller.
	Resources sched.Resources
	// Labels are this node's labels for label selectors (--labels; docs/ray-tasks.md).
	Labels map[string]string
	// ObjectStoreMemory is the arena size in bytes.
	ObjectStoreMemory int64
	// ListenTCP, when set (e.g. "127.0.0.1:0"), also serves authenticated TCP.
	ListenTCP string
	// PortLo and PortHi, when set, confine the TCP port to that range.
	PortLo, PortHi int
	// WorkerEnv is added to every worker's environment.
	WorkerEnv []string
	// Scrub removes variables from workers' environments (e.g. Slurm rank variables).
	Scrub func([]string) []string
	// Stdout and Stderr receive the workers' output.
	Stdout, Stderr *os.File
	// PrestartWorkers is how many Python workers to start when a Python driver connects.
	PrestartWorkers int
	// OnShutdown is called (once, in its own goroutine) when a CLI asks the cluster to stop.
	OnShutdown func()
	// GPUs is what GPU discovery found; the agent places tasks on these GPUs. Nil: none.
	GPUs *gpu.Topology
	// CUDAIndex maps a GPU index to the index CUDA sees on this node where they differ
	// (Slurm's ConstrainDevices renumbers a step's GPUs); nil: the same.
	CUDAIndex map[int]int
	// CPUs are the CPUs the agent may use (its affinity), for pinning GPU workers.
	CPUs []int
	// Confine, when set, puts every worker in a cgroup whose device program admits only the
	// ordinary character devices, its GPUs and ExtraDevices.
	Confine      *confine.Confiner
	GPUMajors    confine.Majors
	ExtraDevices []confine.Rule
	// Transport moves object bytes between nodes (nil: TCP on the TCP listener's address).
	Transport rdma.Transport
	// InsecureDataPlane: that TCP moves object bytes in clear (default: inside TLS 1.3).
	InsecureDataPlane bool
	// MaxWorkersPerNode caps worker processes per node, actors included (0: max(64, 4 x the
	// node's CPUs)); see sched.Config.
	MaxWorkersPerNode int
	// NoLocalTasks: members do not run the plain tasks their own workers submit (local.go).
	NoLocalTasks bool
	// SendQueue bounds what each connection queues for its peer (zero: wire.DefaultLimits);
	// a client that does not read is disconnected past it (sendqueue.go).
	SendQueue wire.Limits
	// Heartbeat sets how members' liveness is checked (zero: DefaultHeartbeatTimeout and a
	// fifth of it as the period; heartbeat.go).
	Heartbeat Heartbeat
	// Observer records task events for the dashboard, metrics, timeline and report
	// (observe.go); nil: observability off.
	Observer *obs.Recorder
	// MemoryMonitorInterval is how often every node's memory monitor looks at workers whose
	// task asked for memory= (memmon.go); zero: DefaultMemoryMonitorInterval; negative: off.
	MemoryMonitorInterval time.Duration
}

// Agent is a node agent.
type Agent struct {
	cfg   Config
	log   hclog.Logger
	head  *head.Head
	store *objstore.Store

	lnUnix, lnTCP net.Listener
	gates         []*wire.Gate // one per listener: connections in their handshake
	sockPath      string
	wg            sync.WaitGroup

	logq     logQueries // members' LOG_PAGEs awaited (nodelogs.go)
	mu       sync.Mutex
	closed   bool
	nextConn uint64
	nextJob  int
	conns    map[uint64]*client
	jobs     map[string]*job
	workers  map[string]*worker
	tasks    map[wire.ID]*task
	depWait  map[wire.ID][]*task
	waiters  map[wire.ID][]*waiter
	actors   map[wire.ID]*actor
	pgs      map[wire.ID]*pgroup
	fns      map[wire.ID][]byte
	total    sched.Resources // this node's
	local    *node
	nodes    []*node // this node first, then members as they joined
	nodeCond *sync.Cond
	stopping bool
	shutOnce sync.Once
	xfer     *xfer                       // serves and pulls objects (objremote.go)
	live     *headLiveness               // members' heartbeats (heartbeat.go); nil: not checked
	procs    *spawner                    // starts this node's workers, as a member's does
	local2   localState                  // member-local scheduling (local.go)
	freeCPU  atomic.Uint64               // free CPUs of all nodes at the last look (local.go, lookFree), float64 bits
	holders  map[wire.ID]map[string]bool // nodes that may hold a copy of an object

	// the scheduling core (core.go) and the shell's maps from its ids
	core        *sched.Core
	coreTasks   map[sched.TaskID]*task
	coreWorkers map[sched.WorkerID]*worker
	coreJobs    map[sched.JobID]*job
	coreGroups  map[sched.GroupID]*pgroup
	byCID       []*node
	nextTask    uint64
	nextGroup   uint64
	started     time.Time
	quit        chan struct{} // closed by Close
}

// New creates an agent: the object store is made, nothing listens yet.
func New(log hclog.Logger, h *head.Head, cfg Config) (*Agent, error) {
	if cfg.Secret == "" || cfg.ClusterID == "" || cfg.SessionDir == "" {
		return nil, errors.New("[internal error] agent config needs a cluster id, a secret and a session directory")
	}
	st, err := objstore.New(log.Named("objstore"), cfg.StoreDir, cfg.SpillDir, cfg.ObjectStoreMemory)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, head: h, store: st,
		conns: map[uint64]*client{}, jobs: map[string]*job{}, workers: map[string]*worker{},
		tasks: map[wire.ID]*task{}, depWait: map[wire.ID][]*task{}, waiters: map[wire.ID][]*waiter{},
		actors: map[wire.ID]*actor{}, pgs: map[wire.ID]*pgroup{}, fns: map[wire.ID][]byte{},
		total: cfg.Resources.Clone(), coreJobs: map[sched.JobID]*job{}, quit: make(chan struct{})}
	a.local = &node{id: cfg.NodeID, total: a.total, alive: true, joined: time.Now(), cuda: cfg.CUDAIndex, topo: cfg.GPUs}
	if cfg.GPUs != nil {
		for _, d := range cfg.GPUs.Devices {
			a.local.gpus = append(a.local.gpus, d.Index)
		}
	}
	a.local.gpus = logicalGPUs(a.local.gpus, a.total) // taskfeatures.go
	a.local.labels = cfg.Labels
	a.nodes = []*node{a.local}
	a.procs = &spawner{log: log, scrub: cfg.Scrub, stdout: writer(cfg.Stdout), stderr: writer(cfg.Stderr), confine: cfg.Confine,
		topo: cfg.GPUs, cpus: cfg.CPUs, uvm: cfg.GPUMajors.UVM, extra: cfg.ExtraDevices}
	a.newCore()
	a.joinCore(a.local)
	st.OnFree = a.objFreed
	a.nodeCond = sync.NewCond(&a.mu)
	return a, nil
}

// Start opens the agent's Unix socket (and TCP listener when configured) and serves.
func (a *Agent) Start() error {
	a.startLiveness()
	a.sockPath = filepath.Join(a.cfg.SessionDir, "agent.sock")
	ln, err := net.Listen("unix", a.sockPath)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.sockPath, err)
	}
	os.Chmod(a.sockPath, 0o600)
	a.lnUnix = ln
	a.serve(ln, false)
	if a.cfg.ListenTCP != "" {
		tl, err := a.listenTCP()
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on tcp %s: %w", a.cfg.ListenTCP, err)
		}
		a.lnTCP = tl
		a.local.addr = a.TCPAddr()
		if err := a.serve(tl, true); err != nil {
			ln.Close()
			tl.Close()
			return err
		}
		if err := a.startXfer(); err != nil {
			ln.Close()
			tl.Close()
			return err
		}
	}
	if a.head != nil {
		a.head.NodeJoined(head.Node{ID: a.cfg.NodeID, Addr: a.TCPAddr(), Resources: a.total})
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.tick()
	}()
	a.log.Debug("agent serving", "socket", a.sockPath, "tcp", a.TCPAddr(), "resources", a.total.String())
	return nil
}

// listenTCP listens on ListenTCP, on the first free port of the configured range if any
// (starting at a random offset, so that agents of several jobs on a node spread out).
func (a *Agent) listenTCP() (net.Listener, error) {
	if a.cfg.PortLo == 0 {
		return net.Listen("tcp", a.cfg.ListenTCP)
	}
	host, _, err := net.SplitHostPort(a.cfg.ListenTCP)
	if err != nil {
		return nil, err
	}
	n := a.cfg.PortHi - a.cfg.PortLo + 1
	var off [2]byte
	rand.Read(off[:])
	start := int(off[0])<<8 | int(off[1])
	for i := 0; i < n; i++ {
		p := a.cfg.PortLo + (start+i)%n
		if ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p))); err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("no free TCP port in %d-%d; widen port_range in the shoal config", a.cfg.PortLo, a.cfg.PortHi)
}

// Addr returns the agent's local address ("unix:/path").
func (a *Agent) Addr() string { return "unix:" + a.sockPath }

// TCPAddr returns "tcp:host:port" or "".
func (a *Agent) TCPAddr() string {
	if a.lnTCP == nil {
		return ""
	}
	return "tcp:" + a.lnTCP.Addr().String()
}

// ArenaPath returns the object store's arena file.
func (a *Agent) ArenaPath() string { return a.store.ArenaPath() }

// serve accepts connections on ln; TCP ones run in TLS. At most wire.MaxPending of them are in
// their handshake at once (the oldest is dropped for a new one), so that connections which
// never authenticate cost a bounded amount and cannot keep real clients out.
func (a *Agent) serve(ln net.Listener, tcp bool) error {
	var conf *tls.Config
	if tcp {
		var err error
		if conf, err = wire.ServerTLS(); err != nil {
			return err
		}
	}
	gate := wire.NewGate(wire.MaxPending)
	a.gates = append(a.gates, gate)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			nc, err := wire.AcceptBackoff(ln, func(err error) {
				a.log.Warn("accept failed; waiting before the next", "error", err)
			})
			if err != nil {
				return
			}
			ticket := gate.Admit(nc)
			if conf != nil {
				nc = tls.Server(nc, conf)
			}
			go a.handshake(nc, tcp, ticket)
		}
	}()
	return nil
}

// Close stops the agent: listeners close, every worker process (and its process group) is
// killed and reaped, connections close, and the object store's files are removed.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	close(a.quit)
	ws := make([]*worker, 0, len(a.workers))
	for _, w := range a.workers {
		ws = append(ws, w)
	}
	conns := make([]*client, 0, len(a.conns))
	for _, c := range a.conns {
		conns = append(conns, c)
	}
	a.mu.Unlock()
	if a.lnUnix != nil {
		a.lnUnix.Close()
	}
	if a.lnTCP != nil {
		a.lnTCP.Close()
	}
	for _, g := range a.gates {
		g.Close()
	}
	if !a.stopping {
		a.StopMembers(1, "the head node's agent is closing")
	}
	local := ws[:0]
	for _, w := range ws {
		if w.node == nil || w.node.member == nil {
			local = append(local, w)
		}
	}
	ws = local
	// SIGTERM, a grace, SIGKILL, then every local worker reaped (its exit handled)
	a.procs.stop(2 * time.Second)
	for _, w := range ws {
		<-w.exited
	}
	for _, c := range conns {
		c.conn.Close()
	}
	a.stopLiveness()
	a.wg.Wait()
	a.closeXfer()
	os.Remove(a.sockPath)
	a.mu.Lock()
	err := a.store.Close()
	a.mu.Unlock()
	return err
}

// newID returns 8 random bytes for a client prefix.
func newPrefix() []byte {
	b := make([]byte, 8)
	rand.Read(b)
	return b
}

func (a *Agent) welcome(au *wire.Auth, tcp bool) (*wire.Welcome, error) {
	switch au.Role {
	case "driver", "worker", "cli", "member":
	default:
		return nil, fmt.Errorf("unknown client role %q; want driver, worker, cli or member", au.Role)
	}
	res := map[string]float64(a.total.Clone())
	w := &wire.Welcome{Node: a.cfg.NodeID, Client: newPrefix(), Arena: a.store.ArenaPath(),
		ArenaSize: a.store.Capacity(), Resources: res}
	if au.Role == "worker" {
		// a worker learns the node it runs on (get_runtime_context), a member's as the head's
		a.mu.Lock()
		if wk := a.workers[au.WorkerID]; wk != nil && wk.node != nil {
			w.Node = wk.node.id
			w.Resources = map[string]float64(wk.node.total.Clone())
		}
		a.mu.Unlock()
	}
	if tcp {
		// over TCP the client may be on another node: it cannot map the arena, and objects
		// travel inline
		w.Arena, w.ArenaSize = "", 0
	}
	return w, nil
}

func (a *Agent) handshake(nc net.Conn, tcp bool, ticket *wire.Ticket) {
	conn, au, err := wire.AcceptGated(nc, ticket, a.cfg.Secret, a.cfg.ClusterID, func(au *wire.Auth) (*wire.Welcome, error) { return a.welcome(au, tcp) })
	if err != nil {
		if errors.Is(err, wire.ErrAuth) {
			a.log.Warn("refused a connection", "remote", nc.RemoteAddr().String(), "error", err)
		} else {
			a.log.Debug("handshake failed", "error", err)
		}
		return
	}
	c := &client{conn: conn, role: au.Role, lang: au.Lang, pid: au.PID, remote: tcp, gone: make(chan struct{})}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		conn.Close()
		return
	}
	a.nextConn++
	c.id = a.nextConn
	a.conns[c.id] = c
	a.boundQueue(c)
	switch au.Role {
	case "worker":
		w := a.workers[au.WorkerID]
		if w == nil || w.client != nil {
			a.mu.Unlock()
			conn.SendError(0, "refused", fmt.Sprintf("unknown worker id %q", au.WorkerID))
			conn.Close()
			a.mu.Lock()
			delete(a.conns, c.id)
			a.mu.Unlock()
			return
		}
		w.client = c
		c.worker = w
		c.job = w.job
		a.workerReady(w)
	case "driver":
		j := a.newJob(c, au)
		c.job = j
	}
	a.mu.Unlock()
	a.readLoop(c)
}

func (a *Agent) readLoop(c *client) {
	for {
		f, err := c.conn.Read()
		if err != nil {
			if errors.Is(err, wire.ErrCorruptFrame) {
				a.log.Warn("closing a connection that sent a corrupt frame", "client", c.id, "role", c.role, "error", err)
				c.conn.SendError(0, "corrupt_frame", err.Error())
			}
			break
		}
		if err := a.handle(c, f); err != nil {
			code := errorCode(err) // taskfeatures.go
			if errors.Is(err, wire.ErrCorruptFrame) {
				code = "corrupt_frame"
				a.log.Warn("closing a connection that sent a corrupt frame", "client", c.id, "role", c.role, "error", err)
				c.conn.SendError(f.Seq, code, err.Error())
				break
			}
			c.conn.SendError(f.Seq, code, err.Error())
		}
	}
	a.disconnect(c)
}

func (a *Agent) disconnect(c *client) {
	c.conn.Close()
	defer close(c.gone)
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.conns, c.id)
	for id, ws := range a.waiters {
		keep := ws[:0]
		for _, w := range ws {
			if w.c != c {
				keep = append(keep, w)
			}
		}
		if len(keep) == 0 {
			delete(a.waiters, id)
		} else {
			a.waiters[id] = keep
		}
	}
	for _, id := range a.store.DropOwner(c.id) {
		a.unsealedGone(id) // created on c and never sealed (objects.go)
	}
	if w := c.worker; w != nil {
		a.localWorkerGone(w.id) // local.go
		a.localClientGone(c)
		w.connGone = true
		if !a.awaitExit(w) { // memmon.go: a memory-limited worker waits for its exit report
			why := "its connection closed"
			if w.exitWhy != "" {
				why = w.exitWhy // its process exited first (processExited)
			}
			a.workerLost(w, why)
		}
	}
	if c.role == "driver" && c.job != nil && c.job.driver == c {
		a.endJob(c.job, "driver disconnected")
	}
	if c.member != nil {
		a.memberLost(c.member)
	}
}

// handle dispatches one frame; the returned error is sent back as ERROR.
func (a *Agent) handle(c *client, f wire.Frame) error {
	switch f.Type {
	case wire.TPut:
		var m wire.Put
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(m.Data) > wire.InlineMax*2 && !c.remote {
			return fmt.Errorf("inline object of %d bytes is too large; objects over %d bytes go through CREATE", len(m.Data), wire.InlineMax)
		}
		owner := c.id
		if c.worker != nil && c.worker.owns(m.ID) {
			owner = 0
		}
		if err := a.storeBytes(m.ID, m.Fmt, m.Data, m.Refs, owner); err != nil {
			if errors.Is(err, objstore.ErrFull) {
				return c.conn.SendError(f.Seq, "store_full", err.Error())
			}
			return err
		}
		return nil
	case wire.TCreate:
		var m wire.Create
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		owner := c.id
		if c.worker != nil && c.worker.owns(m.ID) {
			owner = 0 // a task's return value: its submitter holds the reference
		}
		o, err := a.store.Create(m.ID, m.Fmt, m.Size, m.Refs, owner, c.id)
		if err != nil {
			if errors.Is(err, objstore.ErrFull) {
				return c.conn.SendError(f.Seq, "store_full", err.Error())
			}
			return err
		}
		return c.conn.Send(wire.TOK, f.Seq, &wire.CreateReply{Path: o.Path, Offset: o.Offset})
	case wire.TSeal:
		var m wire.One
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.seal(m.ID, c.id)
	case wire.TGet:
		var m wire.Get
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.get(c, f.Seq, m.IDs, m.TimeoutMS, -1)
		return nil
	case wire.TWait:
		var m wire.Wait
		if err := f.Decode(&m); err != nil {
			return err
		}
		if m.Num < 0 || m.Num > len(m.IDs) {
			return fmt.Errorf("wait for %d of %d objects: num_returns must be between 0 and the number of refs", m.Num, len(m.IDs))
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.get(c, f.Seq, m.IDs, m.TimeoutMS, m.Num)
		return nil
	case wire.TDecref, wire.TIncref, wire.TRelease:
		var m wire.IDs
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, id := range m.IDs {
			switch f.Type {
			case wire.TDecref:
				a.store.Decref(id, c.id)
			case wire.TIncref:
				a.store.Incref(id, c.id)
			default:
				a.store.Release(id, c.id)
			}
		}
		return nil
	case wire.TSubmit:
		var m wire.Task
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := a.submit(c, &m); err != nil {
			if errors.Is(err, head.ErrNameTaken) {
				return c.conn.SendError(f.Seq, "name_taken", err.Error())
			}
			return err
		}
		if f.Seq != 0 {
			return c.conn.Send(wire.TOK, f.Seq, nil)
		}
		return nil
	case wire.TGenItem:
		var m wire.GenItem
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.genItem(c, &m) // taskfeatures.go
	case wire.TDone:
		var m wire.Done
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.done(c, &m)
	case wire.TActorExit:
		var m wire.ActorExit
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.actorExit(c, &m) // actors.go
	case wire.TKill:
		var m wire.Kill
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := a.killActor(m.Actor, m.NoRestart, "The actor is dead because it was killed by `ray.kill` (shoal.kill)"); err != nil {
			return err
		}
		return c.conn.Send(wire.TOK, f.Seq, nil)
	case wire.TGetActor:
		var m wire.GetActor
		if err := f.Decode(&m); err != nil {
			return err
		}
		return a.getActor(c, f.Seq, &m)
	case wire.TCancel:
		var m wire.Cancel
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := a.cancel(c, &m); err != nil {
			return err
		}
		if f.Seq != 0 {
			return c.conn.Send(wire.TOK, f.Seq, nil)
		}
		return nil
	case wire.TInfo:
		a.mu.Lock()
		defer a.mu.Unlock()
		return c.conn.Send(wire.TOK, f.Seq, a.info())
	case wire.TPGCreate:
		var m wire.PGCreate
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := a.createPG(c, &m); err != nil {
			return err
		}
		return c.conn.Send(wire.TOK, f.Seq, nil)
	case wire.TPGRemove:
		var m wire.One
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := a.removePG(m.ID); err != nil {
			return err
		}
		return c.conn.Send(wire.TOK, f.Seq, nil)
	case wire.TNodeJoin:
		var m wire.NodeJoin
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := a.nodeJoin(c, &m); err != nil {
			return err
		}
		err := c.conn.Send(wire.TOK, f.Seq, a.joinReply())
		a.logJoined(c) // obs: its ring's bound and the drivers (nodelogs.go)
		return err
	case wire.THeartbeat:
		return a.heartbeat(c, f)
	case wire.TWorkerExit:
		var m wire.WorkerExit
		if err := f.Decode(&m); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if c.member != nil {
			a.remoteWorkerExited(c, &m)
		}
		return nil
	case wire.TExpect, wire.TLeaseRequest, wire.TLocalDone, wire.TLocalSpill, wire.TBlock: // member-local scheduling (local.go)
		return a.handleLocal(c, f)
	case wire.TFetch, wire.TPutAt, wire.TNodeStore:
		return a.handleObjXfer(c, f)
	case wire.TPutPart, wire.TReadPart:
		return a.handleParts(c, f) // remote_driver.go
	case wire.TKVPut, wire.TKVGet, wire.TKVDelete:
		return a.handleKV(c, f)
	case wire.TState:
		return a.headState(c, f.Seq)
	case wire.TStateList: // the state API (statelist.go)
		var m wire.StateList
		if err := f.Decode(&m); err != nil {
			return err
		}
		return a.stateList(c, f.Seq, &m)
	case wire.TContext:
		return a.connContext(c, f.Seq)
	case wire.TObserve, wire.TLog, wire.TCollStats, wire.TLogPage: // obs: observe.go
		return a.handleObserve(c, f)
	case wire.TShutdown:
		if c.role != "cli" {
			return errors.New("only a CLI connection (shoal down) may shut the cluster down")
		}
		c.conn.Send(wire.TOK, f.Seq, nil)
		a.shutOnce.Do(func() {
			if a.cfg.OnShutdown != nil {
				go a.cfg.OnShutdown()
			}
		})
		return nil
	}
	return fmt.Errorf("%w: unknown message type %d", wire.ErrCorruptFrame, f.Type)
}

func (a *Agent) info() *wire.InfoReply {
	r := &wire.InfoReply{Cluster: a.cfg.ClusterID, Objects: a.store.Stats(), Workers: len(a.workers), Jobs: len(a.jobs)}
	for _, ac := range a.actors {
		if ac.state != actorDead {
			r.Actors++
		}
	}
	r.Nodes = nil
	total, avail := sched.Resources{}, sched.Resources{}
	for _, n := range a.nodes {
		av := map[string]float64{}
		if n.alive {
			for k, v := range a.core.Avail(n.cid) {
				av[k] = max(v, 0)
			}
		}
		gpus := TopologyToWire(n.topo)
		if gpus == nil {
			for _, i := range n.gpus {
				gpus = append(gpus, wire.GPU{Index: i, NUMANode: -1})
			}
		}
		r.Nodes = append(r.Nodes, wire.NodeInfo{ID: n.id, Addr: n.addr, Alive: n.alive, Total: n.total, Available: av, GPUs: gpus,
			Labels: nodeLabels(n), IP: a.nodeIP(n)}) // taskfeatures.go, statelist.go
		if n.alive {
			total.Add(n.total)
			avail.Add(av)
		}
	}
	r.Total, r.Available = total, avail
	return r
}

// Stats returns the object store's figures (for tests and `shoal status`).
func (a *Agent) Stats() wire.StoreStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.store.Stats()
}

// WorkerPIDs lists the worker processes' pids.
func (a *Agent) WorkerPIDs() []int {
	return a.procs.pids()
}
