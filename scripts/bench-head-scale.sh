#!/usr/bin/env bash
# Tiny tasks from one driver on 1, 3 and 9 nodes of the Slurm test cluster (scripts/slurm-cluster.sh,
# SHOAL_SLURM_NODES): tasks per second, and the head node's agent's CPU time per task, which the
# core's design keeps from growing with the number of nodes (docs/architecture.md "The core").
#
#   scripts/bench-head-scale.sh [TASKS]      (default 20000; holds /tmp/shoal-slurm.lock;
#                                            NODES="1 3" for other node counts, at most 9)
#
# The driver (on the head node) submits TASKS no-op tasks of 1 CPU in waves of 1000 and gets them;
# the head's CPU time is utime+stime of the `shoal launch` process that runs the head and its agent
# (the driver's parent), read from /proc before and after. Every "node" is a network namespace of
# this one machine, so all nodes share its CPUs: tasks/s measures the whole cluster's overhead on
# 2 cores, and the CPU ms per task is the figure to compare across node counts. Medians of 3 runs.
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-20000}
ROOT=$PWD
export SLURM_CONF=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/slurm.conf
export PATH=$ROOT/bin:$PATH PYTHONPATH=$ROOT/python${PYTHONPATH:+:$PYTHONPATH}
WORK=$(mktemp -d /tmp/shoal-bench-scale.XXXXXX)
SHOAL_RENDEZVOUS_DIR=$WORK/rdv; mkdir -m 700 "$SHOAL_RENDEZVOUS_DIR"; export SHOAL_RENDEZVOUS_DIR
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/drv.py" <<PY
import os, time
import shoal as ray
ray.init()
@ray.remote(num_cpus=1)
def noop():
    return None
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
ray.get([noop.remote() for _ in range(200)])   # workers up on every node
head = os.getppid()
c0, t0 = cpu(head), time.time()
n = $TASKS
for i in range(0, n, 1000):
    ray.get([noop.remote() for _ in range(min(1000, n - i))])
dt, dc = time.time() - t0, cpu(head) - c0
print(f"RESULT nodes={len(ray.nodes())} tasks_per_s={n / dt:.0f} head_cpu_ms_per_task={1000 * dc / n:.3f}")
PY
run() {
  local nodes=$1 out
  SHOAL_SLURM_NODES=9 ./scripts/slurm-cluster.sh down >/dev/null 2>&1 || true
  SHOAL_SLURM_NODES=$nodes ./scripts/slurm-cluster.sh up >/dev/null
  for k in 1 2 3; do
    printf '#!/bin/bash\n#SBATCH -N %s --ntasks-per-node=1 -c 2 --output=%s/out.%s.%s\nsrun shoal launch -- python3 %s/drv.py\n' \
      "$nodes" "$WORK" "$nodes" "$k" "$WORK" > "$WORK/job.sbatch"
    (cd examples/slurm && timeout 600 sbatch --wait "$WORK/job.sbatch" >/dev/null)
    grep RESULT "$WORK/out.$nodes.$k" || { cat "$WORK/out.$nodes.$k"; return 1; }
  done
}
export -f run
export WORK TASKS NODES
flock /tmp/shoal-slurm.lock bash -c 'rc=0; for n in ${NODES:-1 3 9}; do run $n || rc=1; done; SHOAL_SLURM_NODES=9 ./scripts/slurm-cluster.sh down >/dev/null 2>&1; exit $rc' | tee "$WORK/all.txt"
python3 - "$WORK/all.txt" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.search(r"nodes=(\d+) tasks_per_s=(\d+) head_cpu_ms_per_task=([\d.]+)", line)
    if m:
        rows.setdefault(int(m[1]), []).append((float(m[2]), float(m[3])))
print("| nodes | tasks/s (median of 3) | head CPU ms per task |")
print("| --- | --- | --- |")
for n in sorted(rows):
    print(f"| {n} | {statistics.median(r[0] for r in rows[n]):,.0f} | {statistics.median(r[1] for r in rows[n]):.3f} |")
PY
