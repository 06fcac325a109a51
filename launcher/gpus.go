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
