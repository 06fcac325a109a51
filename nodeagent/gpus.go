package nodeagent

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/shoal-hpc/shoal/nodeagent/confine"
	"github.com/shoal-hpc/shoal/nodeagent/gpu"
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

// gpuKey names a GPU set; "" for none.
func gpuKey(ids []int) string {
	if len(ids) == 0 {
		return ""
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}

// hasGPUs reports whether this node offers GPUs that the agent places itself.
func (a *Agent) hasGPUs() bool { return len(a.local.gpus) > 0 }

// gpuCount is the number of whole GPUs t needs (a fraction takes one whole GPU: sharing a GPU
// between tasks is not supported yet).
func gpuCount(n float64) int { return int(math.Ceil(n - 1e-9)) }

// pickGPUs chooses n free GPUs of node nd, or nil when they are not free now. On this node
// the choice follows the topology (one NUMA node, NVLink); a member's GPUs are plain indices.
func (a *Agent) pickGPUs(nd *node, n int) []int {
	if nd == a.local && a.cfg.GPUs != nil && len(a.cfg.GPUs.Devices) > 0 {
		var used []int
		for id := range nd.gpuUsed {
			used = append(used, id)
		}
		ids, err := gpu.Pick(a.cfg.GPUs.Without(used...), n, -1)
		if err != nil {
			return nil
		}
		sort.Ints(ids)
		return ids
	}
	var ids []int
	for _, id := range nd.gpus {
		if !nd.gpuUsed[id] && len(ids) < n {
			ids = append(ids, id)
		}
	}
	if len(ids) < n {
		return nil
	}
	return ids
}

func (a *Agent) takeGPUs(nd *node, ids []int) {
	for _, id := range ids {
		nd.gpuUsed[id] = true
	}
}

func (a *Agent) freeGPUs(nd *node, ids []int) {
	if nd == nil {
		nd = a.local
	}
	for _, id := range ids {
		delete(nd.gpuUsed, id)
	}
}

func (a *Agent) device(index int) (gpu.Device, bool) {
	if a.cfg.GPUs == nil {
		return gpu.Device{}, false
	}
	for _, d := range a.cfg.GPUs.Devices {
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
	return []string{"CUDA_VISIBLE_DEVICES=" + gpuKey(ids), "CUDA_DEVICE_ORDER=PCI_BUS_ID", "SHOAL_GPU_IDS=" + gpuKey(ids)}
}

// gpuCPUs is the CPUs nearest the GPUs ids, within this agent's CPUs; nil when unknown.
func (a *Agent) gpuCPUs(ids []int) []int {
	allowed := map[int]bool{}
	for _, c := range a.cfg.CPUs {
		allowed[c] = true
	}
	set := map[int]bool{}
	for _, id := range ids {
		d, ok := a.device(id)
		if !ok || d.CPUAffinity == nil {
			return nil
		}
		for _, c := range d.CPUAffinity {
			if len(allowed) == 0 || allowed[c] {
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

// confineWorker makes the worker's cgroup, when the agent confines workers. It returns the
// open cgroup directory to start the process in, or nil.
func (a *Agent) confineWorker(w *worker) (*os.File, error) {
	if a.cfg.Confine == nil || w.node != a.local {
		return nil, nil
	}
	rules := confine.DefaultRules()
	if len(w.gpus) > 0 {
		var minors []int
		for _, id := range w.gpus {
			d, ok := a.device(id)
			if !ok || d.MinorNumber < 0 {
				return nil, fmt.Errorf("confine worker %s: the device minor of GPU %d is unknown", w.id, id)
			}
			minors = append(minors, d.MinorNumber)
		}
		gr, err := confine.GPURules(minors, a.cfg.GPUMajors.UVM)
		if err != nil {
			return nil, fmt.Errorf("confine worker %s: %w", w.id, err)
		}
		rules = append(rules, gr...)
	}
	rules = append(rules, a.cfg.ExtraDevices...)
	g, err := a.cfg.Confine.Confine(w.id, rules)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(g.Dir())
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("open cgroup of worker %s: %w", w.id, err)
	}
	w.group = g
	return f, nil
}

// setAffinity pins a started worker to cpus (best effort).
func (a *Agent) setAffinity(pid int, cpus []int) {
	if len(cpus) == 0 {
		return
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(pid, &set); err != nil {
		a.log.Debug("set worker CPU affinity", "pid", pid, "cpus", fmt.Sprint(cpus), "error", err)
	}
}

// closeGroup removes a dead worker's cgroup.
func (a *Agent) closeGroup(w *worker) {
	if w.group == nil {
		return
	}
	if err := w.group.Close(); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("remove worker cgroup", "worker", w.id, "error", err)
	}
	w.group = nil
}
