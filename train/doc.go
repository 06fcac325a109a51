// Package train runs a gang of training ranks on a shoal cluster, the way torchrun does on
// one node and `torchrun --rdzv-backend c10d` on many: `shoal train -- python train.py`.
//
// Contract:
//
//   - The N ranks are actors (type RankActor, served by the shoal binary itself) placed in
//     one placement group of N bundles, so they are placed all at once or not at all; a
//     cluster that can never hold them is an error that says what was asked and what the
//     cluster has. No scheduling happens here: sched.PlaceBundles decides.
//   - Ranks are numbered by Layout, a pure function: nodes in the cluster's order (the head
//     node first), ranks of one node consecutive, in the order of their GPUs. Env gives each
//     rank the variables torch.distributed, DeepSpeed and Lightning read; MASTER_PORT is a
//     port bound on rank 0's node (see ReservePort) and held there, never a guess.
//   - A rank that exits non-zero, dies, or loses its node stops the whole gang (SIGTERM, then
//     SIGKILL after the grace period) and, while restarts are left, the gang is started again
//     with TORCHELASTIC_RESTART_COUNT one higher and SHOAL_TRAIN_CHECKPOINT naming the last
//     checkpoint world rank 0 reported (shoal.train.report in Python writes such reports to
//     the pipe named by SHOAL_TRAIN_REPORT_FD). Run returns the failing rank's exit code
//     and last output when no restart is left.
//   - Signals given to Run's context reach every rank's process.
//
// Gang lifecycle (one attempt):
//
//	placement group ─> N RankActors ─> Info (node, GPUs, NCCL NIC/HCA) ─> Layout
//	  ─> ReservePort on rank 0 ─> Start(env) on all ─> Poll until all exit 0 (done)
//	                                                    or one fails ─> Stop all ─> next attempt
package train
