package train

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/shoal-hpc/shoal/wire"
)

// PlanOptions say how many ranks to run and what each gets, in torchrun's terms.
type PlanOptions struct {
	NprocPerNode string  // "auto" (GPUs per node, else CPUs per node), "gpu", "cpu" or a number
	NNodes       int     // nodes to use; 0: every live node
	CPUsPerRank  float64 // 0: the node's CPUs divided among its ranks
	GPUsPerRank  float64 // -1: the node's GPUs divided among its ranks (0 when fewer than ranks)
}

// Plan works out the number of ranks and each rank's resources from the cluster's nodes.
// It uses the smallest node's CPUs and GPUs, so that every node can hold its share.
func Plan(nodes []wire.NodeInfo, o PlanOptions) (int, map[string]float64, error) {
	var live []wire.NodeInfo
	var names []string
	for _, n := range nodes {
		if n.Alive {
			live = append(live, n)
			names = append(names, n.ID)
		}
	}
	if len(live) == 0 {
		return 0, nil, fmt.Errorf("the cluster has no live node")
	}
	nn := o.NNodes
	if nn <= 0 {
		nn = len(live)
	}
	if nn > len(live) {
		return 0, nil, fmt.Errorf("--nnodes %d: the cluster has %d live node(s) (%s); ask for fewer or get a larger allocation", nn, len(live), strings.Join(names, ","))
	}
	minCPU, minGPU := math.Inf(1), math.Inf(1)
	for _, n := range live {
		minCPU = math.Min(minCPU, n.Total["CPU"])
		minGPU = math.Min(minGPU, n.Total["GPU"])
	}
	var per int
	switch s := strings.ToLower(strings.TrimSpace(o.NprocPerNode)); s {
	case "", "auto":
		per = int(minGPU)
		if per == 0 {
			per = int(minCPU)
		}
	case "gpu":
		per = int(minGPU)
		if per == 0 {
			return 0, nil, fmt.Errorf("--nproc-per-node gpu: the cluster's nodes have no GPUs; use a number, cpu or auto")
		}
	case "cpu":
		per = int(minCPU)
	default:
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return 0, nil, fmt.Errorf("--nproc-per-node %q: use a positive number, auto, gpu or cpu", o.NprocPerNode)
		}
		per = n
	}
	if per <= 0 {
		per = 1
	}
	res := map[string]float64{}
	cpu := o.CPUsPerRank
	if cpu <= 0 {
		cpu = minCPU / float64(per)
		if cpu >= 1 {
			cpu = math.Floor(cpu)
		}
	}
	if cpu > 0 {
		res["CPU"] = cpu
	}
	gpu := o.GPUsPerRank
	if gpu < 0 {
		gpu = 0
		if minGPU >= float64(per) {
			gpu = math.Floor(minGPU / float64(per))
		}
	}
	if gpu > 0 {
		res["GPU"] = gpu
	}
	if len(res) == 0 {
		res["CPU"] = 0.01 // a bundle needs a resource; a node without CPUs still places it
	}
	return per * nn, res, nil
}
