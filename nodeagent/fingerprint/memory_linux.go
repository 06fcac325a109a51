package fingerprint

import (
	"fmt"
	"io/fs"

	"github.com/hashicorp/go-hclog"
)

var (
	memoryMaxV2 = limitFile[uint64]{version: "cgroup v2", name: "memory.max",
		read: readWith("memory.max", parseMemoryMax)}
	memoryLimitV1 = limitFile[uint64]{version: "cgroup v1", name: "memory.limit_in_bytes",
		read: readWith("memory.limit_in_bytes", parseMemoryLimitV1)}
)

// memoryFingerprint reports MemTotal lowered to the process's cgroup memory limits.
type memoryFingerprint struct {
	logger hclog.Logger
	fsys   fs.FS
}

var _ Fingerprinter = (*memoryFingerprint)(nil)

func newMemory(logger hclog.Logger, fsys fs.FS) Fingerprinter {
	return &memoryFingerprint{logger: logger, fsys: fsys}
}

func (f *memoryFingerprint) Fingerprint(req *Request, resp *Node) error {
	total, totalErr := memTotal(f.fsys)
	if totalErr == nil {
		resp.MemoryBytes, resp.MemorySource = total, "meminfo"
	}
	// v2 first so that, on a hybrid node with equal limits, the source names v2.
	limits := []found[uint64]{
		smallest(f.logger, f.fsys, req.Cgroups.V2, memoryMaxV2),
		smallest(f.logger, f.fsys, req.Cgroups.V1["memory"], memoryLimitV1),
	}
	versions := []string{memoryMaxV2.version, memoryLimitV1.version}
	for i, l := range limits {
		if !l.ok {
			continue
		}
		f.logger.Debug("cgroup memory limit", "path", l.file, "bytes", l.value)
		if resp.MemorySource == "" || l.value < resp.MemoryBytes {
			resp.MemoryBytes, resp.MemorySource = l.value, versions[i]+" "+l.file
		}
	}
	switch {
	case totalErr == nil:
		return nil
	case resp.MemorySource != "":
		f.logger.Warn("no memory total, offering the cgroup limit", "path", "/proc/meminfo", "error", totalErr)
		return nil
	default:
		return fmt.Errorf("read memory size: %w (is /proc mounted?)", totalErr)
	}
}

func memTotal(fsys fs.FS) (uint64, error) {
	b, err := readFile(fsys, "/proc/meminfo")
	if err != nil {
		return 0, err
	}
	n, err := parseMeminfoKB(b, "MemTotal")
	if err != nil {
		return 0, fmt.Errorf("read /proc/meminfo: %w", err)
	}
	return n, nil
}
