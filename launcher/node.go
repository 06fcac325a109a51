package launcher

import (
	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/nodeagent/fingerprint"
	"github.com/shoal-hpc/shoal/nodeagent/gpu"
	"github.com/shoal-hpc/shoal/nodeagent/netdev"
	"github.com/shoal-hpc/shoal/sched"
)

// NodeReport is what an agent started with the same options would find on this node and
// offer to the cluster; `shoal node info` prints it.
type NodeReport struct {
	NodeID    string            `json:"node_id"`
	Host      *fingerprint.Node `json:"host"`
	GPUs      *gpu.Topology     `json:"gpus"`
	Net       *netdev.Node      `json:"network"`
	Offer     sched.Resources   `json:"offer"`
	StoreDir  string            `json:"object_store_dir"`
	StoreSize int64             `json:"object_store_bytes"`
}

// Describe discovers the node as Start would, without starting anything.
func Describe(log hclog.Logger, o Options) (*NodeReport, error) {
	res, store, dir, fp, err := resources(log, o, "<cluster-id>")
	if err != nil {
		return nil, err
	}
	topo, err := discoverGPUs(log)
	if err != nil {
		return nil, err
	}
	if o.NumGPUs <= 0 && len(topo.Devices) > 0 {
		res["GPU"] = float64(len(topo.Devices))
	}
	nd, err := netdev.Detect(log.Named("netdev"))
	if err != nil {
		log.Warn("network discovery failed", "error", err)
		nd = &netdev.Node{}
	}
	return &NodeReport{NodeID: nodeID(), Host: fp, GPUs: topo, Net: nd, Offer: res, StoreDir: dir, StoreSize: store}, nil
}
