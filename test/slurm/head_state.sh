#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# The head's tables on the real 3-node Slurm cluster (scripts/slurm-cluster.sh): `shoal status`
# run by the driver during the job lists the 3 nodes, the named actor and the STRICT_SPREAD
# placement group from the head's SQLite; with --state-dir, `shoal history` lists them after
# the job with the Slurm job id and the driver's exit code. Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-headstate.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

cat > "$WORK/driver.py" <<'PY'
import os, subprocess, sys, shoal
from shoal.util.placement_group import placement_group
shoal.init()
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD", name="per-node")
shoal.get(pg.ready())
@shoal.remote
class Svc:
    def node(self):
        return os.environ["SHOAL_NODE_ID"]
s = Svc.options(name="svc").remote()
print("svc on", shoal.get(shoal.get_actor("svc").node.remote()), flush=True)
print(subprocess.run(["shoal", "status"], capture_output=True, text=True, check=True).stdout, flush=True)
sys.exit(4)
PY
cat > "$WORK/job.sbatch" <<SB
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 --output=$WORK/job.out
srun shoal launch --state-dir $WORK/state -- python3 $WORK/driver.py
SB
jid=$(timeout 120 sbatch --parsable --wait "$WORK/job.sbatch" 2>/dev/null); rc=$?
out=$(cat "$WORK/job.out" 2>/dev/null)
row() { grep -E -- "$1" <<<"$out" | grep -q -- "$2"; }
if [[ $rc == 4 ]] && has "$out" "nodes      3 (3 alive)" && row "^  node1 " "ALIVE" && row "^  node2 " "ALIVE" && row "^  node3 " "ALIVE" \
   && row " svc " "Svc  *ALIVE" && row "per-node" "STRICT_SPREAD  *CREATED" && has "$out" "svc on node"; then
  ok "shoal status during the job: 3 nodes, the named actor and the placement group from the head's tables"
else bad "status during a 3-node job" "rc=$rc" "$out"; fi

out=$(shoal history --state-dir "$WORK/state" 2>&1)
if has "$out" "shoal launch on node1 (Slurm job ${jid%%;*})" && has "$out" "exit 4" && has "$out" "nodes: 3" \
   && row " svc " "DEAD" && row "per-node" "REMOVED" && row "-0001" "FAILED  *4"; then
  ok "shoal history after the job: its nodes, job outcome, actor and placement group, with the Slurm job id"
else bad "history of a 3-node job" "jid=$jid" "$out"; fi
finish
