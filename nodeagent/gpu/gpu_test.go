package gpu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/nodeagent/fingerprint"
)

const mib = 1 << 20

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: t.Output()})
}

// TestDiscoverMockMachines runs Discover against go-nvml's DGX mocks as they come. They
// describe each GPU (name, memory, UUID, minor number, MIG mode) and the driver, but not
// where the GPU sits: their GetPciInfo fills only the PCI device id, and they implement no
// NUMA, CPU affinity or NVLink call. Those fields must come out unknown, not guessed.
func TestDiscoverMockMachines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lib    *server.Server
		gpu    string
		memory uint64
	}{
		{"dgxh100", dgxh100.New(), "NVIDIA H100 80GB HBM3", 81920 * mib},
		{"dgxa100", dgxa100.New(), "Mock NVIDIA A100-SXM4-40GB", 40960 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo, err := Discover(testLogger(t), WithLibrary(tc.lib), WithRoot(t.TempDir()))
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if got := len(topo.Devices); got != 8 {
				t.Fatalf("got %d GPUs, want 8", got)
			}
			if topo.Driver != "550.54.15" || topo.CUDA != "12.4" {
				t.Errorf("driver %q cuda %q, want 550.54.15 and 12.4", topo.Driver, topo.CUDA)
			}
			if topo.NVSwitch {
				t.Error("NVSwitch reported, but the mock has no NVLink calls")
			}
			seen := map[string]bool{}
			for i, d := range topo.Devices {
				if d.Index != i || d.MinorNumber != i {
					t.Errorf("GPU %d: index %d minor %d, want %d and %d", i, d.Index, d.MinorNumber, i, i)
				}
				if d.Name != tc.gpu {
					t.Errorf("GPU %d: name %q, want %q", i, d.Name, tc.gpu)
				}
				if d.MemoryBytes != tc.memory {
					t.Errorf("GPU %d: memory %d, want %d", i, d.MemoryBytes, tc.memory)
				}
				if !strings.HasPrefix(d.UUID, "GPU-") || seen[d.UUID] {
					t.Errorf("GPU %d: UUID %q is not a fresh GPU- id", i, d.UUID)
				}
				seen[d.UUID] = true
				if d.MIG {
					t.Errorf("GPU %d: MIG on, the mock starts with MIG off", i)
				}
				// Unknown because the mock does not provide them.
				if d.PCIBusID != "" || d.NUMANode != -1 || d.CPUAffinity != nil || d.NVLinkPeers != nil {
					t.Errorf("GPU %d: bus id %q numa %d cpus %v peers %v, want all unknown",
						i, d.PCIBusID, d.NUMANode, d.CPUAffinity, d.NVLinkPeers)
				}
			}
		})
	}
}

func TestDiscoverMIGMode(t *testing.T) {
	lib := dgxh100.New()
	if ret, _ := lib.Devices[3].SetMigMode(nvml.DEVICE_MIG_ENABLE); ret != nvml.SUCCESS {
		t.Fatalf("SetMigMode: %v", ret)
	}
	topo, err := Discover(testLogger(t), WithLibrary(lib), WithRoot(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range topo.Devices {
		if d.MIG != (d.Index == 3) {
			t.Errorf("GPU %d: MIG %v", d.Index, d.MIG)
		}
	}
}

// dgxH100Bus are the bus ids of a real DGX H100: four GPUs per socket.
var dgxH100Bus = []string{
	"0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0", "0000:5d:00.0",
	"0000:9a:00.0", "0000:ab:00.0", "0000:ba:00.0", "0000:db:00.0",
}

// nvmlBus writes a bus id the way NVML does, with an 8-digit domain, upper case.
func nvmlBus(id string) [32]int8 {
	var out [32]int8
	for i, c := range []byte(strings.ToUpper("0000" + id)) {
		out[i] = int8(c)
	}
	return out
}

// completeH100 fills in what the dgxh100 mock lacks, as a real DGX H100 reports it: bus ids,
// NUMA nodes 0 and 1 (112 CPUs each, with SMT siblings), and 18 NVLinks per GPU, all to
// NVSwitches.
func completeH100(lib *server.Server) {
	for i, d := range lib.Devices {
		dev := d.(*server.Device)
		node := i / 4
		dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			return nvml.PciInfo{BusId: nvmlBus(dgxH100Bus[i]), PciDeviceId: dev.Config.PciDeviceId}, nvml.SUCCESS
		}
		dev.GetNumaNodeIdFunc = func() (int, nvml.Return) { return node, nvml.SUCCESS }
		dev.GetCpuAffinityFunc = func(numCPUs int) ([]uint, nvml.Return) {
			mask := make([]uint, 4) // CPUs 0-255
			for _, c := range h100CPUs(node) {
				mask[c/64] |= 1 << (c % 64)
			}
			return mask, nvml.SUCCESS
		}
		dev.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
			if link >= 18 {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		dev.GetNvLinkRemoteDeviceTypeFunc = func(int) (nvml.IntNvLinkDeviceType, nvml.Return) {
			return nvml.NVLINK_DEVICE_TYPE_SWITCH, nvml.SUCCESS
		}
		dev.GetNvLinkRemotePciInfoFunc = func(link int) (nvml.PciInfo, nvml.Return) {
			return nvml.PciInfo{BusId: nvmlBus(fmt.Sprintf("0000:%02x:00.0", 0xe0+link%4))}, nvml.SUCCESS
		}
	}
}

func h100CPUs(node int) []int {
	var cpus []int
	for c := range 56 {
		cpus = append(cpus, node*56+c, 112+node*56+c)
	}
	slices.Sort(cpus)
	return cpus
}

func TestDiscoverDGXH100Topology(t *testing.T) {
	lib := dgxh100.New()
	completeH100(lib)
	topo, err := Discover(testLogger(t), WithLibrary(lib), WithRoot(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if !topo.NVSwitch {
		t.Error("NVSwitch not reported")
	}
	var uuids []string
	for _, d := range topo.Devices {
		uuids = append(uuids, d.UUID)
	}
	for i, d := range topo.Devices {
		if d.PCIBusID != dgxH100Bus[i] {
			t.Errorf("GPU %d: bus id %q, want %q", i, d.PCIBusID, dgxH100Bus[i])
		}
		if d.NUMANode != i/4 {
			t.Errorf("GPU %d: NUMA node %d, want %d", i, d.NUMANode, i/4)
		}
		if !slices.Equal(d.CPUAffinity, h100CPUs(i/4)) {
			t.Errorf("GPU %d: CPU affinity %v, want %v", i, d.CPUAffinity, h100CPUs(i/4))
		}
		// Through the NVSwitches every GPU reaches the seven others, and no switch shows
		// up as a peer.
		want := slices.DeleteFunc(slices.Clone(uuids), func(u string) bool { return u == d.UUID })
		slices.Sort(want)
		if !slices.Equal(d.NVLinkPeers, want) {
			t.Errorf("GPU %d: peers %v, want %v", i, d.NVLinkPeers, want)
		}
	}
}

// pairedA100 links the dgxa100 mock's GPUs in pairs (0-1, 2-3, ...) with 3 direct NVLinks
// each, like PCIe cards with NVLink bridges, on NUMA node i/4. A fourth link leads to
// 0000:e0:00.0, a GPU that is not in the list (another partition's, say). With oldDriver it
// also takes away the symbols a driver from before R535 lacks, and with them the type of
// the far end of each link.
func pairedA100(oldDriver bool) *server.Server {
	lib := dgxa100.New()
	bus := func(i int) string { return fmt.Sprintf("0000:%02x:00.0", 0x10+i) }
	for i, d := range lib.Devices {
		dev := d.(*server.Device)
		dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			return nvml.PciInfo{BusId: nvmlBus(bus(i))}, nvml.SUCCESS
		}
		dev.GetNumaNodeIdFunc = func() (int, nvml.Return) { return i / 4, nvml.SUCCESS }
		dev.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
			if link >= 12 {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			if link >= 4 {
				return nvml.FEATURE_DISABLED, nvml.SUCCESS
			}
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		dev.GetNvLinkRemoteDeviceTypeFunc = func(int) (nvml.IntNvLinkDeviceType, nvml.Return) {
			return nvml.NVLINK_DEVICE_TYPE_GPU, nvml.SUCCESS
		}
		dev.GetNvLinkRemotePciInfoFunc = func(link int) (nvml.PciInfo, nvml.Return) {
			if link == 3 {
				return nvml.PciInfo{BusId: nvmlBus("0000:e0:00.0")}, nvml.SUCCESS
			}
			return nvml.PciInfo{BusId: nvmlBus(bus(i ^ 1))}, nvml.SUCCESS
		}
	}
	if oldDriver {
		lib.LookupSymbolFunc = func(s string) error {
			switch s {
			case symNUMA, symNVLinkType:
				return fmt.Errorf("%s: undefined symbol", s)
			}
			return nil
		}
		// Were Discover to call them anyway, the real library would kill the process.
		for _, d := range lib.Devices {
			dev := d.(*server.Device)
			dev.GetNumaNodeIdFunc = nil
			dev.GetNvLinkRemoteDeviceTypeFunc = nil
		}
	}
	return lib
}

func TestDiscoverDirectNVLinks(t *testing.T) {
	topo, err := Discover(testLogger(t), WithLibrary(pairedA100(false)), WithRoot(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if topo.NVSwitch {
		t.Error("NVSwitch reported on a machine of direct links")
	}
	for i, d := range topo.Devices {
		// A peer outside the list is named by its bus id.
		want := []string{"0000:e0:00.0", topo.Devices[i^1].UUID}
		if !slices.Equal(d.NVLinkPeers, want) {
			t.Errorf("GPU %d: peers %v, want %v", i, d.NVLinkPeers, want)
		}
		if d.NUMANode != i/4 {
			t.Errorf("GPU %d: NUMA node %d, want %d", i, d.NUMANode, i/4)
		}
	}
}

// TestDiscoverOldDriver checks that symbols the driver lacks are never called (the mock
// functions are nil, so a call would panic and the field would stay unknown) and that NUMA
// nodes and CPU lists then come from sysfs.
func TestDiscoverOldDriver(t *testing.T) {
	root := t.TempDir()
	for i := range 8 {
		dir := filepath.Join(root, "sys/bus/pci/devices", fmt.Sprintf("0000:%02x:00.0", 0x10+i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		node := fmt.Sprint(1 - i/4) // deliberately not what NVML would say
		cpus := map[string]string{"0": "0-3", "1": "4-7"}[node]
		if i == 7 {
			node, cpus = "-1", "" // a machine without NUMA writes -1
		}
		for name, v := range map[string]string{"numa_node": node + "\n", "local_cpulist": cpus + "\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	lib := pairedA100(true)
	var numaCalls int
	for _, d := range lib.Devices {
		numaCalls += len(d.(*server.Device).GetNumaNodeIdCalls())
	}
	topo, err := Discover(testLogger(t), WithLibrary(lib), WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range lib.Devices {
		numaCalls += len(d.(*server.Device).GetNumaNodeIdCalls())
	}
	if numaCalls != 0 {
		t.Errorf("nvmlDeviceGetNumaNodeId called %d times though the driver lacks it", numaCalls)
	}
	for i, d := range topo.Devices {
		wantNode, wantCPUs := 1-i/4, []int{0, 1, 2, 3}
		if wantNode == 1 {
			wantCPUs = []int{4, 5, 6, 7}
		}
		if i == 7 {
			wantNode, wantCPUs = -1, nil
		}
		if d.NUMANode != wantNode || !slices.Equal(d.CPUAffinity, wantCPUs) {
			t.Errorf("GPU %d: NUMA %d CPUs %v, want %d %v (from sysfs)", i, d.NUMANode, d.CPUAffinity, wantNode, wantCPUs)
		}
		// Without link types, links whose far end is one of the GPUs still count; the
		// link to 0000:e0:00.0 might lead to an NVSwitch and is dropped.
		if want := []string{topo.Devices[i^1].UUID}; !slices.Equal(d.NVLinkPeers, want) {
			t.Errorf("GPU %d: peers %v, want %v", i, d.NVLinkPeers, want)
		}
	}
}

// TestDiscoverNoGPUs covers nodes where NVML cannot be used, through a fake library.
func TestDiscoverNoGPUs(t *testing.T) {
	fake := func(init nvml.Return, count int, lacks string) *mock.Interface {
		lib := &mock.Interface{
			InitFunc:                       func() nvml.Return { return init },
			ShutdownFunc:                   func() nvml.Return { return nvml.SUCCESS },
			DeviceGetCountFunc:             func() (int, nvml.Return) { return count, nvml.SUCCESS },
			SystemGetDriverVersionFunc:     func() (string, nvml.Return) { return "535.161.08", nvml.SUCCESS },
			SystemGetCudaDriverVersionFunc: func() (int, nvml.Return) { return 12020, nvml.SUCCESS },
		}
		ext := &mock.ExtendedInterface{LookupSymbolFunc: func(s string) error {
			if strings.HasPrefix(s, lacks) && lacks != "" {
				return errors.New("undefined symbol")
			}
			return nil
		}}
		lib.ExtensionsFunc = func() nvml.ExtendedInterface { return ext }
		return lib
	}
	for _, tc := range []struct {
		name    string
		lib     nvml.Interface
		wantErr error // nil: empty topology and nil error
		inconcl bool
		logs    string
	}{
		{name: "library missing", lib: fake(nvml.ERROR_LIBRARY_NOT_FOUND, 0, ""), logs: "libnvidia-ml.so.1 not found"},
		{name: "driver not loaded", lib: fake(nvml.ERROR_DRIVER_NOT_LOADED, 0, ""), logs: "driver not loaded"},
		{name: "zero devices", lib: fake(nvml.SUCCESS, 0, ""), logs: "nvml lists no device"},
		{name: "required symbol missing", lib: fake(nvml.SUCCESS, 8, "nvmlDeviceGetUUID"), wantErr: ErrNotSupported},
		{name: "init not supported", lib: fake(nvml.ERROR_NOT_SUPPORTED, 0, ""), wantErr: ErrNotSupported},
		{name: "no permission", lib: fake(nvml.ERROR_NO_PERMISSION, 0, ""), inconcl: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: &buf})
			topo, err := Discover(logger, WithLibrary(tc.lib))
			switch {
			case tc.inconcl:
				if err == nil || errors.Is(err, ErrNotSupported) {
					t.Fatalf("err = %v, want an inconclusive error", err)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			default:
				if err != nil || topo == nil || len(topo.Devices) != 0 {
					t.Fatalf("got %+v, %v; want an empty topology and nil", topo, err)
				}
				lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
				if len(lines) != 1 || !strings.Contains(lines[0], tc.logs) {
					t.Errorf("logged %q, want one line saying %q", buf.String(), tc.logs)
				}
			}
		})
	}
}

// TestDiscoverHost runs Discover with the node's own NVML. This machine has no NVIDIA driver,
// so libnvidia-ml.so.1 is missing: zero GPUs and no error, not a crash. On a GPU machine it
// only checks that discovery succeeds.
func TestDiscoverHost(t *testing.T) {
	topo, err := Discover(testLogger(t))
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if _, statErr := os.Stat("/dev/nvidiactl"); statErr != nil {
		if len(topo.Devices) != 0 {
			t.Errorf("found %d GPUs on a node without /dev/nvidiactl", len(topo.Devices))
		}
		return
	}
	t.Logf("this node has the NVIDIA driver: %d GPUs, driver %s, CUDA %s", len(topo.Devices), topo.Driver, topo.CUDA)
}

func TestBusID(t *testing.T) {
	for raw, want := range map[string]string{
		"00000000:07:00.0": "0000:07:00.0",
		"00000000:DB:00.0": "0000:db:00.0",
		"00010000:07:00.0": "00010000:07:00.0", // a domain that needs 8 digits stays whole
		"0000:3A:00.0":     "0000:3a:00.0",
		"":                 "",
	} {
		var b [32]int8
		for i, c := range []byte(raw) {
			b[i] = int8(c)
		}
		if got := busID(b[:]); got != want {
			t.Errorf("busID(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  bool
	}{
		{in: "0-3,8,10-11\n", want: []int{0, 1, 2, 3, 8, 10, 11}},
		{in: "5,1-2,2", want: []int{1, 2, 5}},
		{in: "", want: nil},
		{in: "3-1", err: true},
		{in: "a", err: true},
		{in: "-1", err: true},
	} {
		got, err := fingerprint.ParseCPUList(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("fingerprint.ParseCPUList(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestMaskCPUs(t *testing.T) {
	got := maskCPUs([]uint{0b1011, 1 << 63, 1})
	if want := []int{0, 1, 3, 127, 128}; !slices.Equal(got, want) {
		t.Errorf("maskCPUs = %v, want %v", got, want)
	}
}
