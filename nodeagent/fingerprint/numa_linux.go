package fingerprint

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

const nodeDir = "/sys/devices/system/node"

// numaFingerprint reports the NUMA nodes that hold allowed CPUs.
type numaFingerprint struct {
	logger hclog.Logger
	fsys   fs.FS
}

var _ Fingerprinter = (*numaFingerprint)(nil)

func newNUMA(logger hclog.Logger, fsys fs.FS) Fingerprinter {
	return &numaFingerprint{logger: logger, fsys: fsys}
}

func (f *numaFingerprint) Fingerprint(req *Request, resp *Node) error {
	nodes, err := f.nodes(req.CPUs)
	if err == nil && len(nodes) == 0 {
		err = errors.New("no numa node holds an allowed cpu")
	}
	if err != nil {
		// Without NUMA information the machine is one node (a kernel without CONFIG_NUMA,
		// or a container without /sys).
		total, totalErr := memTotal(f.fsys)
		f.logger.Debug("no numa topology, reporting one node", "error", err, "memory_error", totalErr)
		nodes = []NUMANode{{ID: 0, CPUs: slices.Clone(req.CPUs), MemoryBytes: total}}
	}
	resp.NUMANodes = nodes
	return nil
}

func (f *numaFingerprint) nodes(allowed []int) ([]NUMANode, error) {
	entries, err := fs.ReadDir(f.fsys, fsPath(nodeDir))
	if err != nil {
		return nil, err
	}
	var nodes []NUMANode
	for _, e := range entries {
		digits, ok := strings.CutPrefix(e.Name(), "node")
		if !ok {
			continue // has_cpu, online, possible ...
		}
		id, err := strconv.Atoi(digits)
		if err != nil {
			continue
		}
		dir := nodeDir + "/" + e.Name()
		b, err := readFile(f.fsys, dir+"/cpulist")
		if err != nil {
			return nil, err
		}
		cpus, err := ParseCPUList(string(b))
		if err != nil {
			return nil, fmt.Errorf("read %s/cpulist: %w", dir, err)
		}
		cpus = slices.DeleteFunc(cpus, func(c int) bool { _, ok := slices.BinarySearch(allowed, c); return !ok })
		if len(cpus) == 0 {
			f.logger.Debug("numa node holds no allowed cpu", "node", id)
			continue
		}
		n := NUMANode{ID: id, CPUs: cpus}
		if b, err := readFile(f.fsys, dir+"/meminfo"); err != nil {
			f.logger.Debug("no numa node memory", "node", id, "error", err)
		} else if n.MemoryBytes, err = parseMeminfoKB(b, "MemTotal"); err != nil {
			f.logger.Warn("unreadable numa node memory", "node", id, "error", err)
		}
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b NUMANode) int { return a.ID - b.ID })
	return nodes, nil
}
