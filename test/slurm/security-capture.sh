#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# A capture of the traffic between two nodes of the Slurm test cluster (tcpdump on its bridge,
# shoalbr0) holds neither the bytes of an object nor those of a collective's buffer, nor the
# cluster secret (docs/security.md, "Encryption"). A job on 2 nodes moves an 8 MiB object made of
# a 16-byte marker (the hash of a random seed) from node2 to the driver on node1 (ray.get: the agents' object
# transfer), and runs an allgather between a rank on node1 and one on node2 whose buffers repeat
# a second marker (the collectives' rdma TCP streams). Then the same job with
# --insecure-data-plane, where both markers must appear: proof that the check can fail.
# Last, a cluster whose node2 alone runs in clear: the pull fails with an error naming the setting.
# The secret check passes only once the control plane is encrypted too (SPAWN carried
# SHOAL_SECRET in clear before). Run under `flock /tmp/shoal-slurm.lock`. Last line: "N passed,
# N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
command -v tcpdump >/dev/null || { bad "tcpdump is not installed (scripts/deps.sh installs it)"; finish; }
[[ -f $ROOT/python/shoal/bin/libshoalcoll.so ]] || { bad "libshoalcoll.so is not built (make build)"; finish; }
WORK=$(mktemp -d /tmp/shoal-capture.XXXXXX)
chmod 755 "$WORK"
trap 'kill "$TCPDUMP" 2>/dev/null; rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
TCPDUMP=
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

cat > "$WORK/job.py" <<'PY'
import hashlib, os, sys
import numpy as np
import shoal
from shoal import collective as col

# the markers are hashes of seeds: the seeds travel with the tasks (the control plane), the
# markers only inside the data
seeds = sys.argv[1], sys.argv[2]
marker = lambda seed: hashlib.sha256(bytes.fromhex(seed)).digest()[:16]

@shoal.remote(num_cpus=1, resources={"on_node2": 1})
def produce(seed):
    return np.frombuffer(marker(seed) * ((8 << 20) // 16), dtype=np.uint8).copy()

@shoal.remote(num_cpus=1)
def rank(r, seed):
    col.init_group(2, r, group_name="cap", timeout=60)
    mine = np.frombuffer(marker(seed) * ((4 << 20) // 16), dtype=np.int32).copy()
    out = np.empty((2, mine.size), dtype=np.int32)
    col.allgather(out, mine, group_name="cap")
    b = col.get_backends("cap")
    col.destroy_group("cap")
    return bool((out == mine).all()), b, os.environ["SHOAL_NODE_ID"]

shoal.init()
print("SECRET", os.environ["SHOAL_SECRET"], flush=True)
a = shoal.get(produce.remote(seeds[0]))
print("OBJECT", a.nbytes == 8 << 20 and a[:16].tobytes() == marker(seeds[0]), flush=True)
del a
res = shoal.get([rank.options(resources={"on_node1": 1}).remote(0, seeds[1]),
                 rank.options(resources={"on_node2": 1}).remote(1, seeds[1])], timeout=120)
print("COLL", all(r[0] for r in res), [r[1] for r in res], [r[2] for r in res], flush=True)
PY

# run MODE: one job on 2 nodes with tcpdump on the bridge; leaves $WORK/MODE.{out,pcap,markers}
run() {
  local mode=$1 flag=
  [[ $mode == insecure ]] && flag=--insecure-data-plane
  local om cm
  om=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n'); cm=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  echo "$om $cm" > "$WORK/$mode.markers"
  tcpdump -i shoalbr0 -s 0 -B 262144 -U -w "$WORK/$mode.pcap" 2> "$WORK/$mode.tcpdump" &
  TCPDUMP=$!
  for _ in $(seq 50); do grep -q "listening on" "$WORK/$mode.tcpdump" 2>/dev/null && break; sleep 0.1; done
  cat > "$WORK/$mode.sbatch" <<SB
#!/bin/bash
#SBATCH -N 2 --ntasks-per-node=1 --output=$WORK/$mode.out
srun bash -c 'exec shoal launch $flag --object-store-memory 512m --resources "{\"on_\$SLURMD_NODENAME\": 100}" -- python3 $WORK/job.py $om $cm'
SB
  (cd "$WORK" && timeout 300 sbatch --wait "$WORK/$mode.sbatch" >/dev/null 2>&1)
  local rc=$?
  sleep 0.5
  kill -INT "$TCPDUMP" 2>/dev/null; wait "$TCPDUMP" 2>/dev/null; TCPDUMP=
  return $rc
}
# found PCAP HEX: whether the bytes HEX appear anywhere in the capture
found() { python3 -c 'import sys; sys.exit(0 if bytes.fromhex(sys.argv[2]) in open(sys.argv[1], "rb").read() else 1)' "$1" "$2"; }
# marker SEED: the 16 bytes job.py repeats in its data, in hex
marker() { python3 -c 'import hashlib, sys; print(hashlib.sha256(bytes.fromhex(sys.argv[1])).digest()[:16].hex())' "$1"; }

for mode in encrypted insecure; do
  run "$mode"; rc=$?
  out=$(cat "$WORK/$mode.out" 2>/dev/null)
  read -r oseed cseed < "$WORK/$mode.markers"
  om=$(marker "$oseed"); cm=$(marker "$cseed")
  secret=$(grep '^SECRET' <<<"$out" | cut -d' ' -f2)
  size=$(stat -c %s "$WORK/$mode.pcap" 2>/dev/null || echo 0)
  dropped=$(grep -o '[0-9]* packets dropped by kernel' "$WORK/$mode.tcpdump" | cut -d' ' -f1)
  # the object and both ranks' 4 MiB blocks: at least 16 MiB on the wire, none of it dropped
  if has "$out" "^OBJECT True" && has "$out" "^COLL True" && has "$out" "'node1', 'node2'" &&
    ((size > 16 << 20)) && [[ ${dropped:-x} == 0 ]]; then
    ok "$mode: an 8 MiB object node2 -> node1 and an allgather node1 <-> node2 ($((size >> 20)) MiB captured, none dropped)"
  else bad "$mode: the job or its capture" "rc=$rc pcap=$size bytes, dropped: ${dropped:-?}" "$out" "$(cat "$WORK/$mode.tcpdump")"; continue; fi
  if [[ $mode == encrypted ]]; then
    if found "$WORK/$mode.pcap" "$om"; then bad "encrypted: the object's bytes appear in the capture"
    else ok "encrypted: the object's bytes do not appear in the capture"; fi
    if found "$WORK/$mode.pcap" "$cm"; then bad "encrypted: the collective buffer's bytes appear in the capture"
    else ok "encrypted: the collective buffer's bytes do not appear in the capture"; fi
    if [[ -n $secret ]] && ! found "$WORK/$mode.pcap" "$(printf %s "$secret" | od -An -tx1 | tr -d ' \n')"; then
      ok "encrypted: the cluster secret does not appear in the capture"
    else bad "encrypted: the cluster secret appears in the capture (or was not printed)" "secret=${secret:0:8}..."; fi
  else
    if found "$WORK/$mode.pcap" "$om"; then ok "--insecure-data-plane: the object's bytes do appear (the check can fail)"
    else bad "--insecure-data-plane: the object's bytes do not appear: the capture misses the data plane"; fi
    if found "$WORK/$mode.pcap" "$cm"; then ok "--insecure-data-plane: the collective buffer's bytes do appear"
    else bad "--insecure-data-plane: the collective buffer's bytes do not appear"; fi
  fi
done

# node2's agent alone in clear: the pull of its object fails at once with an error that names the
# setting, instead of hanging or falling back to clear
cat > "$WORK/mismatch.py" <<'PY'
import numpy as np
import shoal

@shoal.remote(num_cpus=1, resources={"on_node2": 1})
def produce():
    return np.ones(1 << 20, dtype=np.int64)

shoal.init()
ref = produce.remote()
shoal.wait([ref])
try:
    shoal.get(ref, timeout=60)
    print("MISMATCH got the object", flush=True)
except Exception as e:
    print("MISMATCH error", type(e).__name__, str(e).replace("\n", " "), flush=True)
PY
cat > "$WORK/mismatch.sbatch" <<SB
#!/bin/bash
#SBATCH -N 2 --ntasks-per-node=1 --output=$WORK/mismatch.out
srun bash -c 'f=; [ "\$SLURMD_NODENAME" = node2 ] && f=--insecure-data-plane; exec shoal launch \$f --object-store-memory 512m --resources "{\"on_\$SLURMD_NODENAME\": 100}" -- python3 $WORK/mismatch.py'
SB
start=$(date +%s)
(cd "$WORK" && timeout 300 sbatch --wait "$WORK/mismatch.sbatch" >/dev/null 2>&1); rc=$?
took=$(($(date +%s) - start))
out=$(cat "$WORK/mismatch.out" 2>/dev/null)
if has "$out" "^MISMATCH error.*data plane encryption setting differs.*insecure-data-plane" && ((took < 120)); then
  ok "head encrypted, node2 in clear: the pull fails in ${took}s with an error naming --insecure-data-plane"
else bad "a data plane mismatch between head and member" "rc=$rc took=${took}s" "$out"; fi
finish
