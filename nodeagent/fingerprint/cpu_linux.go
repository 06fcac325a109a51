package fingerprint

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

var (
	cpuMaxV2 = limitFile[float64]{version: "cgroup v2", name: "cpu.max",
		read: readWith("cpu.max", parseCPUMax)}
	cfsQuotaV1 = limitFile[float64]{version: "cgroup v1", name: "cpu.cfs_quota_us",
		read: func(fsys fs.FS, dir string) (float64, error) {
			q, err := readFile(fsys, dir+"/cpu.cfs_quota_us")
			if err != nil {
				return 0, err
			}
			p, err := readFile(fsys, dir+"/cpu.cfs_period_us")
			if err != nil {
				return 0, err
			}
			return quotaCPUs(string(q), string(p))
		}}
)

// cpuFingerprint reports the allowed CPUs, their topology and the cgroup CPU quota.
type cpuFingerprint struct {
	logger hclog.Logger
	fsys   fs.FS
}

var _ Fingerprinter = (*cpuFingerprint)(nil)

func newCPU(logger hclog.Logger, fsys fs.FS) Fingerprinter {
	return &cpuFingerprint{logger: logger, fsys: fsys}
}

func (f *cpuFingerprint) Fingerprint(req *Request, resp *Node) error {
	resp.CPUs = append([]int(nil), req.CPUs...)
	if t, err := f.topology(req.CPUs); err != nil {
		f.logger.Debug("no cpu topology, counting each cpu as a core of one socket", "error", err)
		resp.Sockets, resp.Cores, resp.ThreadsPerCore = 1, len(req.CPUs), 1
	} else {
		resp.Sockets, resp.Cores, resp.ThreadsPerCore = t.sockets, t.cores, t.threadsPerCore
	}
	resp.CPUQuota = 0
	for _, l := range []found[float64]{
		smallest(f.logger, f.fsys, req.Cgroups.V2, cpuMaxV2),
		smallest(f.logger, f.fsys, req.Cgroups.V1["cpu"], cfsQuotaV1),
	} {
		if l.ok && (resp.CPUQuota == 0 || l.value < resp.CPUQuota) {
			f.logger.Debug("cgroup cpu quota", "path", l.file, "cpus", l.value)
			resp.CPUQuota = l.value
		}
	}
	return nil
}

type topology struct{ sockets, cores, threadsPerCore int }

// topology counts the packages and cores that hold the allowed CPUs and the most allowed
// CPUs on one core. A core is identified by its thread_siblings_list, which stays unique
// where core_id repeats across dies; core_id within the package is the fallback.
func (f *cpuFingerprint) topology(cpus []int) (topology, error) {
	packages := map[string]bool{}
	perCore := map[string]int{}
	for _, cpu := range cpus {
		dir := fmt.Sprintf("/sys/devices/system/cpu/cpu%d/topology/", cpu)
		pkg, err := readTrimmed(f.fsys, dir+"physical_package_id")
		if err != nil {
			return topology{}, err
		}
		if _, err := strconv.Atoi(pkg); err != nil {
			return topology{}, fmt.Errorf("parse %sphysical_package_id: %w", dir, err)
		}
		core, err := readTrimmed(f.fsys, dir+"thread_siblings_list")
		if err == nil {
			if _, err := ParseCPUList(core); err != nil {
				return topology{}, err
			}
		} else {
			id, idErr := readTrimmed(f.fsys, dir+"core_id")
			if idErr != nil {
				return topology{}, idErr
			}
			core = pkg + "/" + id
		}
		packages[pkg] = true
		perCore[core]++
	}
	t := topology{sockets: len(packages), cores: len(perCore)}
	for _, n := range perCore {
		t.threadsPerCore = max(t.threadsPerCore, n)
	}
	return t, nil
}

func readTrimmed(fsys fs.FS, name string) (string, error) {
	b, err := readFile(fsys, name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
