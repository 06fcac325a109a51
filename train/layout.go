package train

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-hpc/shoal/wire"
)

// Placed is what a rank's actor reports about where it runs.
type Placed struct {
	Node string            `msgpack:"node"` // the node's id in the cluster
	GPUs []int             `msgpack:"gpus"` // the GPUs the actor was given (CUDA_VISIBLE_DEVICES)
	NCCL map[string]string `msgpack:"nccl"` // NCCL_SOCKET_IFNAME / NCCL_IB_HCA chosen on that node
	Host string            `msgpack:"host"` // the host name, for messages
}

// NodeOrder is the order of node ranks: the head node (the first in the cluster's list, where
// the driver runs) first, then the others by name, so the numbering does not depend on the
// order in which nodes joined.
func NodeOrder(nodes []wire.NodeInfo) []string {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.ID)
	}
	if len(ids) > 1 {
		slices.Sort(ids[1:])
	}
	return ids
}

// Rank is one rank's place in the world.
type Rank struct {
	Actor          int // index of the actor (and bundle) holding this rank
	Rank           int
	LocalRank      int
	NodeRank       int
	LocalWorldSize int
	Node           string
	NodeGPUs       []int // the GPUs of every rank on this node, in order
}

// Layout numbers the ranks: nodes in nodeOrder (nodes not in it come after, by name), the
// ranks of one node consecutive and ordered by their first GPU, then by actor index.
func Layout(placed []Placed, nodeOrder []string) []Rank {
	pos := map[string]int{}
	for i, n := range nodeOrder {
		if _, ok := pos[n]; !ok {
			pos[n] = i
		}
	}
	nodePos := func(n string) int {
		if p, ok := pos[n]; ok {
			return p
		}
		return len(nodeOrder)
	}
	idx := make([]int, len(placed))
	for i := range idx {
		idx[i] = i
	}
	firstGPU := func(p Placed) int {
		if len(p.GPUs) == 0 {
			return -1
		}
		return slices.Min(p.GPUs)
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		pa, pb := placed[a], placed[b]
		return cmp.Or(cmp.Compare(nodePos(pa.Node), nodePos(pb.Node)), cmp.Compare(pa.Node, pb.Node),
			cmp.Compare(firstGPU(pa), firstGPU(pb)), cmp.Compare(a, b))
	})
	ranks := make([]Rank, len(placed))
	nodeRank, local := -1, 0
	var prev string
	for r, i := range idx {
		n := placed[i].Node
		if r == 0 || n != prev {
			nodeRank++
			local = 0
			prev = n
		}
		ranks[r] = Rank{Actor: i, Rank: r, LocalRank: local, NodeRank: nodeRank, Node: n}
		local++
	}
	// local world sizes and the node's GPUs
	for i := range ranks {
		var gpus []int
		n := 0
		for _, o := range ranks {
			if o.Node == ranks[i].Node {
				n++
				gpus = append(gpus, placed[o.Actor].GPUs...)
			}
		}
		ranks[i].LocalWorldSize = n
		ranks[i].NodeGPUs = gpus
	}
	return ranks
}

// GPU modes for CUDA_VISIBLE_DEVICES.
const (
	GPUsPerRank = "per-rank" // each rank sees only its own GPUs
	GPUsShared  = "shared"   // each rank sees all GPUs of its node's ranks and picks with LOCAL_RANK
)

// World is what every rank shares.
type World struct {
	Size        int
	MasterAddr  string
	MasterPort  int
	Attempt     int     // TORCHELASTIC_RESTART_COUNT
	MaxRestarts int     // TORCHELASTIC_MAX_RESTARTS
	CPUs        float64 // CPUs per rank, for OMP_NUM_THREADS
	GPUMode     string
	Checkpoint  string // the last checkpoint reported, "" on the first attempt
	RunID       string // TORCHELASTIC_RUN_ID
}

// Env returns rank r's variables, sorted by name.
func Env(r Rank, own Placed, w World) []string {
	m := map[string]string{
		"MASTER_ADDR":                w.MasterAddr,
		"MASTER_PORT":                strconv.Itoa(w.MasterPort),
		"RANK":                       strconv.Itoa(r.Rank),
		"LOCAL_RANK":                 strconv.Itoa(r.LocalRank),
		"WORLD_SIZE":                 strconv.Itoa(w.Size),
		"LOCAL_WORLD_SIZE":           strconv.Itoa(r.LocalWorldSize),
		"NODE_RANK":                  strconv.Itoa(r.NodeRank),
		"GROUP_RANK":                 strconv.Itoa(r.NodeRank),
		"ROLE_RANK":                  strconv.Itoa(r.Rank),
		"ROLE_WORLD_SIZE":            strconv.Itoa(w.Size),
		"TORCHELASTIC_RESTART_COUNT": strconv.Itoa(w.Attempt),
		"TORCHELASTIC_MAX_RESTARTS":  strconv.Itoa(w.MaxRestarts),
		"TORCHELASTIC_RUN_ID":        w.RunID,
		"OMP_NUM_THREADS":            strconv.Itoa(max(1, int(w.CPUs))),
		"SHOAL_TRAIN_CHECKPOINT":     w.Checkpoint,
	}
	if len(own.GPUs) > 0 {
		gpus := own.GPUs
		if w.GPUMode == GPUsShared {
			gpus = r.NodeGPUs
		}
		m["CUDA_VISIBLE_DEVICES"] = joinInts(gpus)
		m["SHOAL_GPU_IDS"] = joinInts(own.GPUs)
	}
	maps.Copy(m, own.NCCL)
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// Scrubbed are the variables a rank must not inherit: Slurm's rank and task variables, which
// Lightning and others read before RANK and would take a rank for the whole job, and
// torchrun's own variables from an outer launcher.
var Scrubbed = []string{"SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NTASKS", "SLURM_NPROCS",
	"SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NODELIST",
	"SLURM_STEP_NUM_NODES", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASK_PID",
	"SLURM_GTIDS", "SLURM_ARRAY_TASK_ID", "PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_RANK",
	"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "TORCHELASTIC_USE_AGENT_STORE", "GROUP_WORLD_SIZE"}

// MergeEnv returns base without the Scrubbed variables, with set's variables replacing
// base's of the same name.
func MergeEnv(base, set []string) []string {
	drop := map[string]bool{}
	for _, k := range Scrubbed {
		drop[k] = true
	}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		drop[k] = true
	}
	out := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}

// Describe summarises a layout for the progress line: "node1: ranks 0-1, node2: ranks 2-3".
func Describe(ranks []Rank) string {
	var parts []string
	for i := 0; i < len(ranks); {
		j := i
		for j+1 < len(ranks) && ranks[j+1].Node == ranks[i].Node {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprintf("%s: rank %d", ranks[i].Node, i))
		} else {
			parts = append(parts, fmt.Sprintf("%s: ranks %d-%d", ranks[i].Node, i, j))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
