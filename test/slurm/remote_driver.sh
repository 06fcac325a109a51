#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# A driver outside the allocation (docs/remote-drivers.md): a cluster formed by `shoal launch` in
# a 3-node Slurm job, and a driver run in this machine's root network namespace, which reaches
# the nodes over the test cluster's bridge as a login node reaches compute nodes. It connects
# with the record of `shoal address --tcp --json` (SHOAL_CLUSTER_FILE), directly by host:port
# with SHOAL_SECRET, and through a local port forwarder (what `ssh -L` does); puts a 100 MiB
# object and reads a 100 MiB result made on a member node; runs tasks on all three nodes; a
# wrong secret is refused; a runtime_env working_dir reaches every node. Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-remote.XXXXXX)
FWD=
trap '[[ -n $FWD ]] && kill "$FWD" 2>/dev/null; touch "$WORK/done"; sleep 0.5; rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

# the job: a cluster on 3 nodes whose command publishes its record and waits for the outside
# driver to finish
cat > "$WORK/job.sbatch" <<SH
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 -c 2 --output=$WORK/job.out
srun shoal launch -- bash -c 'umask 077; shoal address --tcp --json > $WORK/cluster.json.tmp && mv $WORK/cluster.json.tmp $WORK/cluster.json; for i in \$(seq 1200); do [ -e $WORK/done ] && exit 0; sleep 0.1; done; echo "no outside driver came"; exit 1'
SH
(cd "$ROOT/examples/slurm" && timeout 170 sbatch --wait "$WORK/job.sbatch" >/dev/null 2>&1; echo $? > "$WORK/job.rc") &
JOB=$!
for _ in $(seq 600); do [[ -s $WORK/cluster.json ]] && break; sleep 0.1; done
if [[ ! -s $WORK/cluster.json ]]; then bad "the job published its cluster record" "$(cat "$WORK/job.out" 2>/dev/null)"; finish; fi
ADDR=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$WORK/cluster.json")
SECRET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret"])' "$WORK/cluster.json")
if [[ $ADDR == tcp:198.18.0.1[1-3]:* ]]; then ok "the record names the head agent's TCP address on its node ($ADDR)"
else bad "record address" "$ADDR"; fi

# the drivers get a /tmp of their own, as on a login node: the nodes' session directories, which
# this machine's /tmp shares with the namespaces, must not give them the cluster's Unix socket
mkdir -m 700 "$WORK/login"
export SHOAL_TMPDIR=$WORK/login

cat > "$WORK/remote.py" <<'PY'
import hashlib, os, sys
import shoal as ray
from shoal.util.placement_group import placement_group
from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy as On

ctx = ray.init(address=sys.argv[1] if len(sys.argv) > 1 else None)
print("CONNECTED", ctx["address"])
print("NODES", sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]))
big = os.urandom(1 << 20) * 100
digest = hashlib.sha256(big).hexdigest()
ref = ray.put(big)

@ray.remote(num_cpus=1)
def check(b):
    return ray.get_runtime_context().get_node_id(), hashlib.sha256(b).hexdigest()

@ray.remote(num_cpus=1)
def make(n):
    data = os.urandom(1 << 20) * n
    return ray.get_runtime_context().get_node_id(), hashlib.sha256(data).hexdigest(), data

pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
ray.get(pg.ready(), timeout=60)
seen = ray.get([check.options(scheduling_strategy=On(pg, placement_group_bundle_index=b)).remote(ref) for b in range(3)], timeout=120)
print("PUT_SEEN", sorted(n for n, _ in seen), all(d == digest for _, d in seen))
node, d, data = ray.get(make.options(scheduling_strategy=On(pg, placement_group_bundle_index=2)).remote(100), timeout=120)
print("GET_BACK", node != ctx["node_id"], len(data), hashlib.sha256(data).hexdigest() == d)
print("ROUND_TRIP", hashlib.sha256(ray.get(ref, timeout=120)).hexdigest() == digest)
if os.environ.get("RENV_DIR"):
    # a working_dir shipped from outside, unpacked once on each node (members included)
    @ray.remote(num_cpus=1)
    def look():
        return ray.get_runtime_context().get_node_id(), open("marker.txt").read().strip(), os.getcwd(), os.environ.get("RENV_VAR")
    renv = {"working_dir": os.environ["RENV_DIR"], "env_vars": {"RENV_VAR": "set"}}
    got = ray.get([look.options(runtime_env=renv, scheduling_strategy=On(pg, placement_group_bundle_index=b)).remote()
                   for b in range(3)], timeout=120)
    print("RENV", sorted(n for n, *_ in got), {m for _, m, _, _ in got}, len({c for *_, c, _ in got}),
          all(c.split("/")[-2] == "runtime_env" for *_, c, _ in got), {v for *_, v in got})
ray.shutdown()
PY
mkdir -p "$WORK/project" && echo "shipped from outside" > "$WORK/project/marker.txt"

# 1. the cluster file
out=$(RENV_DIR=$WORK/project SHOAL_CLUSTER_FILE=$WORK/cluster.json timeout 150 python3 "$WORK/remote.py" 2>&1); rc=$?
if [[ $rc == 0 ]] && has "$out" "CONNECTED $ADDR" && has "$out" "NODES \['node1', 'node2', 'node3'\]"; then
  ok "a driver outside the allocation joins with SHOAL_CLUSTER_FILE and sees the 3 nodes"
else bad "join with the cluster file" "rc=$rc" "$out"; fi
if has "$out" "PUT_SEEN \['node1', 'node2', 'node3'\] True"; then
  ok "its 100 MiB put is read intact by tasks on all three nodes"
else bad "100 MiB put to the nodes" "$out"; fi
if has "$out" "GET_BACK True 104857600 True" && has "$out" "ROUND_TRIP True"; then
  ok "it gets a 100 MiB result made on a member node, and its own put back, intact"
else bad "100 MiB get from a member" "$out"; fi

if has "$out" "RENV \['node1', 'node2', 'node3'\] {'shipped from outside'} 3 True {'set'}"; then
  ok "its runtime_env working_dir reaches all three nodes through the object store, unpacked in each node's cache"
else bad "runtime_env on the nodes" "$out"; fi

# 2. a direct route: host:port and SHOAL_SECRET
out=$(SHOAL_SECRET=$SECRET timeout 150 python3 "$WORK/remote.py" "${ADDR#tcp:}" 2>&1); rc=$?
if [[ $rc == 0 ]] && has "$out" "CONNECTED $ADDR" && has "$out" "PUT_SEEN \['node1', 'node2', 'node3'\] True"; then
  ok "init(address='host:port') with SHOAL_SECRET works from outside"
else bad "direct host:port" "rc=$rc" "$out"; fi

# 3. through a forwarded local port, as `ssh -L 127.0.0.1:PORT:HEAD:PORT login` gives it
# (it holds this script's copy of the lock's descriptor: it must not outlive the script, so it
# exits when its parent does, besides the trap's kill)
cat > "$WORK/fwd.py" <<'PY'
import os, socket, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(8)
print(ls.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while (d := a.recv(1 << 16)):
            b.sendall(d)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass
while True:
    c, _ = ls.accept()
    u = socket.create_connection((host, int(port)))
    for a, b in ((c, u), (u, c)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
PY
coproc FW { exec python3 "$WORK/fwd.py" "${ADDR#tcp:}"; }
FWD=$FW_PID
read -r LPORT <&"${FW[0]}"
out=$(SHOAL_SECRET=$SECRET timeout 150 python3 "$WORK/remote.py" "127.0.0.1:$LPORT" 2>&1); rc=$?
if [[ $rc == 0 ]] && has "$out" "CONNECTED tcp:127.0.0.1:$LPORT" && has "$out" "GET_BACK True 104857600 True"; then
  ok "through a forwarded port (ssh -L), the TLS session and the handshake hold end to end"
else bad "forwarded port" "rc=$rc" "$out"; fi

# 4. a wrong secret is refused as on every listener (docs/security.md)
out=$(SHOAL_SECRET=${SECRET//[0-9]/0} timeout 60 python3 -c "
import shoal as ray
try:
    ray.init(address='${ADDR#tcp:}')
    print('ACCEPTED')
except Exception as e:
    print('REFUSED', type(e).__name__, e)" 2>&1)
if has "$out" "REFUSED" && ! has "$out" "ACCEPTED"; then ok "a driver with a wrong secret is refused"
else bad "wrong secret" "$out"; fi

touch "$WORK/done"
wait "$JOB"
rc=$(cat "$WORK/job.rc" 2>/dev/null)
if [[ $rc == 0 ]]; then ok "the job ends cleanly after the outside drivers leave"
else bad "job exit" "rc=$rc" "$(cat "$WORK/job.out" 2>/dev/null)"; fi
finish
