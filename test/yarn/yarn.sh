#!/usr/bin/env bash
# `shoal yarn` against a real YARN (MiniYARNCluster: one ResourceManager, two NodeManagers whose
# containers are real processes), as a data team uses it: a driver's tasks run in every
# container, queue/name/tags reach YARN, a failing driver's exit code comes back, a kill from the
# client leaves no agent or worker process, a container killed mid-run is reported and replaced,
# and mistakes get clear errors. Starts the MiniYARNCluster when none runs (and stops it after).
# Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/yarn/lib.sh"
WORK=$(mktemp -d /tmp/shoal-yarn-test.XXXXXX)
cleanup() {
  local p
  for p in $(jobs -p); do kill "$p" 2>/dev/null; done
  rm -rf "$WORK"
  yarn_cleanup
}
trap cleanup EXIT
COMMON=(--memory 256m --am-memory 512m --env "PYTHONPATH=$ROOT/python")
DRIVERS=$ROOT/test/yarn/drivers

# app_procs APP: live processes (zombies excluded) running in one of APP's containers, found by
# the CONTAINER_ID every container process (agent, worker, driver) inherits
app_procs() {
  local pre="CONTAINER_ID=container_${1#application_}_" e st n=0
  for e in /proc/[0-9]*/environ; do
    st=$(cat "${e%/environ}/stat" 2>/dev/null) || continue; st=${st##*) }
    [[ ${st%% *} == Z ]] && continue
    { tr '\0' '\n' < "$e"; } 2>/dev/null | grep -q "^$pre" && n=$((n + 1))
  done
  echo "$n"
}
# agent_pid CONTAINER: the pid of `shoal yarn agent` in that container
agent_pid() {
  local e p
  for e in /proc/[0-9]*/environ; do
    p=${e%/environ}; p=${p#/proc/}
    { tr '\0' '\n' < "$e"; } 2>/dev/null | grep -qx "CONTAINER_ID=$1" || continue
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q 'yarn agent' && { echo "$p"; return; }
  done
}
app_of() { grep -o 'application_[0-9]*_[0-9]*' "$1" | head -1; }
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
  local t=$(( $1 * 10 )); shift
  while ((t-- > 0)); do "$@" && return 0; sleep 0.1; done
  return 1
}

# 1. a driver whose tasks run in every container; queue, name and tags reach YARN
out=$(cd "$DRIVERS" && "$SHOAL" yarn submit --containers 3 "${COMMON[@]}" --queue batch --name shoal-spread \
  --tags team-a,nightly --report "$WORK/spread.json" -- "$PY" spread.py 2>"$WORK/spread.err"); rc=$?
app=$(app_of "$WORK/spread.err")
prog=$(cat "$WORK/spread.err")
cons=$(grep '^CONTAINERS' <<<"$out" | tr ' ' '\n' | grep -c "^container_${app#application_}_")
if ((rc == 0)) && [[ -n $app ]] && ((cons == 4)); then
  ok "tasks ran in all 4 containers of $app (the AM's and 3 members)"
else
  bad "tasks in every container (rc=$rc, $cons of 4 containers)" "$out" "$prog"
fi
# (agents may all join between two polls, so "containers 2/3 granted, agents 1/3 joined" is not
# always seen; its format is unit-tested)
# (nor ACCEPTED, when the AM's container comes before the first poll)
if has "$prog" "RUNNING: " && has "$prog" "3/3 agents joined, driver running" &&
  has "$prog" "FINISHED (SUCCEEDED): driver exit code 0"; then
  ok "submit shows progress: RUNNING, agents joined, final status"
else
  bad "progress lines" "$prog"
fi
if grep -q "^shoal: job report: .* on 4 node(s); tasks [1-9][0-9]* (0 failed, 0 retried)" <<<"$prog"; then
  ok "submit ends with the end-of-job report (4 nodes), from the end of driver.err"
else
  bad "the end-of-job report" "$(grep "shoal:" <<<"$prog" | tail -5)"
fi
rep=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["nodes"], r["tasks"], r["tasks_failed"])' "$WORK/spread.json" 2>&1)
said=$(grep -o "^shoal: job report: .* on 4 node(s); tasks [0-9]*" <<<"$prog" | grep -o "[0-9]*$")
if [[ -n $said && $rep == "4 $said 0" ]]; then
  ok "--report FILE: the same report as JSON (4 nodes, $said tasks, 0 failed)"
else
  bad "--report FILE (the stderr report said $said tasks)" "$rep" "$(head -20 "$WORK/spread.json" 2>&1)"
fi
o=$("$SHOAL" yarn submit --detach --report "$WORK/x.json" -- true 2>&1); rc=$?
if ((rc == 2)) && has "$o" "--report .* waits for the application's end"; then
  ok "--report with --detach is refused, naming how to read the report later"
else
  bad "--report with --detach (rc=$rc)" "$o"
fi
st=$("$SHOAL" yarn status "$app" 2>&1)
if has "$st" "queue: *root.batch" && has "$st" "name: *shoal-spread" && has "$st" "team-a" && has "$st" "nightly" &&
  has "$st" "final status: SUCCEEDED" && has "$st" "driver exit: *0"; then
  ok "status shows queue batch, name, tags, SUCCEEDED and the driver's exit code"
else
  bad "status of $app" "$st"
fi
logs=$("$SHOAL" yarn logs --file stderr --file driver.out "$app" 2>&1)
if [[ $(grep -c '^==> container_.* stderr ' <<<"$logs") == 4 ]] && has "$logs" "joined the head" && has "$logs" "^CONTAINERS"; then
  ok "logs shows the AM's and every agent's stderr and the driver's output"
else
  bad "logs of $app" "$(head -c 3000 <<<"$logs")"
fi
if wait_for 30 test "$(app_procs "$app")" = 0; then
  ok "nothing of $app runs after it finished"
else
  bad "processes left by $app: $(app_procs "$app")"
fi

# 1b. --node-label puts the ApplicationMaster and every member on the labelled NodeManager
if [[ -n ${YARN_NODE_LABEL:-} ]]; then
  out=$("$SHOAL" yarn submit --containers 3 "${COMMON[@]}" --node-label "$YARN_NODE_LABEL" -- true 2>&1); rc=$?
  app=$(grep -o 'application_[0-9]*_[0-9]*' <<<"$out" | head -1)
  nodes=$("$SHOAL" yarn logs --file containers.txt "$app" 2>&1 | awk '/^container_/ {print $3}' | sort -u)
  amnode=$(curl -fsS "$SHOAL_YARN_RM/ws/v1/cluster/apps/$app/appattempts" | grep -o '"nodeId":"[^"]*"' | cut -d'"' -f4)
  st=$("$SHOAL" yarn status "$app" 2>&1)
  if ((rc == 0)) && [[ $nodes == "$YARN_LABELED_NODE" && $amnode == "$YARN_LABELED_NODE" ]] && has "$st" "node label: *$YARN_NODE_LABEL"; then
    ok "--node-label $YARN_NODE_LABEL: the AM and all 3 members ran on $YARN_LABELED_NODE"
  else
    bad "--node-label (rc=$rc, members on '$nodes', AM on '$amnode', labelled node $YARN_LABELED_NODE)" "$out" "$st"
  fi
  e=$("$SHOAL" yarn submit "${COMMON[@]}" --node-label nosuch -- true 2>&1); r=$?
  if ((r == 1)) && has "$e" "labelExpression of resource request=nosuch"; then
    ok "an unknown node label is refused with YARN's reason"
  else
    bad "unknown node label (rc=$r)" "$e"
  fi
else
  echo "skip --node-label: the MiniYARNCluster was started without a label (SHOAL_YARN_NODE_LABEL empty)"
fi

# 1c. --archives: an archive is unpacked into every container, and the driver imports from it
mkdir -p "$WORK/arch/yarnarch" && echo 'VALUE = 42' >"$WORK/arch/yarnarch/__init__.py" &&
  tar -C "$WORK/arch" -czf "$WORK/deps.tar.gz" yarnarch
out=$("$SHOAL" yarn submit --containers 2 "${COMMON[@]}" --env "PYTHONPATH=$ROOT/python:deps" --archives "$WORK/deps.tar.gz#deps" \
  -- "$PY" -c "import yarnarch; print('ARCH', yarnarch.VALUE)" 2>&1); rc=$?
app=$(grep -o 'application_[0-9]*_[0-9]*' <<<"$out" | head -1)
unpacked=$("$SHOAL" yarn logs --file directory.info "$app" 2>/dev/null | awk '/^==> container_/ {c=$2} /deps\/yarnarch\/__init__.py/ {seen[c]=1} END {print length(seen)}')
if ((rc == 0)) && has "$out" "^ARCH 42" && [[ $unpacked == 3 ]]; then
  ok "--archives deps.tar.gz#deps is unpacked in all 3 containers; the driver imports from it"
else
  bad "--archives (rc=$rc, unpacked in $unpacked of 3 containers)" "$out"
fi

# 1c2. a member container has an object store and joins as a Slurm member does (one member path)
out=$(cd "$DRIVERS" && "$SHOAL" yarn submit --containers 2 "${COMMON[@]}" -- "$PY" store.py 2>&1); rc=$?
stores=$(grep -c "^STORE container_.* [1-9][0-9]* MiB" <<<"$out"); objs=$(grep -Ec "^OBJECT container_[^ ]+ [0-9]{7,}$" <<<"$out")
if ((rc == 0 && stores == 2 && objs == 2)); then ok "both member containers offer an object store; 8 MiB objects put there are read by the driver"
else bad "member object stores (rc=$rc, $stores stores, $objs objects of 2)" "$out"; fi

# 1d. --insecure-data-plane reaches every container's workers (without it: TLS everywhere)
for mode in clear tls; do
  flag=(); [[ $mode == clear ]] && flag=(--insecure-data-plane)
  out=$(cd "$DRIVERS" && "$SHOAL" yarn submit --containers 2 "${COMMON[@]}" "${flag[@]}" -- "$PY" dataplane.py 2>&1); rc=$?
  n=$(grep -c "^DATAPLANE container_.* $mode\$" <<<"$out"); other=$(grep "^DATAPLANE" <<<"$out" | grep -vc " $mode\$")
  if ((rc == 0 && n == 3 && other == 0)); then ok "data plane $mode in all 3 containers (${flag[*]:-default})"
  else bad "data plane $mode in every container (rc=$rc, $n of 3, $other otherwise)" "$out"; fi
done

# 2. a failing driver's exit code comes back, and its output is shown; the ResourceManager and
# its scheduler address come from $YARN_CONF_DIR/yarn-site.xml
# and --stage local ships file:// resources (every NodeManager here sees this machine's files)
out=$(cd "$DRIVERS" && env -u SHOAL_YARN_RM -u SHOAL_YARN_SCHEDULER_ADDRESS "$SHOAL" yarn submit --containers 2 --stage local \
  "${COMMON[@]}" -- "$PY" fail.py 2>"$WORK/fail.err"); rc=$?
app=$(app_of "$WORK/fail.err")
st=$("$SHOAL" yarn status "$app" 2>&1)
if ((rc == 7)) && has "$out" "TASK 42" && grep -q "driver failing on purpose" "$WORK/fail.err" &&
  has "$st" "final status: FAILED" && has "$st" "driver exit: *7"; then
  ok "a failing driver's exit code (7) is submit's, FAILED in status, its stdout and stderr shown (RM from yarn-site.xml, --stage local)"
else
  bad "failing driver (rc=$rc)" "$out" "$(cat "$WORK/fail.err")" "$st"
fi

# 2b. the driver's output reaches the client while the driver runs; --detach prints the id only
mkdir -p "$WORK/stream"
(cd "$DRIVERS" && exec "$SHOAL" yarn submit "${COMMON[@]}" --env "MARK_DIR=$WORK/stream" -- "$PY" stream.py \
  >"$WORK/stream.out" 2>"$WORK/stream.err") &
sub=$!
if wait_for 90 grep -q "tick 0" "$WORK/stream.out"; then
  touch "$WORK/stream/seen"
  wait "$sub"; rc=$?
  if ((rc == 0)) && [[ $(grep -c '^tick 0$' "$WORK/stream.out") == 1 && $(grep -c '^tick 1$' "$WORK/stream.out") == 1 ]]; then
    ok "the driver's output is shown while it runs, each line once"
  else
    bad "streamed output (rc=$rc)" "$(cat "$WORK/stream.out")" "$(cat "$WORK/stream.err")"
  fi
else
  bad "the driver's first line never reached the client while it ran" "$(cat "$WORK/stream.out")" "$(cat "$WORK/stream.err")"
  kill "$sub" 2>/dev/null
fi
id=$("$SHOAL" yarn submit --detach "${COMMON[@]}" -- true 2>"$WORK/detach.err"); rc=$?
fin() { "$SHOAL" yarn status "$id" 2>/dev/null | grep -q "state: *FINISHED"; }
if ((rc == 0)) && [[ $id =~ ^application_[0-9]+_[0-9]+$ ]] && wait_for 60 fin &&
  "$SHOAL" yarn status "$id" | grep -q "final status: SUCCEEDED"; then
  ok "--detach prints only the application id ($id), which then finishes SUCCEEDED"
else
  bad "--detach (rc=$rc, stdout '$id')" "$(cat "$WORK/detach.err")"
fi

# 3. kill from the client: submit returns 143, the application is KILLED, nothing is left
(cd "$DRIVERS" && exec "$SHOAL" yarn submit --containers 2 "${COMMON[@]}" -- "$PY" sleep.py >"$WORK/kill.out" 2>"$WORK/kill.err") &
sub=$!
if wait_for 120 grep -q "driver running" "$WORK/kill.err"; then
  app=$(app_of "$WORK/kill.err")
  wait_for 30 test "$(app_procs "$app")" -ge 7 # 3 agents + 3 busy workers + the driver
  before=$(app_procs "$app")
  staged=""
  if [[ -n ${SHOAL_YARN_WEBHDFS:-} ]]; then # files staged on HDFS while it runs, with their sizes
    staged=$(curl -fsS "$SHOAL_YARN_WEBHDFS/webhdfs/v1/user/$(id -un)/.shoal/$app?op=LISTSTATUS&user.name=$(id -un)" |
      python3 -c 'import json,sys; print(" ".join(sorted("%s:%d" % (f["pathSuffix"], f["length"]) for f in json.load(sys.stdin)["FileStatuses"]["FileStatus"])))')
    want="shoal:$(stat -c %s "$SHOAL") sleep.py:$(stat -c %s "$DRIVERS/sleep.py")"
    if [[ $staged == "$want" ]]; then
      ok "files staged on HDFS through WebHDFS while $app runs: $staged"
    else
      bad "HDFS staging of $app: '$staged', want '$want'"
    fi
  fi
  kout=$("$SHOAL" yarn kill "$app" 2>&1); krc=$?
  wait "$sub"; rc=$?
  wait_for 30 test "$(app_procs "$app")" = 0
  after=$(app_procs "$app")
  st=$("$SHOAL" yarn status "$app" 2>&1)
  if ((krc == 0 && rc == 143 && before >= 7 && after == 0)) && has "$st" "state: *KILLED"; then
    ok "kill: $before processes before, none after; KILLED; submit exited 143"
  else
    bad "kill (kill rc=$krc, submit rc=$rc, processes $before -> $after)" "$kout" "$(cat "$WORK/kill.err")" "$st"
  fi
  if [[ -n $staged ]]; then
    gone=$(curl -sS -o /dev/null -w '%{http_code}' "$SHOAL_YARN_WEBHDFS/webhdfs/v1/user/$(id -un)/.shoal/$app?op=GETFILESTATUS&user.name=$(id -un)")
    if [[ $gone == 404 ]]; then
      ok "the staged files of $app are removed after the kill"
    else
      bad "staged files of $app after the kill: HTTP $gone"
    fi
  fi
  again=$("$SHOAL" yarn kill "$app" 2>&1); arc=$?
  if ((arc == 1)) && has "$again" "already ended"; then
    ok "killing an ended application says so"
  else
    bad "second kill (rc=$arc)" "$again"
  fi
else
  bad "kill: the driver never ran" "$(cat "$WORK/kill.err")"
  kill "$sub" 2>/dev/null
fi

# 3b. Ctrl-C on a waiting `shoal yarn submit` kills the application
(cd "$DRIVERS" && exec "$SHOAL" yarn submit --containers 1 "${COMMON[@]}" -- "$PY" sleep.py >"$WORK/int.out" 2>"$WORK/int.err") &
sub=$!
if wait_for 120 grep -q "driver running" "$WORK/int.err"; then
  app=$(app_of "$WORK/int.err")
  kill -INT "$sub"
  wait "$sub"; rc=$?
  wait_for 30 test "$(app_procs "$app")" = 0
  st=$("$SHOAL" yarn status "$app" 2>&1)
  if ((rc == 143)) && has "$(cat "$WORK/int.err")" "interrupted; killing $app" && has "$st" "state: *KILLED" &&
    [[ $(app_procs "$app") == 0 ]]; then
    ok "Ctrl-C on submit kills $app, exits 143, leaves nothing"
  else
    bad "Ctrl-C (rc=$rc)" "$(cat "$WORK/int.err")" "$st"
  fi
else
  bad "Ctrl-C: the driver never ran" "$(cat "$WORK/int.err")"
  kill "$sub" 2>/dev/null
fi

# 4. a container killed mid-run is reported and replaced; the driver carries on with the new one
mkdir -p "$WORK/mark"
(cd "$DRIVERS" && exec "$SHOAL" yarn submit --containers 3 --max-replacements 2 "${COMMON[@]}" --env "MARK_DIR=$WORK/mark" \
  -- "$PY" replace.py >"$WORK/replace.out" 2>"$WORK/replace.err") &
sub=$!
if wait_for 120 test -s "$WORK/mark/members"; then
  app=$(app_of "$WORK/replace.err")
  victim=$(head -1 "$WORK/mark/members")
  pid=$(agent_pid "$victim")
  [[ -n $pid ]] && kill -KILL "$pid"
  wait "$sub"; rc=$?
  out=$(cat "$WORK/replace.out")
  new=$(grep '^NEW' <<<"$out" | awk '{print $2}')
  st=$("$SHOAL" yarn status "$app" 2>&1)
  if ((rc == 0)) && [[ -n $pid ]] && has "$out" "^LOST $victim" && [[ -n $new ]] && grep '^CONTAINERS' <<<"$out" | grep -q "$new" &&
    has "$st" "container $victim ended" && has "$st" "replaced (1/2)"; then
    ok "killed agent of $victim reported in diagnostics and replaced by $new, which ran tasks"
  else
    bad "replacement (rc=$rc, agent pid '$pid')" "$out" "$(cat "$WORK/replace.err")" "$st"
  fi
else
  bad "replacement: the driver never listed its members" "$(cat "$WORK/replace.err")"
  kill "$sub" 2>/dev/null
fi

# 4a. an elastic training gang (shoal train --nnodes 2:3) on the AM's node and 2 containers: a
# container's agent is killed mid-training; YARN replaces the container, and the gang goes on
# from its checkpoint on the replacement (or first on the 2 nodes left, then grows back to 3 when
# the replacement joins: train/grow.go) and ends with one process's weights; nothing is left
mkdir -p "$WORK/ck-grow"
(cd "$WORK" && exec "$SHOAL" yarn submit --containers 2 --max-replacements 1 "${COMMON[@]}" \
  -- "$SHOAL" train --nnodes 2:3 --nproc-per-node 1 --max-restarts 2 -- "$PY" "$ROOT/examples/train/elastic_numpy.py" \
  --steps 400 --step-time 0.05 --ckpt-dir "$WORK/ck-grow" >"$WORK/grow.out" 2>"$WORK/grow.err") &
sub=$!
if wait_for 120 grep -q "3 ranks running (attempt 0)" "$WORK/grow.err" && wait_for 60 grep -q "^.*rank2\]: RESUME" "$WORK/grow.out"; then
  app=$(app_of "$WORK/grow.err")
  sleep 1
  victim=$(grep -h "3 ranks running (attempt 0)" "$WORK/grow.err" | grep -o 'container_[0-9_]*' | tail -1)
  pid=$(agent_pid "$victim")
  [[ -n $pid ]] && kill -KILL "$pid"
  wait "$sub"; rc=$?
  wait_for 30 test "$(app_procs "$app")" = 0
  out=$(cat "$WORK/grow.out"); err=$(cat "$WORK/grow.err")
  last=$(grep "ranks running (attempt" <<<"$err" | tail -1)
  if ((rc == 0)) && [[ -n $pid ]] && has "$last" "3 ranks running" && ! has "$last" "$victim" &&
    has "$out" "FINAL world=3 steps=400 .* agree=True" && has "$err" "rank 2 on $victim failed" && [[ $(app_procs "$app") == 0 ]]; then
    ok "shoal train --nnodes 2:3: $victim's agent killed mid-training, the gang goes on with 3 ranks on its replacement from the checkpoint, one process's weights, nothing left"
  else
    bad "elastic training across a replaced container (rc=$rc, agent pid '$pid')" "$err" "$(tail -5 <<<"$out")"
  fi
else
  bad "elastic training: the gang never ran" "$(cat "$WORK/grow.err")"
  kill "$sub" 2>/dev/null
fi

# 4b. containers the cluster cannot give: the join time-out fails the application, naming what joined
out=$("$SHOAL" yarn submit --containers 3 --memory "${YARN_NM_MEMORY_MB}m" --am-memory 512m --join-timeout 5s -- true 2>&1); rc=$?
app=$(grep -o 'application_[0-9]*_[0-9]*' <<<"$out" | head -1)
wait_for 30 test "$(app_procs "$app")" = 0
# (1 of 3 fits, next to the AM; fewer when other applications share the cluster)
if ((rc == 1)) && has "$out" "FINISHED (FAILED): shoal: timed out after 5s waiting for agents: [01]/3 joined, [01] containers granted" &&
  [[ $(app_procs "$app") == 0 ]]; then
  ok "3 containers of a whole node's memory: after --join-timeout 5s, FAILED naming 1/3 joined; exit 1; nothing left"
else
  bad "join time-out (rc=$rc)" "$out"
fi

# 5. mistakes get errors that say what to do
e1=$("$SHOAL" yarn status application_12_x 2>&1); r1=$?
e2=$("$SHOAL" yarn status "application_${app#application_}9" 2>&1); r2=$?
e3=$("$SHOAL" yarn submit --memory 64g -- true 2>&1); r3=$?
e4=$(env -u SHOAL_YARN_SCHEDULER_ADDRESS -u YARN_CONF_DIR -u HADOOP_CONF_DIR "$SHOAL" yarn submit -- true 2>&1); r4=$?
e5=$("$SHOAL" yarn submit --memory 4x -- true 2>&1); r5=$?
e6=$("$SHOAL" yarn submit --rm 127.0.0.1:1 --scheduler-address 127.0.0.1:1 -- true 2>&1); r6=$?
e7=$("$SHOAL" yarn submit --memory 256m --am-memory 256m --scheduler-address 127.0.0.1:1 -- true 2>&1); r7=$?
if ((r1 == 2)) && has "$e1" "is not a YARN application id" && ((r2 == 1)) && has "$e2" "NotFoundException" &&
  ((r3 == 1)) && has "$e3" "larger than this cluster's largest" && ((r4 == 1)) && has "$e4" "set --scheduler-address" &&
  ((r5 == 2)) && has "$e5" "not a memory size" && ((r6 == 1)) && has "$e6" "reach the ResourceManager at http://127.0.0.1:1" &&
  ((r7 == 1)) && has "$e7" "FAILED" && has "$e7" "scheduler at 127.0.0.1:1 (--scheduler-address)"; then
  ok "bad id, unknown application, oversized container, no or wrong scheduler address, bad size, unreachable RM: clear errors"
else
  bad "errors" "$e1 ($r1)" "$e2 ($r2)" "$e3 ($r3)" "$e4 ($r4)" "$e5 ($r5)" "$e6 ($r6)" "$e7 ($r7)"
fi

finish
