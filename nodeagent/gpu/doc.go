// Package gpu discovers the node's NVIDIA GPUs through NVML and picks GPUs for a task.
//
// Contract:
//
//   - NVML is go-nvml's binding, which opens libnvidia-ml.so.1 with dlopen at run time, so the
//     agent builds and runs on nodes without the driver. Everything here works against
//     nvml.Interface; WithLibrary injects go-nvml's mock machines (pkg/nvml/mock/dgxh100, ...)
//     in tests.
//   - Discover follows the three-way probe contract of cilium/ebpf's features package:
//     nil error: the answer, which may be zero GPUs. A node where libnvidia-ml.so.1 is missing
//     (ERROR_LIBRARY_NOT_FOUND), where the kernel driver is not loaded
//     (ERROR_DRIVER_NOT_LOADED) or where NVML counts no device is a normal node without GPUs:
//     Discover returns an empty Topology, nil, and logs one Info line saying why.
//     errors.Is(err, ErrNotSupported): NVML is there but cannot describe the GPUs (a driver so
//     old that a required symbol is missing, or Init answers NOT_SUPPORTED); the caller falls
//     back to the admin's configuration or to CUDA_VISIBLE_DEVICES.
//     Any other error is inconclusive (Init failed with NO_PERMISSION, a GPU fell off the bus
//     while counting): GPUs may exist, the caller decides and says so in its log.
//   - Optional fields come from optional symbols. Calling a symbol the driver lacks kills the
//     process, so every optional NVML call is guarded by ExtendedInterface.LookupSymbol; a Go
//     implementation of nvml.Interface that panics on an unimplemented method (go-nvml's moq
//     mocks do) is treated the same way. Either way the field is reported as unknown (-1, nil
//     or "") and logged at Debug, never guessed. NUMA node and CPU affinity fall back to sysfs
//     (/sys/bus/pci/devices/<bus id>/numa_node and local_cpulist) when NVML cannot say.
//   - A device that NVML lists but cannot describe (its handle or UUID fails) is left out with
//     a Warn, so what Discover reports is always usable.
//
// Pick is a pure function over a Topology: no NVML, no I/O.
//
// Discover keeps no state between calls; concurrent calls are safe as far as NVML's own
// reference-counted Init/Shutdown is.
package gpu
