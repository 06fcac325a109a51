#!/usr/bin/env bash
# /metrics, `shoal dashboard`, `shoal timeline` and the end-of-job report on a `shoal run`
# cluster that ran five tasks, an actor with three calls and a failing task (workload.py):
# 401 without the token, promtool check metrics, the values against what ran, every task in
# the timeline, the report on stderr and in --report's JSON, --quiet, --observability=off.
set -uo pipefail
cd "$(dirname "$0")/../.."
SHOAL=${SHOAL:-$PWD/bin/shoal}
PY=${PYTHON:-python3}
export PATH=$PWD/bin:$PATH PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
export SHOAL_TMPDIR=$(mktemp -d) OBS_OUT=$(mktemp -d)
unset SHOAL_ADDRESS SHOAL_SECRET SHOAL_CLUSTER_ID
trap 'rm -rf "$SHOAL_TMPDIR" "$OBS_OUT"' EXIT
pass=0; fail=0
ok()   { pass=$((pass+1)); echo "ok   $1"; }
bad()  { fail=$((fail+1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
command -v promtool >/dev/null || { echo "FAIL promtool is missing (Debian's prometheus package; scripts/deps.sh installs it)"; exit 1; }

# the checks run inside the cluster, as the workload's child
cat > "$OBS_OUT/inside.sh" <<'IN'
set -u
d=$(shoal dashboard --json) || exit 1
url=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])' <<<"$d")
tok=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$d")
echo "$url" > "$OBS_OUT/url"
curl -s -o /dev/null -w '%{http_code}' "${url}metrics" > "$OBS_OUT/code_none"
curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong$tok" "${url}metrics" > "$OBS_OUT/code_wrong"
curl -s -o /dev/null -w '%{http_code}' "${url}metrics?token=$tok" > "$OBS_OUT/code_query"
curl -sf -H "Authorization: Bearer $tok" "${url}metrics" > "$OBS_OUT/metrics" || exit 1
shoal dashboard > "$OBS_OUT/dashboard_line" 2>/dev/null || exit 1
shoal timeline -o "$OBS_OUT/trace.json" 2>/dev/null || exit 1
ls -l "$SHOAL_TMPDIR"/shoal-$(id -u)/$SHOAL_CLUSTER_ID/dashboard.token | cut -c1-10 > "$OBS_OUT/token_mode"
shoal logs --actor obs-counter > "$OBS_OUT/logs_actor" || exit 1
shoal logs --json > "$OBS_OUT/logs_all.json" || exit 1
t=$(python3 -c 'import json,sys; print(next(l["task_id"] for l in map(json.loads, sys.stdin) if l["text"] == "square of 3"))' < "$OBS_OUT/logs_all.json")
shoal logs --task "${t:0:24}" > "$OBS_OUT/logs_task" || exit 1
IN

err=$("$SHOAL" run --num-cpus 2 --report "$OBS_OUT/report.json" -- "$PY" test/obs/workload.py bash "$OBS_OUT/inside.sh" 2>&1 >"$OBS_OUT/driver_out"); rc=$?
check "run: the workload and the checks inside exit 0" test $rc -eq 0
[ $rc -eq 0 ] || echo "$err" | tail -20
check "dashboard: 401 without a token" test "$(cat "$OBS_OUT/code_none" 2>/dev/null)" = 401
check "dashboard: 401 with a wrong token" test "$(cat "$OBS_OUT/code_wrong" 2>/dev/null)" = 401
check "dashboard: 200 with ?token=" test "$(cat "$OBS_OUT/code_query" 2>/dev/null)" = 200
check "dashboard: the URL is on loopback by default" grep -q '^http://127.0.0.1:' "$OBS_OUT/url"
check "dashboard: shoal dashboard prints the URL with the token" grep -Eq '^http://127.0.0.1:[0-9]+/\?token=[0-9a-f]{64}$' "$OBS_OUT/dashboard_line"
check "dashboard: the token file is 0600" grep -q '^-rw-------' "$OBS_OUT/token_mode"
if [ -s "$OBS_OUT/metrics" ]; then out=$(promtool check metrics < "$OBS_OUT/metrics" 2>&1); else out="no metrics were fetched"; fi
check "metrics: promtool check metrics is clean" test -z "$out"
[ -z "$out" ] || echo "$out"
metric() { awk -v m="$1" '$1 == m {print $2}' "$OBS_OUT/metrics"; }
check "metrics: 6 tasks submitted" test "$(metric 'shoal_tasks_submitted_total{kind="task"}')" = 6
check "metrics: 5 tasks finished" test "$(metric 'shoal_tasks_completed_total{kind="task",outcome="finished"}')" = 5
check "metrics: 1 task failed" test "$(metric 'shoal_tasks_completed_total{kind="task",outcome="failed"}')" = 1
check "metrics: 3 actor calls finished" test "$(metric 'shoal_tasks_completed_total{kind="actor_call",outcome="finished"}')" = 3
check "metrics: 1 actor alive" test "$(metric 'shoal_actors{state="ALIVE"}')" = 1
check "metrics: 1 placement group created" test "$(metric 'shoal_placement_groups{state="CREATED"}')" = 1
check "metrics: no task pending or running" test "$(metric 'shoal_tasks{kind="task",state="running"}')$(metric 'shoal_tasks{kind="task",state="pending"}')" = 00
check "metrics: run-time histogram counted 6 task runs" test "$(metric 'shoal_task_run_seconds_count{kind="task"}')" = 6
check "metrics: the node is up with 2 CPUs" eval 'grep -Eq "^shoal_node_up\{node=\"[^\"]+\"\} 1$" "$OBS_OUT/metrics" && grep -Eq "^shoal_node_resource_capacity\{node=\"[^\"]+\",resource=\"CPU\"\} 2$" "$OBS_OUT/metrics"'
check "metrics: workers and object store gauges per node" eval 'grep -q "^shoal_workers{node=" "$OBS_OUT/metrics" && grep -q "^shoal_object_store_capacity_bytes{node=" "$OBS_OUT/metrics"'

"$PY" - examples/grafana/shoal.json "$OBS_OUT/metrics" <<'PYEOF'; check "grafana: every metric examples/grafana/shoal.json uses is in /metrics" test $? -eq 0
import json, re, sys
d = json.load(open(sys.argv[1]))
used = {m for p in d["panels"] for t in p["targets"] for m in re.findall(r"\bshoal_[a-z0-9_]+", t["expr"])}
have = {l.split("{")[0].split(" ")[0] for l in open(sys.argv[2]) if l.startswith("shoal_")}
missing = sorted(used - have - {"shoal_node_heartbeats_total"})  # members only: test/slurm/obs.sh has it
if missing or len(used) < 15:
    sys.exit(f"not in /metrics: {missing} (used {len(used)})")
PYEOF

# the timeline: every task the workload ran, with node, worker, start, end and state
"$PY" - "$OBS_OUT/trace.json" <<'PYEOF'; check "timeline: every task, actor creation and call, with node, worker, times and state" test $? -eq 0
import json, sys, collections
t = json.load(open(sys.argv[1]))
ev = [e for e in t["traceEvents"] if e["ph"] == "X"]
by = collections.Counter((e["args"]["function"], e["args"]["state"]) for e in ev)
want = {("square", "FINISHED"): 5, ("boom", "FAILED"): 1, ("Counter.incr", "FINISHED"): 3, ("Counter", "FINISHED"): 1}
bad = [(k, v, by.get(k)) for k, v in want.items() if by.get(k) != v]
for e in ev:
    a = e["args"]
    if not (a["node"] and a["worker"] and a["task_id"] and "start_s" in a and "end_s" in a and e["dur"] >= 0):
        bad.append(("incomplete", a))
names = {e["args"]["name"] for e in t["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
if not names:
    bad.append(("no worker threads named",))
if bad or len(ev) != 10:
    sys.exit(f"timeline: {bad}; {len(ev)} events: {by}")
PYEOF

# worker output: by task and actor in shoal logs, and in the driver, prefixed as Ray does
check "logs: --actor NAME gives the actor's calls' lines, prefixed" eval '[ "$(grep -c "^(Counter.incr pid=[0-9]*, node=[^)]*) counter at [123]$" "$OBS_OUT/logs_actor")" = 3 ] && [ $(wc -l < "$OBS_OUT/logs_actor") = 3 ]'
check "logs: --task ID gives that task's line only" eval '[ "$(cat "$OBS_OUT/logs_task")" != "" ] && grep -q "^(square pid=[0-9]*, node=[^)]*) square of 3$" "$OBS_OUT/logs_task" && [ $(wc -l < "$OBS_OUT/logs_task") = 1 ]'
check "logs: the driver prints its workers' lines, prefixed (log_to_driver)" eval 'grep -q "^(square pid=[0-9]*, node=[^)]*) square of 4$" "$OBS_OUT/driver_out" && grep -q "^(Counter.incr pid=[0-9]*, node=[^)]*) counter at 3$" "$OBS_OUT/driver_out"'
out=$("$SHOAL" run --quiet -- "$PY" -c '
import shoal, subprocess
shoal.init(log_to_driver=False)
@shoal.remote
def say():
    print("quiet line", flush=True)
shoal.get(say.remote())
print("kept:", subprocess.run(["shoal", "logs"], capture_output=True, text=True).stdout.strip())
' 2>&1)
check "logs: log_to_driver=False prints none in the driver, and shoal logs keeps them" eval '[ "$(grep -c "quiet line" <<<"$out")" = 1 ] && grep -q "^kept: (say pid=[0-9]*, node=[^)]*) quiet line$" <<<"$out"'

# the report, on stderr and as JSON
check "report: one summary on stderr" eval 'grep -q "^shoal: job report: .* on 1 node(s); tasks 6 (1 failed, 0 retried); actors 1 (0 failed), actor calls 3 (0 failed)" <<<"$err" && grep -q "CPU-seconds used by tasks .* given" <<<"$err"'
"$PY" - "$OBS_OUT/report.json" <<'PYEOF'; check "report: --report JSON holds what ran and the allocation" test $? -eq 0
import json, sys
r = json.load(open(sys.argv[1]))
want = {"nodes": 1, "tasks": 6, "tasks_failed": 1, "actors": 1, "actor_calls": 3, "actor_calls_failed": 0, "tasks_retried": 0}
bad = {k: r.get(k) for k, v in want.items() if r.get(k) != v}
if r["wall_seconds"] <= 0 or r["cpu_seconds_given"] <= 0 or not 0 < r["cpu_seconds_used"] <= r["cpu_seconds_given"]:
    bad["seconds"] = (r["wall_seconds"], r["cpu_seconds_used"], r["cpu_seconds_given"])
if bad:
    sys.exit(f"report: {bad} in {r}")
PYEOF
# GPU-seconds: go-nvml's DGX H100 mock offers 8 GPUs; a task holds 2 of them for 0.5 s
SHOAL_NVML_MOCK=dgxh100 "$SHOAL" run --quiet --report "$OBS_OUT/gpu.json" -- "$PY" -c '
import shoal, time
shoal.init()
@shoal.remote(num_gpus=2)
def hold():
    time.sleep(0.5)
shoal.get(hold.remote())' >/dev/null 2>&1
"$PY" - "$OBS_OUT/gpu.json" <<'PYEOF'; check "report: GPU-seconds given (8 GPUs x wall) and used (2 GPUs x the task's run)" test $? -eq 0
import json, sys
r = json.load(open(sys.argv[1]))
given, used, wall = r["gpu_seconds_given"], r["gpu_seconds_used"], r["wall_seconds"]
if not (abs(given - 8 * wall) < 0.01 * given and 2 * 0.5 <= used < 2 * 0.5 + 1 and used < given):
    sys.exit(f"gpu seconds: given {given} used {used} wall {wall}")
PYEOF
err=$("$SHOAL" run --quiet -- "$PY" -c 'import shoal; shoal.init(); shoal.get(shoal.remote(lambda: 1).remote())' 2>&1 >/dev/null)
check "report: --quiet prints none" eval '! grep -q "job report" <<<"$err"'

# observability off: no report, no dashboard, and the CLI says why
err=$(SHOAL_OBSERVABILITY=off "$SHOAL" run -- sh -c 'shoal dashboard; echo "rc=$?"' 2>&1)
check "off: no report, and shoal dashboard says observability is off" eval '! grep -q "job report" <<<"$err" && grep -q "observability is off" <<<"$err" && grep -q "rc=1" <<<"$err"'
err=$("$SHOAL" run --observability=maybe -- true 2>&1); rc=$?
check "off: a bad --observability is exit 2 and names the flag" eval '[ $rc -eq 2 ] && grep -q -- "--observability" <<<"$err"'

echo "test/obs/metrics.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
