#!/usr/bin/env bash
# Member-local scheduling against every task through the head (docs/architecture.md "Member-local
# scheduling"), on 3 and 9 nodes of the Slurm test cluster (scripts/slurm-cluster.sh), in one run:
# one task per node (a STRICT_SPREAD placement group) submits its share of TASKS no-op tasks in
# waves of 500 and gets them. Reported: tasks/s, and the head node's agent's CPU time per task
# (utime+stime of the `shoal launch` process that runs the head and the driver), with local tasks
# (the default) and with --no-local-tasks, and the ratio. Medians of 3 runs each, alternated.
#
#   scripts/bench-local.sh [TASKS]      (default 18000; holds /tmp/shoal-slurm.lock; NODES="3 9")
#
# Every "node" is a network namespace of this one machine: all share its CPUs, so tasks/s is the
# whole cluster's overhead on them, and the head's CPU per task is the figure that says whether
# the head is on the path of the work.
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-18000}
ROOT=$PWD
export SLURM_CONF=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/slurm.conf
export PATH=$ROOT/bin:$PATH PYTHONPATH=$ROOT/python${PYTHONPATH:+:$PYTHONPATH}
WORK=$(mktemp -d /tmp/shoal-bench-local.XXXXXX)
chmod 755 "$WORK"
SHOAL_RENDEZVOUS_DIR=$WORK/rdv; mkdir -m 700 "$SHOAL_RENDEZVOUS_DIR"; export SHOAL_RENDEZVOUS_DIR
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/drv.py" <<PY
import os, sys, time
import shoal as ray
from shoal.util.placement_group import placement_group
from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy
ray.init()
nodes = len(ray.nodes())
pg = placement_group([{"CPU": 1}] * nodes, strategy="STRICT_SPREAD")
ray.get(pg.ready(), timeout=60)

@ray.remote
def noop():
    return None

@ray.remote(num_cpus=1)
def fan(n):
    for i in range(0, n, 500):
        ray.get([noop.remote() for _ in range(min(500, n - i))])

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def on(b):
    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b)

ray.get([fan.options(scheduling_strategy=on(b)).remote(200) for b in range(nodes)])  # workers up
head = os.getppid()
per = $TASKS // nodes
c0, t0 = cpu(head), time.time()
ray.get([fan.options(scheduling_strategy=on(b)).remote(per) for b in range(nodes)])
dt, dc = time.time() - t0, cpu(head) - c0
n = per * nodes
print(f"RESULT nodes={nodes} mode={sys.argv[1]} tasks_per_s={n / dt:.0f} head_cpu_ms_per_task={1000 * dc / n:.4f}")
PY
run() {
  local nodes=$1 out
  SHOAL_SLURM_NODES=9 ./scripts/slurm-cluster.sh down >/dev/null 2>&1 || true
  SHOAL_SLURM_NODES=$nodes ./scripts/slurm-cluster.sh up >/dev/null
  for k in 1 2 3; do
    for mode in local head; do
      args=""; [[ $mode == head ]] && args="--no-local-tasks"
      printf '#!/bin/bash\n#SBATCH -N %s --ntasks-per-node=1 -c 2 --output=%s/out.%s.%s.%s\nsrun shoal launch %s -- python3 %s/drv.py %s\n' \
        "$nodes" "$WORK" "$nodes" "$mode" "$k" "$args" "$WORK" "$mode" > "$WORK/job.sbatch"
      (cd examples/slurm && timeout 600 sbatch --wait "$WORK/job.sbatch" >/dev/null)
      grep RESULT "$WORK/out.$nodes.$mode.$k" || { cat "$WORK/out.$nodes.$mode.$k"; return 1; }
    done
  done
}
export -f run
export WORK TASKS NODES
flock /tmp/shoal-slurm.lock bash -c 'rc=0; for n in ${NODES:-3 9}; do run $n || rc=1; done; SHOAL_SLURM_NODES=9 ./scripts/slurm-cluster.sh down >/dev/null 2>&1; exit $rc' | tee "$WORK/all.txt"
python3 - "$WORK/all.txt" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.search(r"nodes=(\d+) mode=(\w+) tasks_per_s=(\d+) head_cpu_ms_per_task=([\d.]+)", line)
    if m:
        rows.setdefault((int(m[1]), m[2]), []).append((float(m[3]), float(m[4])))
print("| nodes | local tasks: tasks/s | head CPU ms per task | through the head: tasks/s | head CPU ms per task | head CPU, local / head |")
print("| --- | --- | --- | --- | --- | --- |")
for n in sorted({k[0] for k in rows}):
    lo, hd = rows.get((n, "local"), []), rows.get((n, "head"), [])
    if not lo or not hd:
        continue
    lt, lc = statistics.median(r[0] for r in lo), statistics.median(r[1] for r in lo)
    ht, hc = statistics.median(r[0] for r in hd), statistics.median(r[1] for r in hd)
    print(f"| {n} | {lt:,.0f} | {lc:.4f} | {ht:,.0f} | {hc:.4f} | {lc / hc:.2f} |")
PY
