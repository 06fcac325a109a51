package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/internal/privdir"
	"github.com/shoal-hpc/shoal/nodeagent"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/slurm"
)

// Launch lifecycle, run once per node of a Slurm allocation (by srun, or by the batch script
// on the first node, which then starts the others with srun itself):
//
//	first node:  Start cluster ─> write rendezvous (0600) ─> wait for N-1 members (progress,
//	             time-out naming the missing nodes) ─> run CMD ─> STOP{exit code} to members
//	             ─> teardown ─> exit with CMD's code
//	other nodes: wait for the rendezvous ─> join as a member ─> run workers ─> STOP ─> exit
//	             with the same code

// LaunchOptions configure Launch.
type LaunchOptions struct {
	Options
	// RendezvousDir holds the head's address and secret for the other nodes: a directory the
	// job's nodes share (default $HOME/.shoal/launch), mode 0700, files 0600.
	RendezvousDir string
	// RendezvousKey names this launch; default <job id>.<step id>.
	RendezvousKey string
	// JoinTimeout bounds the wait for the other nodes (default 2 minutes).
	JoinTimeout time.Duration
	// Progress receives progress lines (default stderr).
	Progress io.Writer
	// Self is the shoal executable, for starting members with srun from a batch script.
	Self string
	// ExtraArgs are passed on to members started with srun (the cluster flags).
	ExtraArgs []string
	// Member makes this node join as a member even when it is first in its step's node list
	// (the batch-script mode starts each heterogeneous component's agents in a step of their
	// own).
	Member bool
}

type rendezvous struct {
	Cluster string `json:"cluster"`
	Head    string `json:"head"`
	Addr    string `json:"addr"`
	Secret  string `json:"secret"`
	PID     int    `json:"pid"`
}

// Launch turns this node's share of a Slurm allocation into (part of) a cluster.
func Launch(ctx context.Context, log hclog.Logger, o LaunchOptions, env *slurm.Env, argv []string) (int, error) {
	me := env.NodeName()
	if me == "" {
		return 1, errors.New("SLURMD_NODENAME is not set: run `shoal launch` inside a Slurm job (sbatch/salloc, or under srun)")
	}
	nodes := env.Nodes()
	if len(nodes) == 0 {
		return 1, errors.New("the job's node list (SLURM_JOB_NODELIST) is empty")
	}
	if o.JoinTimeout <= 0 {
		o.JoinTimeout = 2 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = os.Stderr
	}
	if o.RendezvousDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return 1, fmt.Errorf("find a rendezvous directory: %w; set --rendezvous-dir to a directory all nodes of the job share", err)
		}
		o.RendezvousDir = filepath.Join(home, ".shoal", "launch")
	}
	// The batch script has SLURM_PROCID=0 too; only srun steps set SLURM_STEP_ID.
	inStep := env.StepID != ""
	if o.RendezvousKey == "" {
		step := env.StepID
		if step == "" || !inStep {
			step = "batch-" + NewID()
		}
		o.RendezvousKey = env.JobID + "." + step
	}
	// Slurm's per-node share of the allocation, not the whole machine
	if o.NumCPUs <= 0 {
		if n := env.CPUsOnThisNode(); n > 0 {
			o.NumCPUs = float64(n)
		}
	}
	if o.Memory <= 0 {
		if m := env.MemoryBytesOnThisNode(); m > 0 {
			o.Memory = int64(m)
		}
	}
	if o.Scrub == nil {
		o.Scrub = slurm.Scrub
	}
	if g := env.GPUs(); len(g) > 0 {
		o.SlurmGPUs = g // the job's GPUs on this node, not all of the machine's
		o.CUDAIndex = env.CUDAIndex()
	}
	file := filepath.Join(o.RendezvousDir, o.RendezvousKey+".json")
	if me != nodes[0] || o.Member {
		if !inStep {
			return 1, fmt.Errorf("`shoal launch` outside srun must run on the job's first node (%s), not on %s", nodes[0], me)
		}
		return launchMember(ctx, log, o, me, file)
	}
	var others []string
	for _, n := range nodes[1:] {
		if n != me {
			others = append(others, n)
		}
	}
	if !inStep && len(others) > 0 {
		// one srun per component of a heterogeneous job (a step spans components only with
		// --het-group, and -N/-n count per component); one for an ordinary job
		groups := map[int][]string{}
		var order []int
		for _, n := range others {
			g := env.HetGroupOf(n)
			if _, ok := groups[g]; !ok {
				order = append(order, g)
			}
			groups[g] = append(groups[g], n)
		}
		for _, g := range order {
			srun, err := startMembers(o, groups[g], g)
			if err != nil {
				return 1, err
			}
			defer func() {
				srun.Process.Signal(syscall.SIGTERM)
				srun.Wait()
			}()
		}
	}
	step := ""
	if inStep {
		step = env.StepID // a lost member's task is in the head's own step (endlost.go)
	}
	return launchHead(ctx, log, o, me, others, file, argv, env.JobID, step)
}

// startMembers runs `shoal launch` on the other nodes with srun, from the batch script: the
// batch step's environment leaks into nested steps, so -N, -n and --ntasks-per-node are
// explicit, and --overlap lets the step share the batch step's resources. hetGroup >= 0 names
// the heterogeneous job component the nodes belong to.
func startMembers(o LaunchOptions, others []string, hetGroup int) (*exec.Cmd, error) {
	self := o.Self
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	n := fmt.Sprint(len(others))
	args := []string{"--overlap", "-N", n, "-n", n, "--ntasks-per-node=1", "--nodelist=" + strings.Join(others, ","),
		"--kill-on-bad-exit=0"}
	if hetGroup >= 0 {
		args = append(args, fmt.Sprintf("--het-group=%d", hetGroup))
	}
	args = append(args, self, "launch", "--member", "--rendezvous-dir", o.RendezvousDir, "--rendezvous-key", o.RendezvousKey)
	args = append(args, o.ExtraArgs...)
	cmd := exec.Command("srun", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the other nodes' agents with srun: %w", err)
	}
	return cmd, nil
}

// bindAddr is the address this node's agent listens at and announces to the others: the
// address the node's name resolves to, or, when the admin allows only some interfaces
// (allowed_interfaces, --allowed-interfaces), that address if it is on one of them, else the
// first IPv4 address of the first allowed interface that has one.
func bindAddr(name string, allowed []string) (string, error) {
	resolved := nodeAddr(name)
	if len(allowed) == 0 {
		return resolved, nil
	}
	var first string
	for _, ifname := range allowed {
		ifc, err := net.InterfaceByName(strings.TrimSpace(ifname))
		if err != nil {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			if ipn.IP.String() == resolved {
				return resolved, nil
			}
			if first == "" {
				first = ipn.IP.String()
			}
		}
	}
	if first == "" {
		return "", fmt.Errorf("none of the allowed interfaces (%s) has an IPv4 address on node %s; fix allowed_interfaces in the shoal config (shoal config show) or --allowed-interfaces",
			strings.Join(allowed, ","), name)
	}
	return first, nil
}

// nodeAddr is the address other nodes reach name at.
func nodeAddr(name string) string {
	if ips, err := net.LookupIP(name); err == nil {
		for _, ip := range ips {
			if v4 := ip.To4(); v4 != nil && !v4.IsLoopback() {
				return v4.String()
			}
		}
	}
	return "0.0.0.0"
}

func launchHead(ctx context.Context, log hclog.Logger, o LaunchOptions, me string, others []string, file string, argv []string, job, step string) (int, error) {
	if len(argv) == 0 {
		return 2, errors.New("no command to run; usage: shoal launch [options] -- CMD ARGS...")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 127, fmt.Errorf("run %q: %w", argv[0], err)
	}
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	if o.ListenTCP == "" {
		addr, err := bindAddr(me, o.AllowedInterfaces)
		if err != nil {
			return 1, err
		}
		o.ListenTCP = net.JoinHostPort(addr, "0")
	}
	o.Kind, o.Command = "launch", argv
	c, err := Start(log, o.Options)
	if err != nil {
		return 1, err
	}
	stopped := false
	var lost []string
	code := 1
	defer func() { // last, after the teardown below: ending a task may end the whole step
		hb := o.HeartbeatTimeout // an agent cut off gives its head up after this
		if hb <= 0 {
			hb = nodeagent.DefaultHeartbeatTimeout
		}
		endLostTasks(ctx, log, o.Progress, job, step, lost, hb, code)
	}()
	defer func() {
		os.Remove(file) // first: Slurm's SIGKILL may follow its SIGTERM within KillWait
		if !stopped {
			c.Agent().StopMembers(1, "the head node failed")
		}
		c.Close()
		reapOrphans(log)
	}()
	if err := writeRendezvous(file, rendezvous{Cluster: c.ID, Head: me, Addr: c.Agent().TCPAddr(), Secret: c.Secret, PID: os.Getpid()}); err != nil {
		return 1, err
	}
	if len(others) > 0 {
		missing := c.Agent().WaitNodes(others, o.JoinTimeout, func(joined, missing []string) {
			if len(missing) > 0 {
				fmt.Fprintf(o.Progress, "shoal: %d/%d nodes joined, waiting for %s\n", len(joined)+1, len(others)+1, strings.Join(missing, ","))
			} else {
				fmt.Fprintf(o.Progress, "shoal: %d/%d nodes joined\n", len(joined)+1, len(others)+1)
			}
		})
		if len(missing) > 0 {
			return 1, fmt.Errorf("timed out after %s waiting for node(s) %s to join; is `shoal launch` running there (srun -N%d --ntasks-per-node=1 shoal launch ...), and can they reach %s?",
				o.JoinTimeout, strings.Join(missing, ","), len(others)+1, c.Agent().TCPAddr())
		}
	}
	// Every node has joined: nobody reads the rendezvous file again. Removing it now, not at
	// teardown, means a head that Slurm SIGKILLs after KillWait leaves no file behind.
	os.Remove(file)
	code, err = runDriver(ctx, log, c, path, argv)
	lost = lostNodes(others, c.Agent().Nodes())                                 // before STOP: members that leave on it are not lost
	if rerr := c.WriteReport(os.Stderr, o.Observe); rerr != nil && err == nil { // before the members leave
		log.Error("end-of-job report", "error", rerr)
	}
	c.Agent().StopMembers(code, "the driver exited")
	stopped = true
	return code, err
}

// cudaList is, for each of gpus, the index CUDA sees (m's value), or nil when m is nil.
func cudaList(gpus []int, m map[int]int) []int {
	if m == nil {
		return nil
	}
	out := make([]int, len(gpus))
	for i, g := range gpus {
		out[i] = g
		if c, ok := m[g]; ok {
			out[i] = c
		}
	}
	return out
}

const rendezvousHint = "remove it, or set --rendezvous-dir (SHOAL_RENDEZVOUS_DIR) to a directory of your own that all nodes of the job share"

// writeRendezvous writes the rendezvous file (the head's address and the secret) into its
// directory, a private one (internal/privdir; made when missing, and so is $HOME/.shoal for the
// default), as a new file renamed into place.
func writeRendezvous(file string, r rendezvous) error {
	dir := filepath.Dir(file)
	d, err := privdir.Make(dir, rendezvousHint)
	if errors.Is(err, fs.ErrNotExist) {
		if home, herr := os.UserHomeDir(); herr == nil && filepath.Dir(dir) == filepath.Join(home, ".shoal") {
			var p *privdir.Dir
			if p, err = privdir.Make(filepath.Dir(dir), rendezvousHint); err == nil {
				d, err = p.Make(filepath.Base(dir))
				p.Close()
			}
		}
	}
	if err != nil {
		return fmt.Errorf("make the rendezvous directory: %w", err)
	}
	defer d.Close()
	b, _ := json.Marshal(r)
	if err := d.ReplaceFile(filepath.Base(file), b); err != nil {
		return fmt.Errorf("write the rendezvous file: %w", err)
	}
	return nil
}

// readRendezvous reads the rendezvous file, only from a private directory (another user's
// file there could send this node to a head of their own); an error wrapping
// privdir.ErrNotPrivate is final, others mean "not yet".
func readRendezvous(file string) ([]byte, error) {
	d, err := privdir.Open(filepath.Dir(file), rendezvousHint)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadFile(filepath.Base(file))
}

// writeMemberRecord records a member agent in its store's session directory, for the epilog
// and for the next start of this user should the agent be killed.
func writeMemberRecord(sessionDir string, in Info) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	d, err := privdir.Open(sessionDir, privdir.BaseHint)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.ReplaceFile("member.json", b)
}

func launchMember(ctx context.Context, log hclog.Logger, o LaunchOptions, me, file string) (int, error) {
	deadline := time.Now().Add(o.JoinTimeout)
	// this user's base directory (the member's session directory goes in it) is checked
	// before the wait: one squatted by another user fails every node at once, naming it,
	// and not only the first node while the others wait for a head that never starts
	if b, err := privdir.Base(tmpRootOf(o.TmpRoot)); err == nil {
		b.Close()
	} else if errors.Is(err, privdir.ErrNotPrivate) {
		return 1, err
	}
	var r rendezvous
	for {
		b, err := readRendezvous(file)
		if err == nil && json.Unmarshal(b, &r) == nil && r.Addr != "" {
			break
		}
		if errors.Is(err, privdir.ErrNotPrivate) {
			return 1, err
		}
		if time.Now().After(deadline) {
			return 1, fmt.Errorf("timed out after %s waiting for the first node to start the cluster (no %s); is `shoal launch` running on the job's first node, and is %s shared between the nodes?",
				o.JoinTimeout, file, o.RendezvousDir)
		}
		select {
		case <-ctx.Done():
			return 1, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	code, sig, err := RunMember(ctx, log, o.Options, MemberSpec{Cluster: r.Cluster, HeadAddr: r.Addr, Secret: r.Secret, Node: me,
		SlurmJob: os.Getenv("SLURM_JOB_ID")}, deadline, 100*time.Millisecond)
	if sig != nil {
		return 128 + int(sig.(syscall.Signal)), nil
	}
	return code, err
}

// MemberSpec names the cluster a member joins and the node it offers.
type MemberSpec struct {
	Cluster, HeadAddr, Secret string
	Node                      string // this node's name in the cluster (SLURMD_NODENAME, a YARN container id)
	Addr                      string // its address for `shoal status`; empty: the node name's, on an allowed interface
	SlurmJob                  string // for the epilog's record
	// Joined, when set, is called once the head has taken the node in (YARN logs it).
	Joined func(offer sched.Resources, gpus []int)
}

// RunMember is the one way a node other than the head's joins a cluster, whatever allocated it
// (a Slurm step, a YARN container): it discovers the node's resources within o (CPUs, memory,
// GPUs through NVML or Slurm's indices), makes the node's object store, confines its workers'
// devices where it may, joins the head (retrying every `every` until deadline) and serves until
// the head says STOP (its driver's code), the head goes away, or a signal arrives (returned, so
// the caller exits 128+signal).
func RunMember(ctx context.Context, log hclog.Logger, o Options, spec MemberSpec, deadline time.Time, every time.Duration) (int, os.Signal, error) {
	me := spec.Node
	// the node's own object store: every name holds the node's, since the network namespaces
	// of one machine (the test cluster) share /dev/shm and /tmp
	storeID := spec.Cluster + "-" + me
	res, storeBytes, shmDir, fp, err := resources(log, o, storeID)
	if err != nil {
		return 1, nil, err
	}
	store := &nodeagent.StoreConfig{ClusterID: spec.Cluster, Dir: shmDir, Memory: storeBytes, InsecureDataPlane: o.InsecureDataPlane,
		SessionDir: filepath.Join(BaseDir(o.TmpRoot), storeID)}
	addr := spec.Addr
	if addr == "" {
		if addr, err = bindAddr(me, o.AllowedInterfaces); err != nil {
			return 1, nil, err
		}
	}
	// GPUs as the head node sees its own: NVML topology narrowed to Slurm's, confinement where
	// this agent may; without NVML, Slurm's indices as they are.
	topo, conf, majors, err := gpuSetup(log, &o, res)
	if err != nil {
		return 1, nil, err
	}
	if conf != nil {
		defer conf.Close()
	}
	gpus := o.SlurmGPUs
	if len(topo.Devices) > 0 {
		gpus = nil
		for _, d := range topo.Devices {
			gpus = append(gpus, d.Index)
		}
	}
	offer := sched.Resources{}
	for k, v := range res {
		if k != "GPU" { // GPUs go by index
			offer[k] = v
		}
	}
	// signals from here on: a SIGTERM while joining must still remove this node's store
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	m, sig, err := nodeagent.JoinRetry(ctx, log.Named("member"), nodeagent.MemberConfig{HeadAddr: spec.HeadAddr, Secret: spec.Secret, Node: me,
		Addr: addr, Resources: offer, GPUs: gpus, CUDA: cudaList(gpus, o.CUDAIndex), Scrub: o.Scrub,
		Topology: topo, Confine: conf, UVMMajor: majors.UVM, CPUs: fp.CPUs, Store: store, Labels: o.Labels}, deadline, every, sigs)
	if sig != nil || err != nil {
		return 1, sig, err
	}
	if spec.Joined != nil {
		spec.Joined(offer, gpus)
	}
	// for `shoal admin epilog`, should this agent be killed before it removes its store
	if err := writeMemberRecord(store.SessionDir, Info{ID: spec.Cluster, PID: os.Getpid(), Dir: store.SessionDir, StoreDir: shmDir,
		SlurmJob: spec.SlurmJob}); err != nil {
		log.Warn("record this member for the epilog", "error", err)
	}
	// a preemption's first SIGTERM is held (preempt.go): Slurm requeues the job only if it is
	// still running at the end of the grace time
	return m.Serve(ctx, preemptHold(log, sigs))
}
