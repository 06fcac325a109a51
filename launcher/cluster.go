// Package launcher turns an allocation into an ephemeral shoal cluster and back into nothing:
// it makes the cluster's id, secret and directories, starts the head and the node agent,
// runs the driver command with the cluster in its environment, forwards signals, and on exit
// removes every process, socket, directory and shared-memory file it made.
//
// Allocation lifecycle:
//
//	Start: id+secret ─> session dir (0700) ─> head (SQLite) ─> agent (shm arena, sockets)
//	Run:   driver ─> wait (signals forwarded) ─> exit code (128+sig when killed)
//	Close: workers killed ─> orphans reaped ─> shm, spill, sockets, session dir removed
package launcher

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/config"
	"github.com/shoal-hpc/shoal/head"
	"github.com/shoal-hpc/shoal/internal/privdir"
	"github.com/shoal-hpc/shoal/nodeagent"
	"github.com/shoal-hpc/shoal/nodeagent/confine"
	"github.com/shoal-hpc/shoal/nodeagent/fingerprint"
	"github.com/shoal-hpc/shoal/nodeagent/gpu"
	"github.com/shoal-hpc/shoal/nodeagent/obs"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// Options configure a one-node cluster. Zero values mean "detect" or the documented default.
type Options struct {
	NumCPUs           float64            // default: CPUs in this process's affinity (and cgroup quota)
	ZeroCPUs          bool               // NumCPUs 0 was asked for (--num-cpus 0): offer none, as Ray's num_cpus=0
	NumGPUs           float64            // default 0 until GPU discovery lands
	Memory            int64              // bytes; default: memory allowed by the cgroup
	ObjectStoreMemory int64              // bytes; default: 30% of Memory, at most /dev/shm's free space
	Resources         map[string]float64 // custom resources
	ShmRoot           string             // default /dev/shm
	TmpRoot           string             // default $SHOAL_TMPDIR or the system temp dir
	SpillDir          string             // default <session dir>/spill
	ListenTCP         string             // default 127.0.0.1:0
	ClusterID         string             // default random
	Secret            string             // default random
	Scrub             func([]string) []string
	Stdout, Stderr    *os.File
	// PortRange limits the agent's TCP port ("30000-30999"); empty: any.
	PortRange string
	// AllowedInterfaces are the interfaces agents may use between nodes: `shoal launch` binds
	// and announces an address of one of them (see bindAddr).
	AllowedInterfaces []string
	// SlurmGPUs, when set, are the GPU indices the Slurm job has on this node: NVML's devices
	// are narrowed to them, or, without NVML, they are offered as they are.
	SlurmGPUs []int
	// CUDAIndex maps SlurmGPUs to the indices CUDA sees in the step, where Slurm renumbered
	// them (cgroup ConstrainDevices); nil: the same.
	CUDAIndex map[int]int
	// Confinement is "auto" (default: confine workers' devices on GPU nodes where the agent
	// may), "on" (fail when it cannot) or "off".
	Confinement string
	// InsecureDataPlane moves objects and collectives between nodes in clear
	// (--insecure-data-plane); workers and drivers get SHOAL_INSECURE_DATA_PLANE=1.
	InsecureDataPlane bool
	// NoLocalTasks: every task goes through the head node's agent, none is run by the member
	// node whose worker submitted it (docs/architecture.md "Member-local scheduling").
	NoLocalTasks bool
	// MaxWorkersPerNode caps worker processes per node, actors included (0: the default,
	// max(64, 4 x CPUs)).
	MaxWorkersPerNode int
	// Labels are this node's labels for label selectors (--labels; docs/ray-tasks.md).
	Labels map[string]string
	// StateDir keeps the head's database (head.FileName: one file per cluster) after the
	// cluster ends (--state-dir); empty: the session directory, removed at exit.
	StateDir string
	// Kind (run, up, launch, yarn) and Command describe the cluster in its head's record.
	Kind    string
	Command []string
	// HeartbeatTimeout is how long a member node may stay silent before the head gives it up
	// (and a member its head); zero: nodeagent.DefaultHeartbeatTimeout, negative: no
	// heartbeats. Only the head's value counts: members take it from NODE_JOIN's answer.
	HeartbeatTimeout time.Duration
	// Observe: the recorder, dashboard and report (observe.go).
	Observe ObserveOptions
	// MemoryMonitorInterval: how often each node's memory monitor looks at workers whose
	// task asked for memory= (zero: nodeagent.DefaultMemoryMonitorInterval, negative: off).
	// Only the head's value counts: members take it from MEM_LIMIT.
	MemoryMonitorInterval time.Duration
}

// Cluster is a running one-node cluster.
type Cluster struct {
	ID     string
	Secret string
	Dir    string // session directory
	Addr   string // agent address for local clients
	log    hclog.Logger
	head   *head.Head
	agent  *nodeagent.Agent
	conf   *confine.Confiner
	sess   *privdir.Session
	// stateDB is the head's database when a state directory keeps it
	stateDB string
	// insecureDataPlane: objects and collectives between nodes go in clear
	insecureDataPlane bool
	// Shutdown is closed when a client asked the cluster to stop (shoal down).
	Shutdown chan struct{}
	rec      *obs.Recorder // nil: observability off
	dash     *obs.Server
}

// Info is what `shoal up` records about a cluster, in <session dir>/cluster.json (0600).
type Info struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	TCP     string `json:"tcp"`
	Secret  string `json:"secret"`
	PID     int    `json:"pid"`
	Dir     string `json:"dir"`
	// SlurmJob is the Slurm job the cluster belongs to (for `shoal admin epilog`).
	SlurmJob string `json:"slurm_job,omitempty"`
	// StoreDir is the object store's directory (under /dev/shm).
	StoreDir string `json:"store_dir,omitempty"`
	// StateDB is the head's database, when a state directory keeps it (--state-dir).
	StateDB string `json:"state_db,omitempty"`
	// Dashboard is where the head serves the dashboard and /metrics (the token is in the
	// session directory's dashboard.token).
	Dashboard string `json:"dashboard,omitempty"`
}

// BaseDir returns the per-user directory that holds session directories,
// <tmpRoot>/shoal-<uid>. It is private (internal/privdir): made once, never removed.
func BaseDir(tmpRoot string) string {
	return privdir.BasePath(tmpRootOf(tmpRoot))
}

func tmpRootOf(tmpRoot string) string {
	if tmpRoot == "" {
		tmpRoot = os.Getenv("SHOAL_TMPDIR")
	}
	if tmpRoot == "" {
		tmpRoot = os.TempDir()
	}
	return tmpRoot
}

// openSession makes this user's base directory under tmpRoot (unless it exists), removes what
// killed clusters left in it, and makes the session directory name.
func openSession(log hclog.Logger, tmpRoot, name string) (*privdir.Session, error) {
	root := tmpRootOf(tmpRoot)
	base, err := privdir.Base(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w; the temp directory %s must exist: create it, or set SHOAL_TMPDIR (--tmpdir) to one that does", err, root)
	}
	if err != nil {
		return nil, err
	}
	s, err := privdir.NewSession(log.Named("session"), base, name)
	if err != nil {
		return nil, fmt.Errorf("make the session directory: %w", err)
	}
	return s, nil
}

// validID says whether id is a cluster id: 12 lowercase hex digits (what NewID makes, and all
// the epilog accepts).
func validID(id string) bool {
	return len(id) == 12 && privdir.ValidSessionName(id)
}

// NewID returns a random cluster id.
func NewID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Start brings up a head and an agent on this machine.
func Start(log hclog.Logger, o Options) (*Cluster, error) {
	if o.ClusterID == "" {
		o.ClusterID = NewID()
	}
	if o.Secret == "" {
		o.Secret = wire.NewSecret()
	}
	if !validID(o.ClusterID) {
		return nil, fmt.Errorf("cluster id %q: a cluster id is 12 lowercase hex digits; leave it unset for a random one", o.ClusterID)
	}
	sess, err := openSession(log, o.TmpRoot, o.ClusterID)
	if err != nil {
		return nil, err
	}
	dir := sess.Path()
	c := &Cluster{ID: o.ClusterID, Secret: o.Secret, Dir: dir, log: log, sess: sess, Shutdown: make(chan struct{}),
		insecureDataPlane: o.InsecureDataPlane, rec: newRecorder(o.Observe, o.Stdout, o.Stderr)}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if err := sess.WriteFile("secret", []byte(o.Secret+"\n")); err != nil {
		return nil, fmt.Errorf("write cluster secret: %w", err)
	}
	res, storeBytes, shmDir, node, err := resources(log, o, c.ID)
	if err != nil {
		return nil, err
	}
	// noted before they exist, so that the next start removes them should this one be killed
	if err := sess.Note(shmDir); err != nil {
		return nil, err
	}
	topo, conf, majors, err := gpuSetup(log, &o, res)
	if err != nil {
		return nil, err
	}
	c.conf = conf
	h, err := openHead(log, c, o)
	if err != nil {
		return nil, err
	}
	c.head = h
	spill := o.SpillDir
	if spill == "" {
		spill = filepath.Join(dir, "spill")
	} else {
		// the objects store makes it (Mkdir, checked) before its /dev/shm directory shows the id
		spill = filepath.Join(spill, "shoal-"+c.ID)
		if err := sess.Note(spill); err != nil {
			return nil, err
		}
	}
	listen := o.ListenTCP
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if listen == "none" {
		listen = ""
	}
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	var once bool
	var portLo, portHi int
	if o.PortRange != "" {
		if portLo, portHi, err = config.ParsePortRange(o.PortRange); err != nil {
			return nil, fmt.Errorf("--port-range: %w", err)
		}
	}
	a, err := nodeagent.New(log.Named("agent"), h, nodeagent.Config{
		PortLo: portLo, PortHi: portHi,
		ClusterID: c.ID, Secret: c.Secret, NodeID: nodeID(), SessionDir: dir, StoreDir: shmDir,
		SpillDir: spill, Resources: res, ObjectStoreMemory: storeBytes, ListenTCP: listen,
		Scrub: o.Scrub, Stdout: stdout, Stderr: stderr, PrestartWorkers: int(min(res["CPU"], 4)),
		GPUs: topo, CUDAIndex: o.CUDAIndex, CPUs: node.CPUs, Confine: c.conf, GPUMajors: majors,
		InsecureDataPlane: o.InsecureDataPlane, WorkerEnv: dataPlaneEnv(o.InsecureDataPlane),
		MaxWorkersPerNode: o.MaxWorkersPerNode, Labels: o.Labels, NoLocalTasks: o.NoLocalTasks,
		Heartbeat:             nodeagent.Heartbeat{Timeout: o.HeartbeatTimeout},
		Observer:              c.rec,
		MemoryMonitorInterval: o.MemoryMonitorInterval,
		OnShutdown: func() {
			if !once {
				once = true
				close(c.Shutdown)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	c.agent = a
	if err := a.Start(); err != nil {
		return nil, err
	}
	c.Addr = a.Addr()
	if err := c.startDashboard(o.Observe); err != nil {
		return nil, err
	}
	if err := c.WriteInfo(); err != nil {
		return nil, fmt.Errorf("record the cluster: %w", err)
	}
	ok = true
	return c, nil
}

// openHead opens the cluster's head database: in the state directory when o names one (made
// 0700 when missing), else in the session directory, which Close removes.
func openHead(log hclog.Logger, c *Cluster, o Options) (*head.Head, error) {
	path := filepath.Join(c.Dir, "head.db")
	if o.StateDir != "" {
		dir, err := filepath.Abs(o.StateDir)
		if err != nil {
			return nil, fmt.Errorf("--state-dir %q: %w", o.StateDir, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("--state-dir: %w; give a directory you can write (it keeps the cluster's history)", err)
		}
		path = head.FileName(dir, c.ID)
		c.stateDB = path
	}
	kind := o.Kind
	if kind == "" {
		kind = "run"
	}
	h, err := head.Open(log.Named("head"), path, head.Cluster{ID: c.ID, Kind: kind, Node: nodeID(),
		Command: strings.Join(o.Command, " "), SlurmJob: os.Getenv("SLURM_JOB_ID")})
	if err != nil && o.StateDir != "" {
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	return h, err
}

func nodeID() string {
	if n := os.Getenv("SLURMD_NODENAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

// resources works out what the node offers and where the object store lives.
func resources(log hclog.Logger, o Options, id string) (sched.Resources, int64, string, *fingerprint.Node, error) {
	fp, err := fingerprint.Detect(log.Named("fingerprint"))
	if err != nil {
		return nil, 0, "", nil, fmt.Errorf("discover this node's resources: %w", err)
	}
	res := sched.Resources{}
	for k, v := range o.Resources {
		if v < 0 {
			return nil, 0, "", nil, fmt.Errorf("resource %q: amount %g must not be negative", k, v)
		}
		res[k] = v
	}
	cpus := o.NumCPUs
	if cpus <= 0 && !o.ZeroCPUs {
		cpus = fp.OfferCPUs()
	}
	res["CPU"] = cpus
	if o.NumGPUs > 0 {
		res["GPU"] = o.NumGPUs
	}
	mem := o.Memory
	if mem <= 0 {
		mem = int64(fp.MemoryBytes)
	}
	store := o.ObjectStoreMemory
	asked := store > 0
	if !asked {
		store = mem * 3 / 10
	}
	shmRoot := o.ShmRoot
	if shmRoot == "" {
		shmRoot = "/dev/shm"
	}
	if st, err := statfsFree(shmRoot); err != nil {
		fallback := filepath.Join(BaseDir(o.TmpRoot), id)
		log.Warn("shared memory directory is unusable; the object store falls back to a disk-backed directory (slower)",
			"shm", shmRoot, "fallback", fallback, "error", err)
		shmRoot = ""
	} else if store > st {
		smaller := st * 9 / 10
		if asked {
			log.Warn(fmt.Sprintf("%s has only %s free, less than the %s object store asked for; using %s, and objects beyond it spill to disk",
				shmRoot, human(st), human(store), human(smaller)), "shm", shmRoot)
		}
		store = smaller
	}
	if store < 1<<20 {
		store = 1 << 20
	}
	res["memory"] = float64(mem - store)
	if res["memory"] < 0 {
		res["memory"] = 0
	}
	res["object_store_memory"] = float64(store)
	dir := filepath.Join(shmRoot, "shoal-"+id)
	if shmRoot == "" {
		dir = filepath.Join(BaseDir(o.TmpRoot), id, "store")
	}
	return res, store, dir, fp, nil
}

func statfsFree(p string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return 0, err
	}
	if unix.Access(p, unix.W_OK) != nil {
		return 0, fmt.Errorf("%s is not writable", p)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

// Env returns the variables a driver needs to reach the cluster.
func (c *Cluster) Env() []string {
	return append([]string{"SHOAL_ADDRESS=" + c.Addr, "SHOAL_SECRET=" + c.Secret, "SHOAL_CLUSTER_ID=" + c.ID},
		dataPlaneEnv(c.insecureDataPlane)...)
}

// dataPlaneEnv tells workers and drivers (collective ranks) that the data plane is in clear,
// so that they agree with the agents.
func dataPlaneEnv(insecure bool) []string {
	if insecure {
		return []string{"SHOAL_INSECURE_DATA_PLANE=1"}
	}
	return nil
}

// Info describes the cluster.
func (c *Cluster) Info() Info {
	return Info{ID: c.ID, Address: c.Addr, TCP: c.agent.TCPAddr(), Secret: c.Secret, PID: os.Getpid(), Dir: c.Dir,
		SlurmJob: os.Getenv("SLURM_JOB_ID"), StoreDir: filepath.Dir(c.agent.ArenaPath()), StateDB: c.stateDB,
		Dashboard: c.DashboardURL()}
}

// WriteInfo records the cluster in its session directory for `shoal status` and `shoal down`
// (a new file renamed over the old one, never a file written in place).
func (c *Cluster) WriteInfo() error {
	b, _ := json.MarshalIndent(c.Info(), "", "  ")
	return c.sess.ReplaceFile("cluster.json", b)
}

// CommandExited records in the head's tables that the cluster's command (process pid) exited
// with code: the cluster's exit code, and the outcome of the job that process drove.
func (c *Cluster) CommandExited(pid, code int) { c.head.CommandExited(pid, code) }

// Agent returns the node agent.
func (c *Cluster) Agent() *nodeagent.Agent { return c.agent }

// Close stops the agent and the head and removes the session directory.
func (c *Cluster) Close() error {
	var errs []error
	if c.dash != nil {
		errs = append(errs, c.dash.Close())
	}
	if c.agent != nil {
		errs = append(errs, c.agent.Close())
	}
	if c.head != nil {
		errs = append(errs, c.head.Close())
		if c.stateDB != "" {
			c.log.Info("the cluster's history is kept", "file", c.stateDB, "list_with", "shoal history --state-dir "+filepath.Dir(c.stateDB))
		}
	}
	if c.conf != nil {
		errs = append(errs, c.conf.Close())
	}
	// the session directory goes, then its lock; the per-user base stays (see privdir)
	errs = append(errs, c.sess.Close())
	return errors.Join(errs...)
}

// Clusters lists the clusters of this user recorded under the base directory.
func Clusters(tmpRoot string) ([]Info, error) {
	base, err := privdir.Open(BaseDir(tmpRoot), privdir.BaseHint)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err // never read records from a directory another user could write
	}
	defer base.Close()
	names, err := base.Names()
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Info
	for _, name := range names {
		if !validID(name) {
			continue // members' stores (<id>-<node>) and anything else
		}
		d, err := base.Open(name)
		if err != nil {
			continue
		}
		// live: its process holds the session's lock (a pid could have been reused)
		if privdir.Live(d) {
			if b, err := d.ReadFile("cluster.json"); err == nil {
				var in Info
				if json.Unmarshal(b, &in) == nil {
					out = append(out, in)
				}
			}
		}
		d.Close()
	}
	return out, nil
}

// Find picks the cluster to talk to: the one with the given id, or the one in SHOAL_ADDRESS,
// or the only one running.
func Find(tmpRoot, id string) (Info, error) {
	if id == "" && os.Getenv("SHOAL_ADDRESS") != "" && os.Getenv("SHOAL_SECRET") != "" {
		return Info{ID: os.Getenv("SHOAL_CLUSTER_ID"), Address: os.Getenv("SHOAL_ADDRESS"), Secret: os.Getenv("SHOAL_SECRET")}, nil
	}
	cs, err := Clusters(tmpRoot)
	if err != nil {
		return Info{}, err
	}
	var ids []string
	for _, c := range cs {
		if id == "" || c.ID == id {
			return c, nil
		}
		ids = append(ids, c.ID)
	}
	if id != "" {
		return Info{}, fmt.Errorf("no running cluster with id %q (running: %s)", id, strings.Join(ids, ", "))
	}
	return Info{}, errors.New("no running shoal cluster found; start one with `shoal up` or set SHOAL_ADDRESS and SHOAL_SECRET")
}

// gpuSetup finds this node's GPUs (narrowed to Slurm's), offers them in res unless the user
// set the GPU count, and makes the device confiner when workers are to be confined ("auto": on
// GPU nodes where the agent may; "on": fail when it cannot). o.Confinement may be changed to
// "off" when no NVML means no device minors to confine to. Both the head node's agent and
// member agents use it.
func gpuSetup(log hclog.Logger, o *Options, res sched.Resources) (*gpu.Topology, *confine.Confiner, confine.Majors, error) {
	var majors confine.Majors
	topo, err := discoverGPUs(log)
	if err != nil {
		return nil, nil, majors, err
	}
	nvml := len(topo.Devices) > 0
	topo = narrowGPUs(topo, o.SlurmGPUs)
	if !nvml && (o.Confinement == "" || o.Confinement == "auto") {
		o.Confinement = "off" // indices from Slurm without NVML: no device minors to confine to
	}
	if o.NumGPUs <= 0 && len(topo.Devices) > 0 {
		res["GPU"] = float64(len(topo.Devices))
	}
	switch o.Confinement {
	case "", "auto", "on":
		if len(topo.Devices) == 0 && o.Confinement != "on" {
			return topo, nil, majors, nil
		}
		cf, err := confine.New(log.Named("confine"))
		if err != nil {
			if o.Confinement == "on" {
				return nil, nil, majors, fmt.Errorf("--gpu-confinement=on: %w", err)
			}
			return topo, nil, majors, nil // confine.New said why, once, at Warn
		}
		if f, err := os.Open("/proc/devices"); err == nil {
			majors, _ = confine.ReadMajors(f)
			f.Close()
		}
		return topo, cf, majors, nil
	case "off":
		return topo, nil, majors, nil
	default:
		return nil, nil, majors, fmt.Errorf("--gpu-confinement %q: use auto, on or off", o.Confinement)
	}
}
