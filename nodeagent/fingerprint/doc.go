// Package fingerprint discovers what a node agent may offer: the CPUs and memory this
// process is allowed to use, with the machine's topology around them.
//
// Contract:
//
//   - CPUs are the process's affinity mask (sched_getaffinity), never the machine's CPU count:
//     an agent started under taskset, a Slurm cpuset or a container offers only what it got.
//     Topology (sockets, cores, threads per core, NUMA nodes) counts only those CPUs.
//   - Memory is MemTotal from /proc/meminfo lowered to the smallest cgroup memory limit found
//     on the way from this process's cgroup up to the root, in cgroup v2 (memory.max) and in
//     cgroup v1 (memory.limit_in_bytes), hybrid layouts included. Node.MemorySource names the
//     file that set the figure.
//   - The cgroup CPU quota (cpu.max, or cpu.cfs_quota_us/cpu.cfs_period_us) is reported in
//     CPUs; Node.OfferCPUs applies it.
//   - Optional sources may be missing (no cgroups mounted, no /sys in a container): Detect then
//     falls back, logs at Debug, and succeeds. A source that is present but malformed is
//     ignored with a Warn. Detect fails only when the affinity mask cannot be read or no memory
//     size can be found at all.
//
// Each capability is a Fingerprinter built from a factory map, in the style of Nomad's client
// fingerprinters, and reads the node through an fs.FS rooted at WithRoot's directory so tests
// run against fixture trees in testdata/. Linux is the supported platform; elsewhere only
// runtime.NumCPU is reported and memory is unknown.
//
// Detect does not keep state; concurrent calls are safe.
package fingerprint
