// Package confine limits which device files a worker may open, so that a worker given two
// GPUs cannot open the other six.
//
// A Group is a cgroup v2 directory with a BPF_PROG_TYPE_CGROUP_DEVICE program attached. The
// program is built in Go with cilium/ebpf's asm package (no clang, no object files) from an
// allow list of Rules, in the manner of runc's devicefilter: a device that no rule allows is
// denied, and an open of it fails with EPERM. The kernel checks at open(2) and mknod(2), not at
// read or write, so a process must be in the group before it opens the device: start it
// there (SysProcAttr.UseCgroupFD with an open Group.Dir) or AddProcess it before it runs
// anything that opens GPUs. File descriptors opened before that stay usable.
//
// Contract:
//
//   - DeviceProgram, the Rules helpers, ReadMajors and FindCgroup2 are pure and work on any
//     platform; DeviceProgram's output is pinned by golden files in testdata/.
//   - New probes once whether this process can confine: a cgroup v2 hierarchy (pure v2 or the
//     hybrid layout's unified mount), a kernel with CGROUP_DEVICE programs, the privilege to
//     load and attach them, and a writable parent cgroup. It follows cilium/ebpf's three-way
//     contract: nil means supported; an error wrapping ErrNotSupported means this node cannot
//     confine, and New has said so once at Warn: the caller falls back to device visibility
//     through CUDA_VISIBLE_DEVICES alone; any other error is inconclusive and the caller
//     decides. Errors that come from cilium/ebpf keep their chain (ebpf.ErrNotSupported,
//     syscall errnos).
//   - Groups live under one parent cgroup, by default a shoal-<pid> directory below this
//     process's own cgroup v2, so that the job's resource limits and Slurm's process tracking
//     still cover the workers. Confiner.Close removes what New and Confine created.
//   - Programs that ancestors attached in multi mode (systemd's, runc's) keep applying: the
//     kernel runs them all and a device must pass each, so a Group only narrows what its
//     ancestors allow. (A program an ancestor attached in the old override mode is replaced
//     for the Group's processes, as the kernel defines that mode.)
//
// Confiner and Group are safe for concurrent use.
package confine
