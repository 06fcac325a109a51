package gpu

import (
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/shoal-hpc/shoal/nodeagent/fingerprint"
)

// pciDevices is where sysfs lists PCI devices, relative to the root given by WithRoot.
const pciDevices = "sys/bus/pci/devices"

// sysfsNUMA reads the device's NUMA node from sysfs: -1 when unknown (no bus id, no file, or
// a machine without NUMA, where the kernel itself writes -1).
func (s *session) sysfsNUMA(bus string) int {
	if !validBusID(bus) {
		return unknown
	}
	b, err := fs.ReadFile(s.sysfs, path.Join(pciDevices, bus, "numa_node"))
	if err != nil {
		s.log.Debug("numa node unknown", "bus_id", bus, "error", err)
		return unknown
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return unknown
	}
	return n
}

// sysfsCPUs reads the CPUs local to the device from sysfs; nil when unknown.
func (s *session) sysfsCPUs(bus string) []int {
	if !validBusID(bus) {
		return nil
	}
	b, err := fs.ReadFile(s.sysfs, path.Join(pciDevices, bus, "local_cpulist"))
	if err != nil {
		s.log.Debug("cpu affinity unknown", "bus_id", bus, "error", err)
		return nil
	}
	cpus, err := fingerprint.ParseCPUList(string(b))
	if err != nil {
		s.log.Warn("ignoring malformed local_cpulist", "bus_id", bus, "error", err)
		return nil
	}
	return cpus
}

// validBusID keeps a bus id from naming anything but one entry of pciDevices.
func validBusID(bus string) bool {
	return bus != "" && !strings.ContainsAny(bus, "/\\") && bus != "." && bus != ".."
}
