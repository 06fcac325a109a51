#!/usr/bin/env bash
# End-to-end tests of the shoal CLI as a user runs it: exit codes, signals, `up`/`status`/`down`,
# two clusters side by side, a wrong secret, bad flags, and that nothing is left behind.
set -uo pipefail
cd "$(dirname "$0")/.."
SHOAL=${SHOAL:-$PWD/bin/shoal}
PY=${PYTHON:-python3}
export SHOAL_TMPDIR=$(mktemp -d)
unset SHOAL_ADDRESS SHOAL_SECRET SHOAL_CLUSTER_ID
pass=0; fail=0
ok()   { pass=$((pass+1)); echo "ok   $1"; }
bad()  { fail=$((fail+1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
trap 'rm -rf "$SHOAL_TMPDIR"' EXIT

has() { grep -q -- "$2" <<<"$1"; }

# leftovers of a cluster id: session dir, shm dir, processes that carry its id
leftovers() {
  local id=$1 found=0
  [ -e "$SHOAL_TMPDIR/shoal-$(id -u)/$id" ] && { echo "  left: session dir"; found=1; }
  [ -e "/dev/shm/shoal-$id" ] && { echo "  left: /dev/shm/shoal-$id"; found=1; }
  for e in /proc/[0-9]*/environ; do
    if { tr "\0" "\n" < "$e"; } 2>/dev/null | grep -qx "SHOAL_CLUSTER_ID=$id"; then
      echo "  left: process ${e#/proc/}"; found=1
    fi
  done
  return $found
}

# 1. exit codes
"$SHOAL" run -- "$PY" -c 'import sys; sys.exit(0)'; check "run: exit 0" test $? -eq 0
"$SHOAL" run -- "$PY" -c 'import sys; sys.exit(3)'; check "run: exit code of the command" test $? -eq 3
"$SHOAL" run -- "$PY" -c 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'; check "run: 128+signal" test $? -eq 137
"$SHOAL" run -- /no/such/cmd 2>/dev/null; check "run: missing command is 127" test $? -eq 127
out=$("$SHOAL" run --resources '{bad' -- true 2>&1); rc=$?
check "run: malformed --resources is exit 2 with a message" eval '[ $rc -eq 2 ] && has "$out" --resources'

out=$("$SHOAL" run --object-store-memory 64t -- "$PY" -c 'import shoal; shoal.init(); print("store", shoal.cluster_resources()["object_store_memory"])' 2>&1); rc=$?
check "run: a store larger than /dev/shm is a warning, not a crash" eval '[ $rc -eq 0 ] && has "$out" "has only" && has "$out" "store "'

check "node info: offers this machine's CPUs" bash -c "'$SHOAL' node info --json | $PY -c 'import json,sys,os; r=json.load(sys.stdin); assert r[\"offer\"][\"CPU\"]==len(os.sched_getaffinity(0)), r'"
check "node info: GPUs from NVML (go-nvml's DGX H100 mock)" bash -c "SHOAL_NVML_MOCK=dgxh100 '$SHOAL' node info | grep -q 'offers .*GPU 8'"
check "status: each node with its resources and GPUs (name, UUID)" bash -c "SHOAL_NVML_MOCK=dgxh100 '$SHOAL' run --num-cpus 1 -- '$SHOAL' status | grep -q 'GPU 7 *NVIDIA H100 80GB HBM3 *GPU-'"

# admin config: /etc/shoal/shoal.toml (here SHOAL_CONFIG), overridden by flags and variables
cat > "$SHOAL_TMPDIR/shoal.toml" <<'TOML'
[node]
object_store_memory = "64m"
port_range = "31000-31009"
TOML
out=$(SHOAL_CONFIG="$SHOAL_TMPDIR/shoal.toml" "$SHOAL" run -- sh -c "'$SHOAL' status --json" 2>&1)
check "config: the file sets the store size and the port range" eval '$PY -c "import json,sys; r=json.loads(sys.argv[1]); assert r[\"total\"][\"object_store_memory\"]==64<<20, r; p=int(r[\"nodes\"][0][\"addr\"].rsplit(\":\",1)[1]); assert 31000<=p<=31009, p" "$out"'
out=$(SHOAL_CONFIG="$SHOAL_TMPDIR/shoal.toml" SHOAL_OBJECT_STORE_MEMORY=32m "$SHOAL" config show 2>&1)
check "config show: value and source of each setting" eval 'has "$out" "object-store-memory  *32m  *env SHOAL_OBJECT_STORE_MEMORY" && has "$out" "port-range  *31000-31009  *file"'
printf '[node]\nobject_store_memroy = "1g"\n' > "$SHOAL_TMPDIR/bad.toml"
out=$(SHOAL_CONFIG="$SHOAL_TMPDIR/bad.toml" "$SHOAL" run -- true 2>&1); rc=$?
check "config: a misspelt setting is exit 2 naming it" eval '[ $rc -eq 2 ] && has "$out" "node.object_store_memroy"'

# 2. a Python driver with workers and actors leaves nothing behind
cat > "$SHOAL_TMPDIR/driver.py" <<'PYEOF'
import os, shoal as ray, numpy as np
ray.init()
@ray.remote
def pid(): return os.getpid()
@ray.remote
class A:
    def pid(self): return os.getpid()
a = A.remote()
ref = ray.put(np.ones(1 << 22))
pids = set(ray.get([pid.remote() for _ in range(8)])) | {ray.get(a.pid.remote())}
print("CLUSTER", os.environ["SHOAL_CLUSTER_ID"])
print("PIDS", " ".join(map(str, pids)))
# exit without shutdown(): the cluster must clean up anyway
PYEOF
out=$("$SHOAL" run -- "$PY" "$SHOAL_TMPDIR/driver.py"); rc=$?
id=$(awk '/^CLUSTER/{print $2}' <<<"$out"); pids=$(awk '/^PIDS/{$1=""; print}' <<<"$out")
check "run: python driver with tasks, actor and a 32 MiB object" test $rc -eq 0 -a -n "$id"
alive=""; for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
check "run: worker and actor processes are gone afterwards" test -z "$alive"
check "run: no session dir, shm dir or process of the cluster is left" leftovers "$id"

# 3. Ctrl-C (SIGINT to shoal run) stops the driver and cleans up
"$SHOAL" run -- "$PY" -c 'import os,time,shoal; shoal.init(); print(os.environ["SHOAL_CLUSTER_ID"], flush=True); time.sleep(60)' > "$SHOAL_TMPDIR/int.out" &
spid=$!
for _ in $(seq 100); do [ -s "$SHOAL_TMPDIR/int.out" ] && break; sleep 0.1; done
kill -INT $spid; wait $spid; rc=$?
check "run: SIGINT ends the run with 130" test $rc -eq 130
check "run: nothing left after SIGINT" leftovers "$(cat "$SHOAL_TMPDIR/int.out")"

# 3b. shoal run SIGKILLed (the OOM killer): its driver gets SIGTERM (it would otherwise sleep on
# with no cluster, holding a Slurm step), its workers go too
"$SHOAL" run -- "$PY" -c 'import os,time,shoal; shoal.init(); print(os.getpid(), flush=True); time.sleep(60)' > "$SHOAL_TMPDIR/kill.out" &
spid=$!
for _ in $(seq 100); do [ -s "$SHOAL_TMPDIR/kill.out" ] && break; sleep 0.1; done
dpid=$(cat "$SHOAL_TMPDIR/kill.out")
kill -KILL $spid; wait $spid 2>/dev/null
for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
check "run: a SIGKILLed shoal run takes its driver with it (SIGTERM)" eval '[ -n "$dpid" ] && ! kill -0 "$dpid" 2>/dev/null'

# 4. up / status / down
eval "$("$SHOAL" up --num-cpus 3 2>/dev/null)"; id1=$SHOAL_CLUSTER_ID
check "up: prints the cluster's environment" test -n "$id1" -a -n "$SHOAL_ADDRESS"
check "status: shows the cluster" bash -c "'$SHOAL' status | grep -q 'cluster *$id1'"
check "status --json: CPU total 3" bash -c "'$SHOAL' status --json | $PY -c 'import json,sys; assert json.load(sys.stdin)[\"total\"][\"CPU\"]==3'"
check "up: a Python driver joins it" bash -c "$PY -c 'import shoal; shoal.init(); assert shoal.cluster_resources()[\"CPU\"]==3' "
out=$(SHOAL_SECRET=0000 "$SHOAL" status 2>&1); rc=$?
check "status: a wrong secret is refused with a clear message" eval '[ $rc -ne 0 ] && has "$out" "wrong secret"'
unset SHOAL_ADDRESS SHOAL_SECRET SHOAL_CLUSTER_ID
eval "$("$SHOAL" up --num-cpus 1 2>/dev/null)"; id2=$SHOAL_CLUSTER_ID
unset SHOAL_ADDRESS SHOAL_SECRET SHOAL_CLUSTER_ID
check "up: two clusters side by side" bash -c "'$SHOAL' status --cluster $id1 | grep -q 'CPU 3/3' && '$SHOAL' status --cluster $id2 | grep -q 'CPU 1/1'"
if id nobody >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # another user's cluster on the same machine, while ours runs: no shared path, socket or shm name
  other=$(runuser -u nobody -- env -u SHOAL_TMPDIR "$SHOAL" run -- sh -c 'echo "$SHOAL_CLUSTER_ID $SHOAL_ADDRESS"; ls -ld /dev/shm/shoal-$SHOAL_CLUSTER_ID' 2>&1); rc=$?
  check "up: another user's cluster runs beside ours, in its own dirs" eval '[ $rc -eq 0 ] && has "$other" "/tmp/shoal-65534/" && has "$other" "nobody" && ! has "$other" "$id1"'
  check "up: ours still serves after the other user's run" bash -c "'$SHOAL' status --cluster $id1 >/dev/null"
fi
"$SHOAL" down --cluster "$id1" 2>/dev/null; check "down: first cluster stops" test $? -eq 0
check "down: the second cluster still serves" bash -c "'$SHOAL' status --cluster $id2 >/dev/null"
"$SHOAL" down --cluster "$id2" 2>/dev/null
check "down: nothing left of either cluster" bash -c "$(declare -f leftovers); SHOAL_TMPDIR=$SHOAL_TMPDIR; leftovers $id1 && leftovers $id2"
out=$("$SHOAL" status 2>&1); rc=$?
check "status: no cluster running is a clear error" eval '[ $rc -ne 0 ] && has "$out" "no running shoal cluster"'

# 5. shoal.init() without a cluster starts a private one and stops it at exit
out=$("$PY" -c 'import shoal, os; shoal.init(num_cpus=1); import shoal._client as c; print(c._client.cluster_id); print(shoal.get(shoal.put(41)) + 1)'); rc=$?
id=$(head -1 <<<"$out")
check "init(): a local cluster for a plain python script" eval '[ $rc -eq 0 ] && [ "$(tail -1 <<<"$out")" = 42 ]'
sleep 0.5
check "init(): its cluster is gone after the script exits" leftovers "$id"

# the per-user base stays (0700, empty but for its lock file): removing it would let another
# user make it first (docs/security.md, "Directories and files")
check "nothing of any cluster is left under the session root, which stays 0700" \
  eval '[ -z "$(ls "$SHOAL_TMPDIR/shoal-$(id -u)")" ] && [ "$(stat -c %a "$SHOAL_TMPDIR/shoal-$(id -u)")" = 700 ]'

echo "e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
