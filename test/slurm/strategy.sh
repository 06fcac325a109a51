#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# Scheduling strategies on the real 3-node Slurm cluster (docs/ray-tasks.md): SPREAD puts tasks
# on every node, NodeAffinitySchedulingStrategy pins tasks and actors to the node it names (hard)
# or prefers it (soft), an unknown node fails a hard affinity with TaskUnschedulableError, and
# label selectors pick nodes by ray.io/node-id and by labels given per node (SHOAL_LABELS).
# Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-strategy.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

cat > "$WORK/strategy.py" <<'PY'
import time
import shoal as ray
from shoal.util.scheduling_strategies import NodeAffinitySchedulingStrategy as NA

ray.init()
for _ in range(100):  # every member has joined before the first placement
    if len([n for n in ray.nodes() if n["Alive"]]) == 3:
        break
    time.sleep(0.2)
names = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
print("NODES", names)

@ray.remote(num_cpus=1)
def where(s=0.0):
    time.sleep(s)
    return ray.get_runtime_context().get_node_id()

spread = ray.get([where.options(scheduling_strategy="SPREAD").remote(1.0) for _ in range(3)], timeout=90)
print("SPREAD", sorted(spread))
print("HARD", ray.get([where.options(scheduling_strategy=NA("node3", soft=False)).remote() for _ in range(3)], timeout=90))
print("SOFT", ray.get(where.options(scheduling_strategy=NA("node2", soft=True)).remote(), timeout=90))
try:
    ray.get(where.options(scheduling_strategy=NA("node9", soft=False)).remote(), timeout=90)
    print("UNKNOWN ran")
except ray.exceptions.TaskUnschedulableError as e:
    print("UNKNOWN unschedulable", "node9" in str(e))
print("NODEID_LABEL", ray.get(where.options(label_selector={"ray.io/node-id": "node2"}).remote(), timeout=90))
print("SLOT_LABEL", ray.get(where.options(label_selector={"slot": "s2"}).remote(), timeout=90))
print("NOT_SLOT", sorted(set(ray.get([where.options(label_selector={"slot": "!in(s0,s2)"}).remote() for _ in range(3)], timeout=90))))

@ray.remote(num_cpus=1, scheduling_strategy=NA("node2", soft=False))
class Pinned:
    def node(self):
        return ray.get_runtime_context().get_node_id()

print("ACTOR", ray.get(Pinned.remote().node.remote(), timeout=90))

# a streaming generator on a member node: yields through that node's store, small and large
@ray.remote(num_cpus=1, scheduling_strategy=NA("node3", soft=False))
def stream():
    yield ray.get_runtime_context().get_node_id()
    yield b"y" * (4 << 20)
    yield "end"

g = stream.remote()
vals = [ray.get(r, timeout=90) for r in g]
print("STREAM", vals[0], len(vals[1]), vals[2])
PY
# each node's agent gets its own label: slot=s<SLURM_NODEID>
cat > "$WORK/strategy.sbatch" <<EOF
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 -c 2 --output=$WORK/strategy.out
srun bash -c 'SHOAL_LABELS="{\"slot\": \"s\$SLURM_NODEID\"}" exec shoal launch -- python3 $WORK/strategy.py'
EOF
(cd "$ROOT/examples/slurm" && timeout 150 sbatch --wait "$WORK/strategy.sbatch" >/dev/null 2>&1); rc=$?
out=$(cat "$WORK/strategy.out" 2>/dev/null)

if [[ $rc == 0 ]] && has "$out" "SPREAD \['node1', 'node2', 'node3'\]"; then
  ok "three SPREAD tasks run on the three nodes"
else bad "SPREAD" "rc=$rc" "$out"; fi
if has "$out" "HARD \['node3', 'node3', 'node3'\]"; then
  ok "a hard node affinity runs every task on the node it names"
else bad "hard node affinity" "$out"; fi
if has "$out" "SOFT node2"; then
  ok "a soft node affinity runs on its node when that node has room"
else bad "soft node affinity" "$out"; fi
if has "$out" "UNKNOWN unschedulable True"; then
  ok "a hard node affinity to an unknown node raises TaskUnschedulableError naming it"
else bad "unknown node" "$out"; fi
if has "$out" "NODEID_LABEL node2"; then
  ok "label_selector on ray.io/node-id picks that node"
else bad "node-id label" "$out"; fi
if has "$out" "SLOT_LABEL node3" && has "$out" "NOT_SLOT \['node2'\]"; then
  ok "labels given per node (--labels / SHOAL_LABELS) select nodes, negations included"
else bad "per-node labels" "$out"; fi
if has "$out" "STREAM node3 4194304 end"; then
  ok "a streaming generator on a member node yields small and 4 MiB values to the driver"
else bad "streaming on a member" "$out"; fi
if has "$out" "ACTOR node2"; then
  ok "an actor with a hard node affinity lives on that node"
else bad "actor node affinity" "$out"; fi
finish
