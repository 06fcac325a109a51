#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# The runtime context and the state API on the real 3-node Slurm cluster: code pinned to a
# member node (a task, and an actor) names that member in get_runtime_context().get_node_id(),
# its worker and job ids match what list_workers says, and list_actors / list_nodes and the
# head's actor table (STATE) name the node where the actor runs, not the head's.
# Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-context.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

cat > "$WORK/context.py" <<'PY'
import os
import shoal as ray
from shoal import _client
from shoal.util import state
from shoal.util.placement_group import placement_group
from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy as PGS

ray.init()
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
ray.get(pg.ready(), timeout=60)

@ray.remote(num_cpus=1)
def where():
    c = ray.get_runtime_context()
    return c.get_node_id(), os.environ["SHOAL_NODE_ID"], c.get_worker_id(), c.get_job_id()

@ray.remote(num_cpus=1)
class Pinned:
    def where(self):
        c = ray.get_runtime_context()
        return c.get_node_id(), os.environ["SHOAL_NODE_ID"], c.get_actor_id()

head = ray.get_runtime_context().get_node_id()
rows = ray.get([where.options(scheduling_strategy=PGS(pg, placement_group_bundle_index=b)).remote() for b in range(3)], timeout=60)
print("HEAD", head)
for ctx_node, env_node, wid, job in rows:
    w = state.get_worker(wid)
    print("TASK", ctx_node, env_node, w.node_id if w else None, job == ray.get_runtime_context().get_job_id())
member = next(r[1] for r in rows if r[1] != head)
b = [r[1] for r in rows].index(member)
a = Pinned.options(scheduling_strategy=PGS(pg, placement_group_bundle_index=b)).remote()
ctx_node, env_node, aid = ray.get(a.where.remote(), timeout=60)
listed = state.get_actor(aid)
row = [x for x in _client._client.request(43, {})["actors"] if x["id"] == aid][0]  # STATE: the head's tables
print("ACTOR", ctx_node, env_node, listed.node_id, row["node"])
nodes = state.list_nodes()
print("NODES", sorted(n.node_id for n in nodes), sum(n.is_head_node for n in nodes), len({n.node_ip for n in nodes}), sorted((n.node_id, n.node_ip) for n in nodes))
print("RAYNODES", sorted((n["NodeID"], n["NodeManagerAddress"]) for n in ray.nodes()) == sorted((n.node_id, n.node_ip) for n in nodes))
PY
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 -c 2 --output=%s/context.out\nsrun shoal launch -- python3 %s/context.py\n' "$WORK" "$WORK" > "$WORK/context.sbatch"
(cd "$ROOT/examples/slurm" && timeout 180 sbatch --wait "$WORK/context.sbatch" >/dev/null 2>&1); rc=$?
out=$(cat "$WORK/context.out" 2>/dev/null)

head=$(sed -n 's/^HEAD //p' <<<"$out")
if [[ $rc == 0 ]] && [[ -n $head ]] && (( $(grep -Ec '^TASK (node[0-9]) \1 \1 True$' <<<"$out") == 3 )) &&
   [[ $(grep '^TASK' <<<"$out" | awk '{print $2}' | sort -u | wc -l) == 3 ]]; then
  ok "a task pinned to each node names that node (get_node_id, its worker in list_workers, the job id)"
else bad "tasks' runtime context on 3 nodes" "rc=$rc" "$out"; fi
if grep -Eq "^ACTOR (node[0-9]) \1 \1 \1$" <<<"$out" && ! grep -q "^ACTOR $head " <<<"$out"; then
  ok "an actor on a member node: get_node_id, list_actors and the head's actor table name the member"
else bad "actor's node on a member" "$out"; fi
if has "$out" "NODES \['node1', 'node2', 'node3'\] 1 3"; then
  ok "list_nodes: three nodes, one head, three addresses"
else bad "list_nodes on 3 nodes" "$out"; fi
if has "$out" "^RAYNODES True"; then
  ok "ray.nodes(): each node's NodeManagerAddress is its own address, a member's as the head's"
else bad "ray.nodes() addresses on 3 nodes" "$out"; fi
finish
