// Package netdev discovers a node's network interfaces and RDMA devices from sysfs, so that
// the agent can tell NCCL and UCX which interface and HCA to use and `shoal node info` can
// show them.
//
// Contract:
//
//   - Everything comes from sysfs, read through an fs.FS rooted at WithRoot's directory (in
//     the style of go-nvlib's WithPCIDevicesRoot), so tests run against fixture trees laid out
//     like real machines. No verbs library, no netlink and no root privilege are needed.
//     Interface addresses are the one exception: they come from net.InterfaceByName, or from
//     the lister given to WithAddrs. WithRoot does not change where addresses come from:
//     pair it with WithAddrs.
//   - Interfaces are the entries of /sys/class/net. Each entry is a symlink into /sys/devices;
//     an interface is virtual when it has no device link or lives under /sys/devices/virtual,
//     and its PCI bus id is the nearest PCI device on the way up from its device link (a
//     virtio NIC sits below one). Values the kernel cannot report (the speed of a virtual or
//     down link, the NUMA node of a machine without NUMA) are -1, never guessed.
//   - RDMA devices are the entries of /sys/class/infiniband, with their ports, states, link
//     layers, rates and non-zero GIDs. A node without /sys/class/infiniband simply has no
//     RDMA (logged at Debug); that is never an error.
//   - Detect fails only when /sys/class/net cannot be listed at all (no sysfs: a container
//     without /sys, or a platform other than Linux); the error wraps ErrNotSupported and the
//     caller falls back to its configuration. A value that is present but malformed is left
//     unknown with a Warn; a device whose directory cannot be read is left out with a Warn, so
//     what Detect reports is always usable.
//   - PreferredNIC, PreferredHCA, RDMADevice.GIDIndex and NCCLEnv are pure functions over what
//     Detect found: no I/O. The admin's allowed interface list has the final say over the
//     probe's preferences.
//
// Detect keeps no state; concurrent calls are safe.
package netdev
