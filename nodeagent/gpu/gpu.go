package gpu

import (
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"slices"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/hashicorp/go-hclog"
)

// ErrNotSupported means NVML is present but cannot describe this node's GPUs; see the
// package comment for when Discover returns it.
var ErrNotSupported = errors.New("gpu discovery not supported")

// Device is one GPU as NVML sees it. Fields that the driver cannot report are unknown:
// -1 for numbers, nil for lists, "" for strings.
type Device struct {
	// Index is NVML's device index, the order CUDA uses with CUDA_DEVICE_ORDER=PCI_BUS_ID.
	Index int
	// UUID is NVML's "GPU-..." id, what CUDA_VISIBLE_DEVICES accepts.
	UUID string
	// Name is the product name ("NVIDIA H100 80GB HBM3").
	Name string
	// PCIBusID is the bus id in sysfs form, lower case with a 4-digit domain ("0000:07:00.0").
	PCIBusID string
	// MemoryBytes is the device's total framebuffer memory; 0 when unknown.
	MemoryBytes uint64
	// NUMANode is the NUMA node nearest the GPU, -1 when unknown.
	NUMANode int
	// CPUAffinity are the CPUs nearest the GPU, sorted; nil when unknown.
	CPUAffinity []int
	// NVLinkPeers are the GPUs reachable over NVLink, directly or through an NVSwitch: the
	// peer's UUID when the peer is one of Devices, its bus id otherwise. Sorted; nil when the
	// GPU has no active NVLink or the driver cannot tell.
	NVLinkPeers []string
	// MIG is true when MIG mode is currently enabled; false also when unknown.
	MIG bool
	// MinorNumber is N of /dev/nvidiaN (char major 195), -1 when unknown.
	MinorNumber int
}

// Topology is what Discover found on the node.
type Topology struct {
	// Devices are the GPUs ordered by Index; empty on a node without GPUs.
	Devices []Device
	// NVSwitch is true when at least one GPU has an active NVLink to an NVSwitch; false also
	// when the driver cannot tell.
	NVSwitch bool
	// Driver is the kernel driver version ("550.54.15"); CUDA is the highest CUDA version the
	// driver supports ("12.4"). Empty when unknown or when there is no driver.
	Driver, CUDA string
}

// Option changes how Discover probes.
type Option func(*config)

type config struct {
	lib  nvml.Interface
	root string
}

// WithLibrary makes Discover use lib instead of the node's libnvidia-ml.so.1; tests pass
// go-nvml's mock machines.
func WithLibrary(lib nvml.Interface) Option {
	return func(c *config) { c.lib = lib }
}

// WithRoot makes Discover read sysfs under dir instead of /, so tests can use fixture trees.
func WithRoot(dir string) Option {
	return func(c *config) { c.root = dir }
}

// Symbols that Discover cannot do without. go-nvml picks the newest version of versioned
// symbols itself (nvmlDeviceGetCount_v2 ...), so the base names are checked.
var requiredSymbols = []string{
	"nvmlDeviceGetCount",
	"nvmlDeviceGetHandleByIndex",
	"nvmlDeviceGetUUID",
}

// Optional symbols, each guarding one field.
const (
	symName          = "nvmlDeviceGetName"
	symMemory        = "nvmlDeviceGetMemoryInfo"
	symPCI           = "nvmlDeviceGetPciInfo"
	symMinor         = "nvmlDeviceGetMinorNumber"
	symMIG           = "nvmlDeviceGetMigMode"
	symNUMA          = "nvmlDeviceGetNumaNodeId"
	symCPUAffinity   = "nvmlDeviceGetCpuAffinity"
	symNVLinkState   = "nvmlDeviceGetNvLinkState"
	symNVLinkRemote  = "nvmlDeviceGetNvLinkRemotePciInfo"
	symNVLinkType    = "nvmlDeviceGetNvLinkRemoteDeviceType"
	symDriverVersion = "nvmlSystemGetDriverVersion"
	symCUDAVersion   = "nvmlSystemGetCudaDriverVersion"
)

const (
	// maxAffinityCPUs sizes the CPU mask NVML fills; larger than any node's CPU count.
	maxAffinityCPUs  = 4096
	unknown          = -1
	defaultSysfsRoot = "/"
)

// Discover reports the node's GPUs. It never fails for a node without GPUs or without the
// NVIDIA driver: see the package comment for the three kinds of result. A nil logger
// discards logs.
func Discover(logger hclog.Logger, opts ...Option) (*Topology, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cfg := config{root: defaultSysfsRoot}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.lib == nil {
		cfg.lib = nvml.New()
	}
	if cfg.root == "" {
		cfg.root = defaultSysfsRoot
	}
	s := &session{lib: cfg.lib, log: logger, sysfs: os.DirFS(cfg.root), have: map[string]bool{}}

	ret := s.call("", func() nvml.Return { return s.lib.Init() })
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		logger.Info("no NVIDIA GPUs: libnvidia-ml.so.1 not found")
		return &Topology{}, nil
	case nvml.ERROR_DRIVER_NOT_LOADED:
		logger.Info("no NVIDIA GPUs: NVIDIA kernel driver not loaded")
		return &Topology{}, nil
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND:
		return nil, fmt.Errorf("init nvml: %w: %w", ErrNotSupported, ret)
	default:
		return nil, fmt.Errorf("init nvml: %w", ret)
	}
	defer func() {
		if ret := s.call("", func() nvml.Return { return s.lib.Shutdown() }); ret != nvml.SUCCESS {
			logger.Debug("nvml shutdown failed", "error", ret)
		}
	}()

	for _, sym := range requiredSymbols {
		if !s.has(sym) && !s.has(sym+"_v2") {
			return nil, fmt.Errorf("nvml lacks %s (driver too old?): %w", sym, ErrNotSupported)
		}
	}

	var count int
	ret = s.call("", func() (r nvml.Return) { count, r = s.lib.DeviceGetCount(); return r })
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("count nvml devices: %w", ret)
	}
	topo := &Topology{Driver: s.driverVersion(), CUDA: s.cudaVersion()}
	if count == 0 {
		logger.Info("no NVIDIA GPUs: nvml lists no device", "driver", topo.Driver)
		return topo, nil
	}

	var links []deviceLinks
	for i := range count {
		d, l, ok := s.device(i)
		if !ok {
			continue
		}
		topo.Devices = append(topo.Devices, d)
		links = append(links, l)
	}
	topo.NVSwitch = resolvePeers(topo.Devices, links)
	logger.Info("discovered NVIDIA GPUs", "count", len(topo.Devices), "driver", topo.Driver,
		"cuda", topo.CUDA, "nvswitch", topo.NVSwitch)
	return topo, nil
}

// session is one Discover call's view of the library.
type session struct {
	lib   nvml.Interface
	log   hclog.Logger
	sysfs fs.FS
	// have caches symbol lookups; ext is nil when the library offers no lookup.
	have    map[string]bool
	ext     nvml.ExtendedInterface
	extDone bool
}

// has reports whether the library exports symbol. A library that cannot be asked (a Go
// implementation without Extensions) is assumed to have it; call still catches its panics.
func (s *session) has(symbol string) bool {
	if v, ok := s.have[symbol]; ok {
		return v
	}
	if !s.extDone {
		s.extDone = true
		s.call("", func() nvml.Return { s.ext = s.lib.Extensions(); return nvml.SUCCESS })
	}
	ok := true
	if s.ext != nil {
		var err error
		s.call("", func() nvml.Return { err = s.ext.LookupSymbol(symbol); return nvml.SUCCESS })
		ok = err == nil
	}
	if !ok {
		s.log.Debug("nvml lacks symbol, its field stays unknown", "symbol", symbol)
	}
	s.have[symbol] = ok
	return ok
}

// call runs one NVML call. When symbol is set and the library lacks it, f is not run (the
// real library would kill the process) and the result is ERROR_FUNCTION_NOT_FOUND; a panic in
// a Go implementation of nvml.Interface gives the same result.
func (s *session) call(symbol string, f func() nvml.Return) (ret nvml.Return) {
	if symbol != "" && !s.has(symbol) {
		return nvml.ERROR_FUNCTION_NOT_FOUND
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Debug("nvml call not implemented, its field stays unknown", "symbol", symbol, "panic", r)
			ret = nvml.ERROR_FUNCTION_NOT_FOUND
			if symbol != "" {
				s.have[symbol] = false // asked once is enough
			}
		}
	}()
	return f()
}

func (s *session) driverVersion() string {
	var v string
	ret := s.call(symDriverVersion, func() (r nvml.Return) { v, r = s.lib.SystemGetDriverVersion(); return r })
	if ret != nvml.SUCCESS {
		return ""
	}
	return v
}

func (s *session) cudaVersion() string {
	var v int
	ret := s.call(symCUDAVersion, func() (r nvml.Return) { v, r = s.lib.SystemGetCudaDriverVersion(); return r })
	if ret != nvml.SUCCESS || v <= 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}

// deviceLinks is what one device's NVLinks lead to, before peers are resolved.
type deviceLinks struct {
	gpus     []string // remote bus ids of links NVML says lead to a GPU
	untyped  []string // remote bus ids of links NVML cannot type: a GPU or an NVSwitch
	nvswitch bool     // an active link goes to an NVSwitch
}

// device describes device i; ok is false when it must be left out.
func (s *session) device(i int) (Device, deviceLinks, bool) {
	var dev nvml.Device
	ret := s.call("", func() (r nvml.Return) { dev, r = s.lib.DeviceGetHandleByIndex(i); return r })
	if ret != nvml.SUCCESS {
		s.log.Warn("GPU left out: nvml gives no handle", "index", i, "error", ret)
		return Device{}, deviceLinks{}, false
	}
	d := Device{Index: i, NUMANode: unknown, MinorNumber: unknown}
	ret = s.call("", func() (r nvml.Return) { d.UUID, r = dev.GetUUID(); return r })
	if ret != nvml.SUCCESS || d.UUID == "" {
		s.log.Warn("GPU left out: nvml gives no UUID", "index", i, "error", ret)
		return Device{}, deviceLinks{}, false
	}
	log := s.log.With("index", i, "uuid", d.UUID)

	if ret := s.call(symName, func() (r nvml.Return) { d.Name, r = dev.GetName(); return r }); ret != nvml.SUCCESS {
		d.Name = ""
	}
	var mem nvml.Memory
	if ret := s.call(symMemory, func() (r nvml.Return) { mem, r = dev.GetMemoryInfo(); return r }); ret == nvml.SUCCESS {
		d.MemoryBytes = mem.Total
	}
	var pci nvml.PciInfo
	if ret := s.call(symPCI, func() (r nvml.Return) { pci, r = dev.GetPciInfo(); return r }); ret == nvml.SUCCESS {
		d.PCIBusID = busID(pci.BusId[:])
	}
	var minor int
	if ret := s.call(symMinor, func() (r nvml.Return) { minor, r = dev.GetMinorNumber(); return r }); ret == nvml.SUCCESS {
		d.MinorNumber = minor
	}
	var mig int
	if ret := s.call(symMIG, func() (r nvml.Return) { mig, _, r = dev.GetMigMode(); return r }); ret == nvml.SUCCESS {
		d.MIG = mig == nvml.DEVICE_MIG_ENABLE
	}

	var node int
	if ret := s.call(symNUMA, func() (r nvml.Return) { node, r = dev.GetNumaNodeId(); return r }); ret == nvml.SUCCESS {
		d.NUMANode = node
	} else {
		d.NUMANode = s.sysfsNUMA(d.PCIBusID)
	}
	var mask []uint
	if ret := s.call(symCPUAffinity, func() (r nvml.Return) { mask, r = dev.GetCpuAffinity(maxAffinityCPUs); return r }); ret == nvml.SUCCESS {
		d.CPUAffinity = maskCPUs(mask)
	}
	if d.CPUAffinity == nil {
		d.CPUAffinity = s.sysfsCPUs(d.PCIBusID)
	}
	links := s.nvlinks(dev, log)
	log.Debug("discovered GPU", "name", d.Name, "bus_id", d.PCIBusID, "numa_node", d.NUMANode,
		"memory_bytes", d.MemoryBytes, "mig", d.MIG, "nvlink_gpus", len(links.gpus)+len(links.untyped),
		"nvswitch", links.nvswitch)
	return d, links, true
}

// nvlinks walks the device's NVLinks up to the first link NVML rejects.
func (s *session) nvlinks(dev nvml.Device, log hclog.Logger) deviceLinks {
	var out deviceLinks
	for l := range nvml.NVLINK_MAX_LINKS {
		var state nvml.EnableState
		ret := s.call(symNVLinkState, func() (r nvml.Return) { state, r = dev.GetNvLinkState(l); return r })
		if ret == nvml.ERROR_FUNCTION_NOT_FOUND || ret == nvml.ERROR_NOT_SUPPORTED || ret == nvml.ERROR_INVALID_ARGUMENT {
			// No NVLink on this GPU, or past its last link.
			break
		}
		if ret != nvml.SUCCESS || state != nvml.FEATURE_ENABLED {
			continue
		}
		typed := false
		var kind nvml.IntNvLinkDeviceType
		ret = s.call(symNVLinkType, func() (r nvml.Return) { kind, r = dev.GetNvLinkRemoteDeviceType(l); return r })
		if ret == nvml.SUCCESS {
			switch kind {
			case nvml.NVLINK_DEVICE_TYPE_SWITCH:
				out.nvswitch = true
				continue
			case nvml.NVLINK_DEVICE_TYPE_GPU:
				typed = true
			default:
				continue // an IBM NPU or something NVML cannot name: not a GPU peer
			}
		}
		var pci nvml.PciInfo
		ret = s.call(symNVLinkRemote, func() (r nvml.Return) { pci, r = dev.GetNvLinkRemotePciInfo(l); return r })
		if ret != nvml.SUCCESS {
			log.Debug("nvlink remote unknown", "link", l, "error", ret)
			continue
		}
		id := busID(pci.BusId[:])
		switch {
		case id == "":
		case typed && !slices.Contains(out.gpus, id):
			out.gpus = append(out.gpus, id)
		case !typed && !slices.Contains(out.untyped, id):
			out.untyped = append(out.untyped, id)
		}
	}
	return out
}

// resolvePeers fills NVLinkPeers from the links and reports whether any GPU is on an
// NVSwitch. GPUs on NVSwitches reach each other; a direct link's remote bus id becomes the
// peer's UUID when the peer is one of devs. When the driver cannot type a link, a remote bus
// id that is none of devs may be an NVSwitch and is dropped.
func resolvePeers(devs []Device, links []deviceLinks) bool {
	byBus := map[string]string{}
	for _, d := range devs {
		if d.PCIBusID != "" {
			byBus[d.PCIBusID] = d.UUID
		}
	}
	anySwitch := false
	for i := range devs {
		var peers []string
		for _, id := range links[i].gpus {
			if uuid, ok := byBus[id]; ok {
				peers = append(peers, uuid)
			} else {
				peers = append(peers, id)
			}
		}
		for _, id := range links[i].untyped {
			if uuid, ok := byBus[id]; ok {
				peers = append(peers, uuid)
			}
		}
		if links[i].nvswitch {
			anySwitch = true
			for j := range devs {
				if j != i && links[j].nvswitch {
					peers = append(peers, devs[j].UUID)
				}
			}
		}
		peers = slices.DeleteFunc(peers, func(p string) bool { return p == devs[i].UUID })
		slices.Sort(peers)
		devs[i].NVLinkPeers = slices.Compact(peers)
		if len(devs[i].NVLinkPeers) == 0 {
			devs[i].NVLinkPeers = nil
		}
	}
	return anySwitch
}

// busID turns NVML's NUL-terminated bus id ("00000000:07:00.0") into sysfs form
// ("0000:07:00.0").
func busID(raw []int8) string {
	b := make([]byte, 0, len(raw))
	for _, c := range raw {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	id := strings.ToLower(strings.TrimSpace(string(b)))
	// NVML pads the PCI domain to 8 digits; sysfs and lspci use 4.
	if dom, rest, ok := strings.Cut(id, ":"); ok && len(dom) == 8 && strings.HasPrefix(dom, "0000") {
		id = dom[4:] + ":" + rest
	}
	return id
}

// maskCPUs lists the CPUs set in NVML's affinity mask (64 CPUs per word, lowest first).
func maskCPUs(mask []uint) []int {
	var cpus []int
	for w, word := range mask {
		for word != 0 {
			b := bits.TrailingZeros(word)
			cpus = append(cpus, w*bits.UintSize+b)
			word &^= 1 << b
		}
	}
	return cpus
}
