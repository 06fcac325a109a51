#!/usr/bin/env bash
# The head's SQLite tables as a user reads them (docs/architecture.md, "Head state"): `shoal
# status` during a run shows the job, the actors and the placement groups from the head's
# tables; `get_actor` finds a named actor in them; with --state-dir the database outlives the
# cluster and `shoal history` lists the job's outcome, each actor's final state and death
# cause, and the placement groups; clusters sharing a state directory keep a file each.
set -uo pipefail
cd "$(dirname "$0")/.."
SHOAL=${SHOAL:-$PWD/bin/shoal}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH} SHOAL_BIN=$SHOAL
export SHOAL_TMPDIR=$(mktemp -d)
unset SHOAL_ADDRESS SHOAL_SECRET SHOAL_CLUSTER_ID SHOAL_STATE_DIR SHOAL_CONFIG
pass=0; fail=0
ok()   { pass=$((pass+1)); echo "ok   $1"; }
bad()  { fail=$((fail+1)); echo "FAIL $1"; shift; (($#)) && printf '     %s\n' "$@"; return 0; }
has()  { grep -q -- "$2" <<<"$1"; }
trap 'rm -rf "$SHOAL_TMPDIR"' EXIT
SD=$SHOAL_TMPDIR/state

# 1. a run with a named actor, two placement groups (one removed), an actor whose constructor
#    raises and a killed actor; the driver prints `shoal status` and exits 3
out=$("$SHOAL" run --num-cpus 2 --state-dir "$SD" -- "$PY" test/head_state.py 2>&1); rc=$?
id=$(awk '/^cluster /{print $2; exit}' <<<"$out")
if [[ $rc == 3 && -n $id ]] && has "$out" "broken actor: ActorDiedError"; then ok "run --state-dir: the driver ran (named actor found by get_actor) and exited 3"
else bad "run --state-dir" "rc=$rc" "$out"; fi
row() { grep -E -- "$1" <<<"$out" | grep -q -- "$2"; }
if has "$out" "nodes      1 (1 alive)" && row "${id:0:8}-0001" "RUNNING" && row "ns1/counter" "Counter  *ALIVE" \
   && row "Broken" "DEAD.*ValueError: constructor refused: bad config" && row "victim" "DEAD" \
   && row "  gang " "PACK  *CREATED" && row "  short " "SPREAD  *REMOVED"; then
  ok "status: node, running job, actors (alive, failed with its cause, killed) and placement groups from the head's tables"
else bad "status during the run" "$out"; fi

# 2. after the end, from the file alone
files=("$SD"/shoal-*.db)
if [[ ${#files[@]} == 1 && ${files[0]} == "$SD/shoal-$id.db" && $(stat -c %a "${files[0]}") == 600 && ! -e ${files[0]}-wal ]]; then
  ok "state dir: one 0600 file for the cluster, self-contained (no -wal) after the end"
else bad "state dir contents" "$(ls -la "$SD")"; fi
hist=$("$SHOAL" history --state-dir "$SD" 2>&1); rc=$?
out=$hist
if [[ $rc == 0 ]] && has "$out" "cluster $id  shoal run on" && has "$out" "exit 3" && has "$out" "command: $PY test/head_state.py" \
   && row "${id:0:8}-0001" "FAILED  *3" && row "ns1/counter" "DEAD.*its job ended" \
   && row "Broken" "DEAD.*ValueError: constructor refused: bad config" && row "victim" "DEAD" \
   && row "  gang " "REMOVED" && row "  short " "REMOVED"; then
  ok "history: the job FAILED with exit 3, each actor's final state and death cause, the placement groups"
else bad "history after the run" "rc=$rc" "$out"; fi
if "$SHOAL" history --state-dir "$SD" --json | "$PY" -c '
import json, sys
h = json.load(sys.stdin); assert len(h) == 1, h
s = h[0]; c = s["cluster"]
assert c["exit_code"] == 3 and c["ended_ms"] >= c["started_ms"] > 0, c
assert [j["status"] for j in s["jobs"]] == ["FAILED"], s["jobs"]
a = {x["class"] + ":" + x.get("name", ""): x for x in s["actors"]}
assert a["Counter:counter"]["namespace"] == "ns1" and a["Counter:counter"]["state"] == "DEAD", a
assert "ValueError" in a["Broken:"]["death"] and a["Broken:"]["ended_ms"] > 0, a
assert sorted((p["name"], p["strategy"], p["state"]) for p in s["placement_groups"]) == [("gang", "PACK", "REMOVED"), ("short", "SPREAD", "REMOVED")]
assert all(not n["alive"] for n in s["nodes"]) and len(s["nodes"]) == 1'; then
  ok "history --json: the same records, machine-readable"
else bad "history --json"; fi

# 3. a second cluster in the same directory (SHOAL_STATE_DIR), and one from the admin's file
SHOAL_STATE_DIR=$SD "$SHOAL" run --num-cpus 1 -- "$PY" -c 'import shoal; shoal.init(); shoal.get(shoal.remote(lambda: 1).remote())'
printf '[head]\nstate_dir = "%s"\n' "$SD" > "$SHOAL_TMPDIR/shoal.toml"
SHOAL_CONFIG=$SHOAL_TMPDIR/shoal.toml "$SHOAL" run --num-cpus 1 -- true
SHOAL_STATE_DIR=$SD "$PY" -c 'import shoal; shoal.init(num_cpus=1); shoal.get(shoal.remote(lambda: 1).remote())'
out=$("$SHOAL" history --state-dir "$SD" 2>&1)
n=$(grep -c '^cluster ' <<<"$out")
if [[ $n == 4 && $(ls "$SD"/shoal-*.db | wc -l) == 4 ]] && has "$out" "cluster $id " && row "ns1/counter" "DEAD" && has "$out" "exit 0" \
   && has "$out" "shoal up on"; then
  ok "state dir: four clusters (flag, SHOAL_STATE_DIR, [head] state_dir, shoal.init()) keep a file each; the first is intact"
else bad "several clusters in one state dir" "$out"; fi
out=$("$SHOAL" history --state-dir "$SD" --cluster "${id:0:6}" 2>&1)
if [[ $(grep -c '^cluster ' <<<"$out") == 1 ]] && has "$out" "cluster $id "; then ok "history --cluster: one cluster by id prefix"
else bad "history --cluster" "$out"; fi

# 3b. a cluster killed with SIGKILL: what its head had committed is there, with no end
K=$SHOAL_TMPDIR/killed
"$SHOAL" run --num-cpus 1 --state-dir "$K" -- "$PY" -c '
import os, subprocess, time, shoal
shoal.init()
a = shoal.remote(type("Keep", (), {"f": lambda self: 1})).options(name="kept").remote()
shoal.get(a.f.remote())
subprocess.run([os.environ["SHOAL_BIN"], "status"], check=True, capture_output=True)  # STATE waits for the queued writes
print("UP", os.getpid(), flush=True)
time.sleep(60)' > "$SHOAL_TMPDIR/killed.out" 2>&1 &
spid=$!
for _ in $(seq 150); do grep -q '^UP' "$SHOAL_TMPDIR/killed.out" && break; sleep 0.1; done
dpid=$(awk '/^UP/{print $2}' "$SHOAL_TMPDIR/killed.out")
kill -9 "$spid"; wait "$spid" 2>/dev/null
[[ -n $dpid ]] && kill "$dpid" 2>/dev/null
out=$("$SHOAL" history --state-dir "$K" 2>&1)
if has "$out" "no end recorded" && has "$out" "running, or killed" && row " kept " "Keep  *ALIVE" && row "-0001" "RUNNING"; then
  ok "history of a SIGKILLed cluster: its committed rows, marked as having no recorded end"
else bad "history of a killed cluster" "$out"; fi

# 4. errors name the input and what to do
out=$("$SHOAL" history --state-dir "$SD" --cluster ffffffffffff 2>&1); rc=$?
if [[ $rc == 1 ]] && has "$out" 'no cluster "ffffffffffff"'; then ok "history: an unknown cluster is exit 1 naming it"; else bad "history unknown cluster" "rc=$rc" "$out"; fi
out=$("$SHOAL" history 2>&1); rc=$?
if [[ $rc == 2 ]] && has "$out" "needs --state-dir"; then ok "history: no state dir is exit 2"; else bad "history without --state-dir" "rc=$rc" "$out"; fi
out=$("$SHOAL" history --state-dir "$SHOAL_TMPDIR/none" 2>&1); rc=$?
if [[ $rc == 1 ]] && has "$out" "$SHOAL_TMPDIR/none"; then ok "history: a missing directory is exit 1 naming it"; else bad "history missing dir" "rc=$rc" "$out"; fi
out=$("$SHOAL" yarn submit --state-dir relative/dir -- true 2>&1); rc=$?
if [[ $rc == 2 ]] && has "$out" "absolute path"; then ok "yarn submit: a relative --state-dir is exit 2"; else bad "yarn submit --state-dir" "rc=$rc" "$out"; fi
touch "$SHOAL_TMPDIR/file"
out=$("$SHOAL" run --state-dir "$SHOAL_TMPDIR/file/sub" -- true 2>&1); rc=$?
if [[ $rc != 0 ]] && has "$out" "state-dir"; then ok "run: an unusable --state-dir fails naming the flag"; else bad "run bad --state-dir" "rc=$rc" "$out"; fi

# 5. without --state-dir nothing is kept; status of a `shoal up` cluster reads the head too
eval "$("$SHOAL" up --num-cpus 1 2>/dev/null)"
"$PY" -c 'import shoal; shoal.init(); a = shoal.remote(type("Svc", (), {"f": lambda self: 1})).options(name="svc", lifetime="detached").remote(); shoal.get(a.f.remote())'
out=$("$SHOAL" status --json 2>&1)
if "$PY" -c '
import json, sys
r = json.loads(sys.argv[1]); s = r["state"]
assert r["total"]["CPU"] == 1 and s["cluster"]["kind"] == "up", s["cluster"]
assert [(a["name"], a["class"]) for a in s["actors"]] == [("svc", "Svc")], s["actors"]
jobs = [(j["status"], j["entry"]) for j in s["jobs"]]
# the driver ended; its detached actor lives on in a job of its own
assert [st for st, _ in jobs] == ["FINISHED", "RUNNING"] and jobs[1][1].startswith("detached actor Svc of job "), jobs' "$out"; then
  ok "status --json: the head's tables under \"state\" (shoal up cluster, a finished job, its detached actor's job)"
else bad "status --json" "$out"; fi
upid=$SHOAL_CLUSTER_ID
unset SHOAL_ADDRESS SHOAL_SECRET SHOAL_CLUSTER_ID
"$SHOAL" down --cluster "$upid" >/dev/null 2>&1 # waits for the cluster's process to end
if [[ ! -e $SHOAL_TMPDIR/shoal-$(id -u)/$upid ]] && [[ -z $(find "$SHOAL_TMPDIR/shoal-$(id -u)" -name 'head.db*') ]]; then
  ok "no --state-dir: the database goes with the session directory"
else bad "default: database removed" "$(find "$SHOAL_TMPDIR" -name '*.db*')"; fi

echo "head state: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
