package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoal-hpc/shoal/head"
	"github.com/shoal-hpc/shoal/nodeagent/gpu"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// Nodes of a cluster. The head node's agent (this one) schedules for every node. Another node
// runs a member agent (Member), which joins over TCP, offers its node's resources, and starts
// and stops worker processes when told to; those workers connect straight to this agent over
// TCP, and since they cannot map this node's store, objects reach them inline.
//
//	member ──NODE_JOIN──> head agent ──SPAWN──> member ──exec──> worker ──TCP──> head agent
//	member <──KILL_WORKER / STOP──           member ──WORKER_EXIT──> head agent
type node struct {
	id     string
	cid    sched.NodeID // its id in the core
	addr   string
	loc    string // where its agent serves object transfers (NODE_STORE)
	total  sched.Resources
	member *client // nil for this node
	alive  bool
	joined time.Time
	// gpus are the GPU indices the node offers (CUDA_VISIBLE_DEVICES values)
	gpus []int
	// labels are the node's labels (--labels), for label selectors
	labels map[string]string
	// cuda maps a GPU index to the index CUDA sees on the node, where they differ (Slurm's
	// ConstrainDevices); nil: the same.
	cuda map[int]int
	// topo is the node's GPU topology where known (NVML here, or a member's NODE_JOIN); nil:
	// its GPUs are plain indices.
	topo *gpu.Topology
	// lostWhy, when set before memberLost, says why the node is lost (heartbeat.go); empty:
	// its agent's connection closed.
	lostWhy string
	// freeCPU is its free CPUs at the head's last look (local.go, lookFree), float64 bits
	freeCPU atomic.Uint64
	// freeWas is the free CPUs on the other nodes at the look before (lookFree; a.mu held)
	freeWas float64
}

// workerEnv is what every worker of j needs to reach this agent from node nd. The secret is
// in it only for a worker of this node: a member's worker gets it from its member agent, which
// has its own copy, so it never travels in SPAWN (docs/security.md).
func (a *Agent) workerEnv(j *job, id string, nd *node) []string {
	addr := a.Addr()
	if nd.member != nil {
		addr = a.TCPAddr()
	}
	env := append([]string{}, a.cfg.WorkerEnv...)
	env = append(env, "SHOAL_ADDRESS="+addr, "SHOAL_WORKER_ID="+id,
		"SHOAL_JOB_ID="+j.id, "SHOAL_CLUSTER_ID="+a.cfg.ClusterID, "SHOAL_NODE_ID="+nd.id, "SHOAL_NAMESPACE="+j.ns)
	if nd.member == nil {
		env = append(env, "SHOAL_SECRET="+a.cfg.Secret, runtimeEnvDir(a.cfg.SessionDir)) // runtime_env.go
		if a.cfg.Observer == nil {
			// observability off: this node's workers write straight to the cluster's stdout
			// and stderr, where no one takes task markers out (observe.go, workerOutput)
			env = append(env, "SHOAL_TASK_MARKERS=0")
		}
	}
	if j.lang == "python" {
		var p []string
		for _, e := range j.path {
			if e != "" && !strings.HasSuffix(e, ".zip") {
				p = append(p, e)
			}
		}
		env = append(env, "PYTHONPATH="+strings.Join(p, string(filepath.ListSeparator)))
	}
	return env
}

func workerArgv(j *job) []string {
	if j.lang == "python" {
		return []string{j.exe, "-u", "-m", "shoal._worker"}
	}
	return []string{j.exe}
}

// remoteWorkerExited handles WORKER_EXIT from a member.
func (a *Agent) remoteWorkerExited(c *client, m *wire.WorkerExit) {
	w := a.workers[m.Worker]
	if w == nil || w.node != c.member {
		return
	}
	if w.client == nil && m.Stderr != "" {
		w.errTail = &tailBuf{max: 2048}
		w.errTail.Write([]byte(m.Stderr))
	}
	w.oom = m.OOM // memmon.go
	a.endRemoteWorker(w, "worker process on "+w.node.id+" "+m.Msg)
}

func (a *Agent) endRemoteWorker(w *worker, why string) {
	select {
	case <-w.exited:
		return
	default:
	}
	close(w.exited)
	a.processExited(w, why)
	delete(a.workers, w.id)
	delete(w.job.workers, w.id)
}

// nodeJoin handles NODE_JOIN: a member offers its node.
func (a *Agent) nodeJoin(c *client, m *wire.NodeJoin) error {
	if c.role != "member" {
		return fmt.Errorf("NODE_JOIN from a %s connection; only member agents join", c.role)
	}
	if m.Node == "" || m.Node == a.cfg.NodeID {
		return fmt.Errorf("node name %q is empty or the head node's own; give every node its own name (SLURMD_NODENAME)", m.Node)
	}
	for _, n := range a.nodes {
		if n.id == m.Node && n.alive {
			return fmt.Errorf("node %s has already joined this cluster", m.Node)
		}
	}
	res := sched.Resources{}
	for k, v := range m.Resources {
		if v > 0 {
			res[k] = v
		}
	}
	n := &node{id: m.Node, addr: m.Addr, total: res, member: c, alive: true, joined: time.Now(),
		gpus: append([]int(nil), m.GPUs...), labels: m.Labels}
	n.gpus = logicalGPUs(n.gpus, res) // taskfeatures.go
	if len(m.Devices) > 0 {
		n.topo = topologyFromWire(m.Devices)
	}
	if len(m.CUDA) == len(m.GPUs) && len(m.CUDA) > 0 {
		n.cuda = make(map[int]int, len(m.CUDA))
		for i, g := range m.GPUs {
			n.cuda[g] = m.CUDA[i]
		}
	}
	if len(n.gpus) > 0 {
		res["GPU"] = float64(len(n.gpus))
	} else {
		delete(res, "GPU")
	}
	c.member = n
	a.nodes = append(a.nodes, n)
	a.joinCore(n)
	if a.head != nil {
		a.head.NodeJoined(head.Node{ID: n.id, Addr: n.addr, Resources: res})
	}
	a.log.Info("node joined", "node", n.id, "addr", n.addr, "resources", res.String(), "nodes", a.liveNodes())
	a.nodeCond.Broadcast()
	return nil
}

// joinCore adds n to the core and indexes it by its core id.
func (a *Agent) joinCore(n *node) {
	a.feed(sched.NodeJoined{Name: n.id, Total: n.total, GPUs: n.gpus, MaxWorkers: a.cfg.MaxWorkersPerNode, Labels: n.labels})
	id, _ := a.core.NodeByName(n.id)
	n.cid = id
	for int(id) >= len(a.byCID) {
		a.byCID = append(a.byCID, nil)
	}
	a.byCID[id] = n
}

func (a *Agent) liveNodes() int {
	k := 0
	for _, n := range a.nodes {
		if n.alive {
			k++
		}
	}
	return k
}

// memberLost handles a member whose connection closed: its node is gone, and so are its
// workers; their tasks are retried elsewhere and their actors restarted as their options say.
func (a *Agent) memberLost(n *node) {
	if !n.alive {
		return
	}
	n.alive = false
	if !a.stopping && n.lostWhy == "" {
		a.log.Error("node lost: its agent's connection closed", "node", n.id)
	}
	if a.head != nil {
		a.head.NodeLost(n.id)
	}
	why := n.lostWhy
	if why == "" {
		why = "its agent's connection closed"
	}
	a.feed(sched.NodeLost{Node: n.cid, Why: why})
	a.localNodeLost(n) // local.go
	for _, w := range a.workers {
		if w.node == n {
			a.endRemoteWorker(w, "its node "+n.id+" was lost")
		}
	}
	a.nodeCond.Broadcast()
}

// Nodes lists the live nodes' names, this node first.
func (a *Agent) Nodes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, n := range a.nodes {
		if n.alive {
			out = append(out, n.id)
		}
	}
	return out
}

// WaitNodes waits until every name in want has joined, calling progress whenever a node joins,
// for at most timeout. It returns the names still missing.
func (a *Agent) WaitNodes(want []string, timeout time.Duration, progress func(joined, missing []string)) []string {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		a.mu.Lock()
		a.nodeCond.Broadcast()
		a.mu.Unlock()
	})
	defer timer.Stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	last := -1
	for {
		have := map[string]bool{}
		for _, n := range a.nodes {
			if n.alive {
				have[n.id] = true
			}
		}
		var joined, missing []string
		for _, w := range want {
			if have[w] {
				joined = append(joined, w)
			} else {
				missing = append(missing, w)
			}
		}
		if len(joined) != last && progress != nil {
			last = len(joined)
			a.mu.Unlock()
			progress(joined, missing)
			a.mu.Lock()
			continue // a node may have joined while the lock was released
		}
		if len(missing) == 0 || time.Now().After(deadline) || a.closed {
			sort.Strings(missing)
			return missing
		}
		a.nodeCond.Wait()
	}
}

// StopMembers tells every member agent to stop its workers and exit with code.
func (a *Agent) StopMembers(code int, msg string) {
	a.mu.Lock()
	a.stopping = true
	var conns []*client
	for _, n := range a.nodes {
		if n.member != nil && n.alive {
			conns = append(conns, n.member)
			n.member.conn.Send(wire.TStop, 0, &wire.Stop{Code: code, Msg: msg})
		}
	}
	a.mu.Unlock()
	// Let each member hang up first (it exits once its workers are gone): closing our end while
	// its last WORKER_EXITs are unread would reset the connection, and a member whose write
	// fails on the reset could lose the STOP still unread in its socket.
	deadline := time.After(3 * time.Second)
	for _, c := range conns {
		select {
		case <-c.gone:
		case <-deadline:
		}
		c.conn.Close()
	}
}

// readStored returns the bytes of a stored object, for a client that cannot map them.
func readStored(path string, off, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read object bytes from %s: %w", path, err)
	}
	return b, nil
}
