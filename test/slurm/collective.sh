#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# shoal.collective across the nodes of a real 3-node Slurm 22.05 cluster (scripts/slurm-cluster.sh,
# each node in its own network namespace): 6 actor ranks, 2 per node, form a group through the
# head agent's rendezvous store, run every collective against references (shared memory inside a
# node, TCP across, hierarchical allreduce), and a rank killed on another node fails the others
# with an error instead of a hang. Run under `flock /tmp/shoal-slurm.lock` (make test-coll does).
# Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
[[ -f $ROOT/bin/shoal_spank.so ]] || { bad "bin/shoal_spank.so is not built (make spank)"; finish; }
[[ -f $ROOT/python/shoal/bin/libshoalcoll.so ]] || { bad "libshoalcoll.so is not built (make build)"; finish; }
WORK=$(mktemp -d /tmp/shoal-coll.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

cat > "$WORK/coll.py" <<'PY'
import json, os, sys, time
import numpy as np
import shoal
from shoal import collective as col

N = 6

@shoal.remote(num_cpus=0.5)
class Rank:
    def node(self):
        return os.environ["SHOAL_NODE_ID"]

    def run(self, rank):
        col.init_group(N, rank, group_name="x", timeout=60)
        backends = col.get_backends("x")
        rng = np.random.default_rng(rank)
        a = rng.integers(-3, 4, size=3_000_001).astype(np.float32)   # large: ring / hierarchical
        s = rng.integers(-3, 4, size=5).astype(np.int64)              # small: recursive doubling
        col.allreduce(a, group_name="x")
        col.allreduce(s, group_name="x", op="max")
        g = np.empty((N, 1001), dtype=np.float64)
        col.allgather(g, np.full(1001, rank, dtype=np.float64), group_name="x")
        rs = np.empty(100_003, dtype=np.float32)
        col.reducescatter(rs, np.full((N, 100_003), rank + 1, dtype=np.float32), group_name="x")
        b = np.arange(7, dtype=np.int32) if rank == 4 else np.zeros(7, dtype=np.int32)
        col.broadcast(b, src_rank=4, group_name="x")
        col.barrier(group_name="x")
        col.destroy_group("x")
        return float(a.astype(np.float64).sum()), s.tolist(), g[:, 0].tolist(), float(rs[0]), b.tolist(), backends

    def loop(self, rank):
        col.init_group(N, rank, group_name="k", timeout=20)
        a = np.ones(1 << 20, dtype=np.float32)
        try:
            while True:
                col.allreduce(a, group_name="k")
        except col.CollectiveError as e:
            return str(e)

shoal.init()
# half a CPU per rank fills every node (1 CPU each), so the 6 ranks spread 2 per node
assert shoal.cluster_resources()["CPU"] * 2 == N, shoal.cluster_resources()
ranks = [Rank.remote() for i in range(N)]
nodes = shoal.get([r.node.remote() for r in ranks])
print("NODES", json.dumps(nodes), flush=True)
res = shoal.get([r.run.remote(i) for i, r in enumerate(ranks)], timeout=300)
exp_a = sum(float(np.random.default_rng(r).integers(-3, 4, size=3_000_001).astype(np.float64).sum()) for r in range(N))
smalls = []
for r in range(N):
    rng = np.random.default_rng(r)
    rng.integers(-3, 4, size=3_000_001)
    smalls.append(rng.integers(-3, 4, size=5))
exp_s = np.max(np.stack(smalls), axis=0).tolist()
good = all(x[0] == exp_a and x[1] == exp_s and x[2] == [float(i) for i in range(N)]
           and x[3] == float(sum(range(1, N + 1))) and x[4] == list(range(7)) for x in res)
print("CORRECT", good, flush=True)
# shared memory to the rank on the same node, TCP to the others
print("BACKENDS", all(x[5][p] == ("shm" if nodes[p] == nodes[r] else "tcp") for r, x in enumerate(res) for p in x[5]), flush=True)
if not good:
    print("GOT", res, "WANT", exp_a, exp_s, flush=True)
refs = [r.loop.remote(i) for i, r in enumerate(ranks)]
time.sleep(3)
victim = next(i for i in range(N) if nodes[i] != nodes[0])
shoal.kill(ranks[victim])
errs = shoal.get([refs[i] for i in range(N) if i != victim], timeout=120)
print("KILLED", victim, "ERRORS", sum("aborted" in e for e in errs), "OF", len(errs), flush=True)
PY

printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/coll.out\nsrun shoal launch -- python3 %s/coll.py\n' "$WORK" "$WORK" > "$WORK/coll.sbatch"
(cd "$WORK" && timeout 300 sbatch --wait "$WORK/coll.sbatch" >/dev/null 2>&1); rc=$?
out=$(cat "$WORK/coll.out" 2>/dev/null)
nodes=$(grep '^NODES' <<<"$out" | cut -d' ' -f2-)
if [[ -n $nodes ]] && [[ $(python3 -c "import json,sys; print(len(set(json.loads(sys.argv[1]))))" "$nodes") == 3 ]]; then
  ok "6 ranks placed on all 3 nodes: $nodes"
else bad "ranks on 3 nodes" "rc=$rc" "$out"; fi
if has "$out" "^CORRECT True"; then
  ok "allreduce (large and small), allgather, reducescatter, broadcast, barrier across 3 nodes agree with the reference"
else bad "collectives across nodes" "rc=$rc" "$out"; fi
if has "$out" "^BACKENDS True"; then
  ok "ranks use shared memory inside a node and TCP across nodes"
else bad "backends by node" "$out"; fi
if has "$out" "ERRORS 5 OF 5" && [[ $rc == 0 ]]; then
  ok "a rank killed on another node: the 5 others get an error, no hang"
else bad "killed rank across nodes" "rc=$rc" "$out"; fi
left=$(ls /dev/shm | grep -c -- "-ring-")
if [[ $left == 0 ]]; then ok "no ring files left in /dev/shm"; else bad "ring files left" "$(ls /dev/shm)"; fi
finish
