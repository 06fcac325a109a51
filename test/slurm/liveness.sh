#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# Liveness on the real 3-node Slurm cluster (scripts/slurm-cluster.sh): a member node that stops
# answering without closing its connection is found by heartbeats (docs/architecture.md,
# "Liveness"). Two ways, each in its own job run with --heartbeat-timeout 2s:
#   stop: node2's agent is SIGSTOPped; cut: node2's link is cut (its veth down: no FIN, no RST).
# Either way the head logs node2 lost, the task that ran there is retried on another node and its
# result reaches the driver; on the cut link node2's agent also gives its head up and exits; and
# afterwards nothing of the cluster is left on any node. A third job (stopnocont) never continues
# node2's agent: once the driver is done, the head ends node2's task of the step (launcher/
# endlost.go), so the job ends within the heartbeat timeout plus 20 s instead of its time limit,
# and srun's exit status says a task ended badly. A fourth (stopnocont-batch) is the same with
# `shoal launch` run by the batch script, which starts the members' srun itself and ends it.
# Run it under `flock /tmp/shoal-slurm.lock` (make test-slurm does). Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-liveness.XXXXXX)
STOPPED=""
# whatever happens, node2 runs and is linked again at the end
trap '[[ -n $STOPPED ]] && kill -CONT $STOPPED 2>/dev/null; ip link set shoal-v2 up 2>/dev/null; rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }
TIMEOUT=2s

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds; false when time runs out
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < end)) || return 1; sleep 0.2; done
}
started() { [[ $(ls "$1"/started.* 2>/dev/null | wc -l) -ge 3 ]]; }
logged() { grep -q -- "$3" "$1/$2" 2>/dev/null; }  # logged DIR FILE PATTERN
job_gone() { [[ -z $(squeue -h -j "$1" 2>/dev/null) ]]; }
node2_agent_gone() { [[ -z $(shoal_pids "$1" node2) ]]; }

# case NAME: run the driver, make node2 silent the NAME way, and check what a user would
case_() {
  local name=$1 W=$WORK/$1
  mkdir -p "$W"
  # three tasks of 1 CPU on three nodes of 1 CPU (the job's share): one per node, whatever the placement policy;
  # each waits for the test's go-ahead, and a retry of the node2 task needs a node freed
  cat > "$W/driver.py" <<PY
import os, time, shoal
W = "$W"
shoal.init()
print("CLUSTER", os.environ["SHOAL_CLUSTER_ID"], flush=True)
@shoal.remote(num_cpus=1, max_retries=2)
def work(i):
    node = os.environ["SHOAL_NODE_ID"]
    open(f"{W}/started.{i}.{node}.{time.monotonic_ns()}", "w").close()
    while not os.path.exists(f"{W}/go"):
        time.sleep(0.1)
    return i, node
print("RESULT", sorted(shoal.get([work.remote(i) for i in range(3)])), flush=True)
PY
  # each node's agent logs to a file of its own: a cut-off node's output cannot reach srun
  if [[ $name == stopnocont-batch ]]; then  # shoal launch from the batch script: it starts the members' srun itself
    cat > "$W/job.sbatch" <<SB
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 --output=$W/out
shoal launch --heartbeat-timeout $TIMEOUT -- python3 $W/driver.py 2>>$W/log.node1
echo "launch exit=\$?"
SB
  else
    cat > "$W/job.sbatch" <<SB
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 --output=$W/out
srun bash -c 'exec shoal launch --heartbeat-timeout $TIMEOUT -- python3 $W/driver.py 2>>$W/log.\$SLURMD_NODENAME'
echo "srun exit=\$?"
SB
  fi
  local jid
  jid=$(cd "$W" && sbatch --parsable "$W/job.sbatch") || { bad "$name: sbatch"; return; }
  if ! wait_for 120 started "$W"; then
    bad "$name: the three tasks did not start" "$(ls "$W")" "$(tail -n 30 "$W"/out "$W"/log.* 2>/dev/null)"; scancel "$jid"; return
  fi
  local victim
  victim=$(ls "$W" | sed -n 's/^started\.\([0-9]\)\.node2\..*/\1/p' | head -1)
  local pids
  pids=$(shoal_pids "$jid" node2)
  if [[ -z $victim || -z $pids ]]; then
    bad "$name: no task or no agent on node2" "tasks: $(ls "$W")" "agent pids: $pids"; scancel "$jid"; return
  fi
  local t0=$SECONDS
  case $name in
    stop|stopnocont*) STOPPED=$pids; kill -STOP $pids ;;
    cut)  ip link set shoal-v2 down ;;
  esac
  if wait_for 60 logged "$W" log.node1 'node lost: no heartbeat from its agent.*node=node2'; then
    ok "$name: the head logs node2 lost, no heartbeat for the timeout ($TIMEOUT; seen after about $((SECONDS - t0)) s)"
  else
    bad "$name: the head did not give node2 up" "$(tail -n 30 "$W/log.node1")"
  fi
  touch "$W/go"
  if wait_for 90 logged "$W" out '^RESULT '; then
    local res
    res=$(grep '^RESULT ' "$W/out")
    local again
    again=$(ls "$W" | grep -c "^started\.$victim\.node[13]\.")
    if has "$res" "(0, 'node" && has "$res" "(1, 'node" && has "$res" "(2, 'node" && ! has "$res" "node2" && [[ $again -ge 1 ]]; then
      ok "$name: task $victim, which ran on node2, was retried on another node and its result arrived: $res"
    else
      bad "$name: results" "$res" "task $victim started again on node1/node3: $again time(s)" "$(ls "$W")"
    fi
  else
    bad "$name: no result reached the driver" "$(tail -n 30 "$W/out" "$W/log.node1")"
  fi
  case $name in
    stop)
      # let it run again: it finds its connection closed by the head, stops its workers, exits
      kill -CONT $pids; STOPPED=""
      if wait_for 60 node2_agent_gone "$jid" && logged "$W" log.node2 "lost the connection to the head node"; then
        ok "stop: node2's agent, running again, finds its head gone, stops its workers and exits with an error"
      else
        bad "stop: node2's agent after SIGCONT" "agent pids: $(shoal_pids "$jid" node2)" "$(tail -n 20 "$W/log.node2")"
      fi ;;
    stopnocont)
      # never continued: the head ends node2's task once the driver is done (SIGCONT and
      # SIGTERM through the node's slurmstepd, SIGKILL 5 s later), and the job ends
      local t1=$SECONDS
      if wait_for 22 job_gone "$jid" && ! kill -0 $pids 2>/dev/null; then
        ok "stopnocont: the job ended $((SECONDS - t1)) s after the driver's result, node2's stopped agent with it (bound: the heartbeat timeout + 20 s)"
      else
        bad "stopnocont: the job still ran $((SECONDS - t1)) s after the driver's result" "$(squeue -h -j "$jid")" "$(tail -n 20 "$W/out" "$W/log.node1")"
      fi
      kill -KILL $pids 2>/dev/null; kill -CONT $pids 2>/dev/null; STOPPED=""
      # the head's stderr (log.node1 here) says what it did; srun's status is the ended task's
      if has "$(cat "$W/log.node1")" "shoal: node(s) node2 were lost while the driver ran (it exited with code 0)" &&
         has "$(cat "$W/log.node1")" "shoal: node2: the task of step [0-9]*\.0 still ran; ended it with SIG" &&
         has "$(cat "$W/out")" "^srun exit=[1-9]" && has "$(cat "$W/out")" "node2: task 1: "; then
        ok "stopnocont: the head says node2's task was ended ($(grep -m1 -o 'ended it with SIG[A-Z]*' "$W/log.node1")) and the driver's code was 0; srun names node2's task and exits $(sed -n 's/^srun exit=//p' "$W/out")"
      else
        bad "stopnocont: what the job says" "$(cat "$W/out")" "$(tail -n 5 "$W/log.node1")"
      fi ;;
    stopnocont-batch)
      # shoal launch from the batch script started the members' srun itself, as its child: at
      # teardown it ends its children (SIGTERM, SIGKILL 2 s later), and srun's step with them
      local t1=$SECONDS
      if wait_for 22 job_gone "$jid" && ! kill -0 $pids 2>/dev/null; then
        ok "stopnocont-batch: the job ended $((SECONDS - t1)) s after the driver's result, node2's stopped agent with it (bound: the heartbeat timeout + 20 s)"
      else
        bad "stopnocont-batch: the job still ran $((SECONDS - t1)) s after the driver's result" "$(squeue -h -j "$jid")" "$(tail -n 20 "$W/out" "$W/log.node1")"
      fi
      kill -KILL $pids 2>/dev/null; kill -CONT $pids 2>/dev/null; STOPPED=""
      if has "$(cat "$W/log.node1" "$W/out")" "STEP [0-9]*\.0 ON node2 CANCELLED" && has "$(cat "$W/out")" "^launch exit=0$"; then
        ok "stopnocont-batch: the members' step is cancelled on node2, and shoal launch exits with the driver's code (0)"
      else
        bad "stopnocont-batch: what the job says" "$(cat "$W/out")" "$(tail -n 5 "$W/log.node1")"
      fi ;;
    cut)
      # the member notices the silent head by itself, stops its workers and exits with an error
      if wait_for 60 node2_agent_gone "$jid" && logged "$W" log.node2 "lost the head node; stopping this node's workers.*no answer from the head node's agent"; then
        ok "cut: node2's agent gives its silent head up by itself, stops its workers and exits"
      else
        bad "cut: node2's agent did not give its head up" "agent pids: $(shoal_pids "$jid" node2)" "$(tail -n 20 "$W/log.node2")"
      fi
      ip link set shoal-v2 up ;;
  esac
  if ! wait_for 120 job_gone "$jid"; then scancel "$jid"; wait_for 30 job_gone "$jid"; fi
  local cid left n
  cid=$(sed -n 's/^CLUSTER //p' "$W/out" | head -1)
  wait_for 30 eval '[[ $(live_procs "$cid") == 0 ]]'
  n=$(live_procs "$cid")
  left=$(ls -d /dev/shm/shoal-"$cid"* /tmp/shoal-*/"$cid"* 2>/dev/null)
  if [[ -n $cid && $n == 0 && -z $left ]]; then
    ok "$name: nothing of cluster $cid is left on any node (no process, store or session directory)"
  else
    bad "$name: left behind" "cluster=$cid processes=$n" "$left" "$(tail -n 20 "$W"/out "$W"/log.*)"
  fi
}

case_ stop
case_ stopnocont
case_ stopnocont-batch
case_ cut
finish
