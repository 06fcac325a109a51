package launcher

import (
	"fmt"
	"os"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/hashicorp/go-hclog"

	"github.com/shoal-hpc/shoal/nodeagent/gpu"
)

// MockEnv names go-nvml's mock machine to discover instead of the real NVML: "dgxh100" or
// "dgxa100". It exists for tests on machines without GPUs (NVML is the hardware boundary
// this project may fake, with the library's own mocks); never set it in production.
const MockEnv = "SHOAL_NVML_MOCK"

func discoverGPUs(log hclog.Logger) (*gpu.Topology, error) {
	var opts []gpu.Option
	switch m := os.Getenv(MockEnv); m {
	case "":
	case "dgxh100":
		opts = append(opts, gpu.WithLibrary(nvml.Interface(dgxh100.New())))
	case "dgxa100":
		opts = append(opts, gpu.WithLibrary(nvml.Interface(dgxa100.New())))
	default:
		return nil, fmt.Errorf("%s=%q: the mock machines are dgxh100 and dgxa100", MockEnv, m)
	}
	t, err := gpu.Discover(log.Named("gpu"), opts...)
	if err != nil {
		log.Warn("GPU discovery failed; this node offers no GPUs", "error", err)
		return &gpu.Topology{}, nil
	}
	return t, nil
}

// narrowGPUs keeps the devices whose index Slurm gave the job; without NVML devices, Slurm's
// indices become devices of unknown topology.
func narrowGPUs(t *gpu.Topology, slurmGPUs []int) *gpu.Topology {
	if slurmGPUs == nil {
		return t
	}
	out := &gpu.Topology{NVSwitch: t.NVSwitch, Driver: t.Driver, CUDA: t.CUDA}
	if len(t.Devices) == 0 {
		for _, i := range slurmGPUs {
			out.Devices = append(out.Devices, gpu.Device{Index: i, NUMANode: -1, MinorNumber: -1})
		}
		return out
	}
	want := map[int]bool{}
	for _, i := range slurmGPUs {
		want[i] = true
	}
	for _, d := range t.Devices {
		if want[d.Index] {
			out.Devices = append(out.Devices, d)
		}
	}
	return out
}
