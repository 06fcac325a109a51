#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# The scheduling core (sched.Core) on the real 3-node Slurm cluster, as a user would see it:
# tasks in the bundles of a STRICT_SPREAD group that submit tasks and wait for them finish;
# get_runtime_context() names the node the code runs on; a task that holds a large argument's
# node runs there; cancel() reaches a task on a member node. Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-core.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

cat > "$WORK/core.py" <<'PY'
import os, time
import shoal as ray
from shoal.util.placement_group import placement_group
from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init()

@ray.remote(num_cpus=1)
def leaf(i):
    return i

@ray.remote(num_cpus=1)
def fan(k):
    node = ray.get_runtime_context().get_node_id()
    return node, sum(ray.get([leaf.remote(i) for i in range(k)]))

pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
ray.get(pg.ready(), timeout=60)
refs = [fan.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b)).remote(20)
        for b in range(3)]
res = ray.get(refs, timeout=60)
print("SPREAD_NODES", sorted(n for n, _ in res))
print("SPREAD_SUMS", sorted(s for _, s in res))

# a large object made on one member node pulls the task that reads it there
@ray.remote(num_cpus=1)
def make():
    return os.environ["SHOAL_NODE_ID"], b"x" * (8 << 20)

@ray.remote(num_cpus=1)
def size(t):
    return t[0], len(t[1]), os.environ["SHOAL_NODE_ID"]

big = make.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=2)).remote()
made_on, n, read_on = ray.get(size.remote(big), timeout=60)
print("LOCALITY", made_on, read_on, n)

# cancel reaches a task running on a member node
@ray.remote(num_cpus=1)
def spin():
    time.sleep(120)

r = spin.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=1)).remote()
time.sleep(2)
t0 = time.time()
ray.cancel(r)
try:
    ray.get(r, timeout=60)
    print("CANCEL none")
except ray.exceptions.TaskCancelledError:
    print("CANCEL ok", round(time.time() - t0, 1))
PY
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 -c 2 --output=%s/core.out\nsrun shoal launch -- python3 %s/core.py\n' "$WORK" "$WORK" > "$WORK/core.sbatch"
(cd "$ROOT/examples/slurm" && timeout 180 sbatch --wait "$WORK/core.sbatch" >/dev/null 2>&1); rc=$?
out=$(cat "$WORK/core.out" 2>/dev/null)

if [[ $rc == 0 ]] && has "$out" "SPREAD_SUMS \[190, 190, 190\]"; then
  ok "tasks in a STRICT_SPREAD group's bundles that submit 20 tasks each and wait for them finish"
else bad "STRICT_SPREAD nested tasks" "rc=$rc" "$out"; fi
if has "$out" "SPREAD_NODES \['node1', 'node2', 'node3'\]"; then
  ok "get_runtime_context().get_node_id() names the node each bundle's task runs on"
else bad "runtime context node id" "$out"; fi
if grep -Eq "LOCALITY (node[0-9]) \1 8388608" <<<"$out"; then
  ok "a task runs on the node that holds its 8 MiB argument"
else bad "argument locality" "$out"; fi
if has "$out" "CANCEL ok"; then
  ok "cancel() interrupts a task running on a member node"
else bad "cancel on a member" "$out"; fi

# a worker that cannot start on a member node: the task fails with that worker's stderr
cat > "$WORK/broken.sh" <<'SH'
#!/bin/sh
echo "libpython3.11.so.1.0: cannot open shared object file (broken-marker)" >&2
exit 127
SH
chmod +x "$WORK/broken.sh"
cat > "$WORK/broken.py" <<PY
import sys
sys.executable = "$WORK/broken.sh"
import shoal as ray
from shoal.util.placement_group import placement_group
from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy
ray.init()
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
ray.get(pg.ready(), timeout=60)
f = ray.remote(num_cpus=1)(lambda: 1)
try:
    ray.get(f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=2)).remote(), timeout=60)
    print("BROKEN none")
except ray.exceptions.WorkerCrashedError as e:
    print("BROKEN", str(e).replace("\\n", " | "))
PY
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 -c 2 --output=%s/broken.out\nsrun shoal launch -- python3 %s/broken.py\n' "$WORK" "$WORK" > "$WORK/broken.sbatch"
(cd "$ROOT/examples/slurm" && timeout 180 sbatch --wait "$WORK/broken.sbatch" >/dev/null 2>&1)
out=$(cat "$WORK/broken.out" 2>/dev/null)
if grep -Eq "^BROKEN .*worker processes in a row failed to start on node node[23].*cannot open shared object file .broken-marker" <<<"$out"; then
  ok "a worker that cannot start on a member node fails its task with that worker's stderr"
else bad "start failure on a member" "$out"; fi
finish
