package nodeagent

import (
	"fmt"
	"os"
	"sort"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/nodeagent/confine"
	"github.com/shoal-hpc/shoal/nodeagent/gpu"
	"github.com/shoal-hpc/shoal/sched"
	"github.com/shoal-hpc/shoal/wire"
)

// GPU placement:
//
//	task asks for n GPUs ──> gpu.Pick (one NUMA node, NVLink-connected) ──> a worker that owns
//	exactly that set (reused), or a new one started for it: CUDA_VISIBLE_DEVICES = the set,
//	CPU affinity = the GPUs' CPUs, and, where the agent may, a cgroup whose eBPF device
//	program admits only those GPUs.
//
// Workers that own no GPUs get CUDA_VISIBLE_DEVICES="" on a GPU node, and are confined to the
// ordinary character devices, so a task that asked for none cannot take somebody's GPU.

// device returns the GPU with NVML index index from t.
func device(t *gpu.Topology, index int) (gpu.Device, bool) {
	if t == nil {
		return gpu.Device{}, false
	}
	for _, d := range t.Devices {
		if d.Index == index {
			return d, true
		}
	}
	return gpu.Device{}, false
}

// gpuEnv is the environment of a worker of node nd owning ids.
func (a *Agent) gpuEnv(nd *node, ids []int) []string {
	if len(nd.gpus) == 0 {
		return nil
	}
	if nd.cuda != nil {
		seen := make([]int, len(ids))
		for i, id := range ids {
			seen[i] = id
			if c, ok := nd.cuda[id]; ok {
				seen[i] = c
			}
		}
		ids = seen
	}
	return []string{"CUDA_VISIBLE_DEVICES=" + sched.GPUKey(ids), "CUDA_DEVICE_ORDER=PCI_BUS_ID", "SHOAL_GPU_IDS=" + sched.GPUKey(ids)}
}

// gpuCPUs is the CPUs nearest the GPUs ids of t, within allowed (all when empty); nil when
// unknown.
func gpuCPUs(t *gpu.Topology, allowed []int, ids []int) []int {
	ok := map[int]bool{}
	for _, c := range allowed {
		ok[c] = true
	}
	set := map[int]bool{}
	for _, id := range ids {
		d, found := device(t, id)
		if !found || d.CPUAffinity == nil {
			return nil
		}
		for _, c := range d.CPUAffinity {
			if len(ok) == 0 || ok[c] {
				set[c] = true
			}
		}
	}
	out := make([]int, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Ints(out)
	return out
}

// DeviceRules are the devices a worker owning the GPUs ids of t may open: the ordinary
// character devices, those GPUs (by their /dev/nvidiaN minors; uvm is nvidia-uvm's major, 0 when
// unknown) and extra. Member agents confine their workers with the same rules as the head's.
func DeviceRules(t *gpu.Topology, ids []int, uvm int, extra []confine.Rule) ([]confine.Rule, error) {
	rules := confine.DefaultRules()
	if len(ids) > 0 {
		var minors []int
		for _, id := range ids {
			d, ok := device(t, id)
			if !ok || d.MinorNumber < 0 {
				return nil, fmt.Errorf("the device minor of GPU %d is unknown", id)
			}
			minors = append(minors, d.MinorNumber)
		}
		gr, err := confine.GPURules(minors, uvm)
		if err != nil {
			return nil, err
		}
		rules = append(rules, gr...)
	}
	return append(rules, extra...), nil
}

// openGroup makes the cgroup name with rules and opens its directory, for starting a process
// in it (SysProcAttr.CgroupFD).
func openGroup(cf *confine.Confiner, name string, rules []confine.Rule) (*confine.Group, *os.File, error) {
	g, err := cf.Confine(name, rules)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(g.Dir())
	if err != nil {
		g.Close()
		return nil, nil, fmt.Errorf("open cgroup of worker %s: %w", name, err)
	}
	return g, f, nil
}

// setAffinity pins a started worker to cpus (best effort).
func (a *Agent) setAffinity(pid int, cpus []int) { setAffinity(a.log, pid, cpus) }

func setAffinity(log hclog.Logger, pid int, cpus []int) {
	if len(cpus) == 0 {
		return
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(pid, &set); err != nil {
		log.Debug("set worker CPU affinity", "pid", pid, "cpus", fmt.Sprint(cpus), "error", err)
	}
}

// TopologyToWire is what a member sends about its GPUs in NODE_JOIN.
func TopologyToWire(t *gpu.Topology) []wire.GPU {
	if t == nil {
		return nil
	}
	out := make([]wire.GPU, 0, len(t.Devices))
	for _, d := range t.Devices {
		out = append(out, wire.GPU{Index: d.Index, UUID: d.UUID, Name: d.Name, MemoryBytes: d.MemoryBytes,
			NUMANode: d.NUMANode, CPUs: d.CPUAffinity, NVLinkPeers: d.NVLinkPeers})
	}
	return out
}

// topologyFromWire is the head's view of a member's GPUs (device minors stay on the member).
func topologyFromWire(ds []wire.GPU) *gpu.Topology {
	t := &gpu.Topology{}
	for _, d := range ds {
		t.Devices = append(t.Devices, gpu.Device{Index: d.Index, UUID: d.UUID, Name: d.Name, MemoryBytes: d.MemoryBytes,
			NUMANode: d.NUMANode, CPUAffinity: d.CPUs, NVLinkPeers: d.NVLinkPeers, MinorNumber: -1})
	}
	return t
}
