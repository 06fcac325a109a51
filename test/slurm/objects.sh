#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# Objects between the nodes of the real 3-node Slurm cluster (scripts/slurm-cluster.sh), through
# every node's own object store and chunked pulls between agents (docs/object-transfer.md): a
# 300 MiB array made on node2 read by the driver on node1, several gets at once, tasks on node3
# reading what the driver put, a node2 result handed to a node3 task, a node2 task retried after
# its worker was killed while writing its return value, stores too small for the objects
# spilling instead of failing, and no store or session directory left on any node.
# Run it under `flock /tmp/shoal-slurm.lock` (make test-objects does). Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
if ! python3 -c "import numpy" 2>/dev/null; then bad "numpy is missing (scripts/deps.sh installs it)"; finish; fi
WORK=$(mktemp -d /tmp/shoal-objects.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

# job NAME LAUNCH-ARGS MODE: run the driver under srun shoal launch on 3 nodes; sets rc, out
job() {
  # each node offers a resource named after it: on_node1, on_node2, on_node3
  cat > "$WORK/$1.sbatch" <<SB
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 --output=$WORK/$1.out
srun bash -c 'exec shoal launch --resources "{\"on_\$SLURMD_NODENAME\": 100}" $2 -- python3 $ROOT/test/slurm/objects.py $3'
SB
  (cd "$WORK" && timeout 300 sbatch --wait "$WORK/$1.sbatch" >/dev/null 2>&1); rc=$?
  out=$(cat "$WORK/$1.out" 2>/dev/null)
}
# checks NAME...: every named CHECK line of $out says True
checks() {
  local n line
  for n in "$@"; do
    line=$(grep "^CHECK $n " <<<"$out")
    if [[ $line == "CHECK $n True"* ]]; then ok "$n: ${line#CHECK $n True }"
    else bad "$n" "rc=$rc" "${line:-no CHECK line}" "$(tail -n 30 <<<"$out")"; fi
  done
}
# leftovers: this job's stores and session directories on every node (all share /dev/shm, /tmp)
leftovers() {
  local cid
  cid=$(sed -n 's/^CLUSTER //p' <<<"$out" | head -1)
  [[ -n $cid ]] || { bad "$1: the driver did not print its cluster id" "$out"; return; }
  sleep 1
  local left
  left=$(ls -d /dev/shm/shoal-"$cid"* /tmp/shoal-*/"$cid"* 2>/dev/null)
  if [[ -z $left ]]; then ok "$1: no object store or session directory of cluster $cid is left on any node"
  else bad "$1: left behind" "$left"; fi
}

job objects "" all
[[ $rc == 0 ]] || bad "objects job exit code" "rc=$rc" "$(tail -n 30 <<<"$out")"
checks placement node2_300mib_to_driver concurrent_gets node3_consumes_driver_put node2_result_to_node3_task tcp_driver_gets_node2_array tcp_driver_gets_300mib_in_parts \
  node2_retry_after_worker_killed_mid_write
leftovers objects

job spill "--object-store-memory 209715200" spill
[[ $rc == 0 ]] || bad "spill job exit code" "rc=$rc" "$(tail -n 30 <<<"$out")"
checks small_store_spills
leftovers spill
finish
