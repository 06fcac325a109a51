// Package yarn runs a shoal cluster on Hadoop YARN with no JVM on the user's side.
//
// The client side (Client) speaks the ResourceManager's REST API on clusters without Kerberos,
// naming the user with `user.name`: it asks for a new application, submits it with the
// ApplicationMaster's container spec (the shoal binary and the user's files as local resources
// with their exact size and modification time), follows its state, kills it and reads its final
// status. Submit ties these together for `shoal yarn submit`.
//
// The cluster side is the shoal binary itself: `shoal yarn am` is the ApplicationMaster (RunAM),
// which registers with the ResourceManager over Hadoop IPC (package yarn/ipc), runs the head and
// the driver in its own container, asks for the member containers and starts `shoal yarn agent`
// (RunMember) in each through the NodeManagers. The member agents join the head with the same
// NODE_JOIN protocol `shoal launch` uses on Slurm; the cluster's secret reaches them in the
// container's token file, never on a command line or in the environment.
//
//	client ──REST──> RM ──> AM container: shoal yarn am ─┬─ head + agent + driver
//	                                                     └─ NM.startContainers ──> shoal yarn agent ──NODE_JOIN──> head
package yarn
