//go:build !linux

package fingerprint

import (
	"io/fs"
	"runtime"

	"github.com/hashicorp/go-hclog"
)

// builtins are the fingerprinters Detect runs, by name. Off Linux there is no affinity
// mask, topology, NUMA or cgroup source: only runtime.NumCPU and the host name.
var builtins = map[string]factory{
	"cpu":    newCPU,
	"host":   newHost,
	"memory": newMemory,
}

func defaultAffinity() ([]int, error) {
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus, nil
}

func discoverCgroups(hclog.Logger, fs.FS) Cgroups { return Cgroups{} }

// cpuFingerprint reports the CPUs; topology stays 0 (unknown).
type cpuFingerprint struct{}

func newCPU(hclog.Logger, fs.FS) Fingerprinter { return cpuFingerprint{} }

func (cpuFingerprint) Fingerprint(req *Request, resp *Node) error {
	resp.CPUs = append([]int(nil), req.CPUs...)
	return nil
}

// memoryFingerprint reports no memory size and no limit.
type memoryFingerprint struct{ logger hclog.Logger }

func newMemory(logger hclog.Logger, _ fs.FS) Fingerprinter { return memoryFingerprint{logger} }

func (f memoryFingerprint) Fingerprint(_ *Request, resp *Node) error {
	f.logger.Debug("memory size unknown on this platform", "os", runtime.GOOS)
	resp.MemorySource = "unknown on " + runtime.GOOS
	return nil
}
