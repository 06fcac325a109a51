#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# Chaos on the 3-node Slurm test cluster (scripts/slurm-cluster.sh): each run sbatches a 3-node
# job whose driver (test/slurm/chaos_driver.py) does real work with results it checks, injects
# faults at seeded random times from outside, and then checks the outcome and every node.
#
#   scripts/chaos.sh [--runs N] [--seed S] [--faults LIST] [--seeds LIST] [--out FILE] [--batch K]
#
#   --runs N       runs to make (default 10); run i uses seed S+i
#   --seed S       the first run's seed (default: from the clock); a run is replayed with
#                  `--seed S --runs 1 --faults F` using the seed and faults it printed
#   --faults LIST  comma-separated fault kinds to draw from (default: all, see FAULTS below);
#                  each run draws 1 or 2 of them (one when the list has one)
#   --seeds LIST   seed:fault[+fault] pairs to run as given, comma separated (the short form,
#                  make test-chaos); replaces --runs/--seed/--faults
#   --out FILE     append one JSON line per run (seed, faults, outcome, seconds, leftovers)
#   --batch K      runs per hold of /tmp/shoal-slurm.lock (default 3): the cluster is shared,
#                  so the lock is released (and the cluster taken down) between batches
#   --summarize F  print the figures of the JSON lines in F (as docs/reliability.md has them)
#                  and exit; runs nothing
#
# Environment: CHAOS_COLLECTIVE=0 leaves the collective group out of the driver's work, and
# CHAOS_GANG=0 its training gang (shoal.train.run, 3 workers, max_failures=4), and CHAOS_NESTED=0
# its tasks that submit one-CPU tasks on their own node (member-local scheduling).
#
# Outcomes: ok (finished with correct results), expected (failed with the documented error of
# its fault: ObjectStoreFullError, OutOfMemoryError, or the job ended by scancel / its time
# limit within the documented time), and the failures: wrong (a wrong result), hang (the run's
# deadline passed), slow (scancel or the time limit took longer than documented), error (any
# other failure), leftover (a process, socket, shm segment, cgroup
# or file of the run left on a node after it), disturbed (the second job's own work failed).
# Last line: "N passed, N failed" (a run passes when its outcome is ok or expected).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. "$PWD/test/slurm/lib.sh"

FAULTS_ALL=kill-worker,kill-actor,kill-agent,stop-agent,stop-agent-nocont,link-cut,loss,delay,throttle,store-full,spill-full,scancel,timelimit,second-job,memhog
runs=10; seed=""; faults=$FAULTS_ALL; seeds=""; out=""; batch=3
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --faults) faults=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --summarize)
      [[ -r ${2:-} ]] || { echo "chaos.sh: --summarize ${2:-}: want a file of JSON lines written by --out" >&2; exit 2; }
      python3 - "$2" <<'PY'
import collections, json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = collections.Counter(r["outcome"] for r in runs)
kinds = collections.Counter(f for r in runs for f in r["faults"])
per = collections.defaultdict(collections.Counter)
for r in runs:
    for f in r["faults"]:
        per[f][r["outcome"]] += 1
print(f"runs: {len(runs)} (seeds {min(r['seed'] for r in runs)}..{max(r['seed'] for r in runs)}); "
      f"median {sorted(r['secs'] for r in runs)[len(runs) // 2]} s, longest {max(r['secs'] for r in runs)} s")
print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(out.items())))
print(f"leftovers: {sum(1 for r in runs if r['leftovers'])}, wrong results: {out['wrong']}, hangs: {out['hang']}")
print()
print("| fault | runs drawn | injected | ok | expected | failed |")
print("| --- | --- | --- | --- | --- | --- |")
for f, n in sorted(kinds.items()):
    c = per[f]
    failed = n - c["ok"] - c["expected"]
    # a fault drawn for a time after the job had ended, or one this machine cannot make, was not injected
    inj = sum(1 for r in runs if f in r["faults"] and f" {f} " in f" {r['injected']}" and f"{f} skipped" not in r["injected"])
    print(f"| {f} | {n} | {inj} | {c['ok']} | {c['expected']} | {failed} |")
bad = [r for r in runs if r["outcome"] not in ("ok", "expected")]
if bad:
    print()
    for r in bad:
        print(f"- seed {r['seed']} {'+'.join(r['faults'])}: {r['outcome']}: {r['detail'][:300]} {r['leftovers']}")
PY
      exit 0 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $runs =~ ^[0-9]+$ ]] || { echo "chaos.sh: --runs $runs: want a number" >&2; exit 2; }
[[ -z $seed || $seed =~ ^[0-9]+$ ]] || { echo "chaos.sh: --seed $seed: want a number" >&2; exit 2; }
[[ $batch =~ ^[1-9][0-9]*$ ]] || { echo "chaos.sh: --batch $batch: want a positive number" >&2; exit 2; }
IFS=, read -ra POOL <<<"$faults"
for f in "${POOL[@]}"; do
  [[ ,$FAULTS_ALL, == *,$f,* ]] || { echo "chaos.sh: unknown fault $f; the kinds are $FAULTS_ALL" >&2; exit 2; }
done
[[ -n $seed ]] || seed=$(( $(date +%s) % 100000 ))
for t in tc nft ip nsenter; do command -v $t >/dev/null || { echo "chaos.sh: $t is missing (apt-get install iproute2 nftables util-linux)" >&2; exit 2; }; done

HB=2s           # the job's --heartbeat-timeout: a silent node is lost after this
DEADLINE=240    # seconds a run may take before it counts as a hang
WORKROOT=$(mktemp -d /tmp/shoal-chaos.XXXXXX)
LOCKFD=""
EPILOG=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/epilog.d/shoal-chaos
release() { rm -f "$EPILOG"; "$CLUSTER" down >/dev/null 2>&1; flock -u "$LOCKFD"; LOCKFD=""; }
cleanup_all() {
  restore_net
  [[ -n $LOCKFD ]] && release
  rm -rf "$WORKROOT" "$SHOAL_RENDEZVOUS_DIR"
}
trap cleanup_all EXIT
trap 'exit 130' INT TERM

# sch_netem is what `tc netem` needs; this kernel may lack it (CONFIG_NET_SCH_NETEM)
NETEM=1
if ! ip netns add shoal-chaos-probe 2>/dev/null; then NETEM=0; else
  ip netns exec shoal-chaos-probe ip link set lo up
  ip netns exec shoal-chaos-probe tc qdisc add dev lo root netem delay 1ms 2>/dev/null || NETEM=0
  ip netns del shoal-chaos-probe
fi
# without it, the delay fault holds each packet of an iptables NFQUEUE rule in test/netdelay (the
# xt NFQUEUE target and nfnetlink_queue are built into this kernel; sch_fq, for an EDT delay, is not)
NETDELAY=""
if ! ((NETEM)); then
  if command -v iptables-legacy >/dev/null && go build -o "$WORKROOT/netdelay" ./test/netdelay; then
    NETDELAY=$WORKROOT/netdelay
    echo "note: this kernel has no sch_netem (tc netem: 'Specified qdisc kind is unknown'): the delay fault holds packets in test/netdelay (iptables NFQUEUE); loss uses nftables' random drop and throttle uses tbf"
  else
    echo "note: this kernel has no sch_netem, and iptables-legacy (scripts/deps.sh installs it) or go is missing: the delay fault is skipped"
  fi
fi

wait_for() { local end=$((SECONDS + $1)); shift; until "$@"; do ((SECONDS < end)) || return 1; sleep 0.2; done; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
sleep_until() { local d=$(($1 - $(now_ms))); ((d > 0)) && sleep "$((d / 1000)).$(printf %03d $((d % 1000)))"; return 0; }
job_gone() { [[ -z $(squeue -h -j "$1" 2>/dev/null) ]]; }
logged() { grep -q -- "$2" "$1" 2>/dev/null; }
node_exec() { "$CLUSTER" exec "$@"; }
veth_of() { echo "shoal-v${1#node}"; }   # the host side of node K's link

STOPPED=""; CUT=""; NFT=""; TBF=""; MOUNTED=""; NFQ=""; NFQPID=""
# the delay fault through NFQUEUE: the rule in NODE's namespace, and the delayer holding its packets
nfq_rule() { node_exec "$2" iptables-legacy "$1" OUTPUT -o eth0 -j NFQUEUE --queue-num 7 --queue-bypass; }
nfq_end() {
  nfq_rule -D "$NFQ" 2>/dev/null
  [[ -n $NFQPID ]] && { kill -TERM "$NFQPID" 2>/dev/null; wait "$NFQPID" 2>/dev/null; }
  NFQ=""; NFQPID=""
}
restore_net() {
  [[ -n $NFQ ]] && nfq_end
  [[ -n $STOPPED ]] && kill -CONT $STOPPED 2>/dev/null
  [[ -n $CUT ]] && ip link set "$(veth_of "$CUT")" up 2>/dev/null
  [[ -n $NFT ]] && node_exec "$NFT" nft delete table inet shoalchaos 2>/dev/null
  [[ -n $TBF ]] && node_exec "$TBF" tc qdisc del dev eth0 root 2>/dev/null
  local n
  for n in $MOUNTED; do node_exec "$n" umount -l "$n_spill" 2>/dev/null; done
  STOPPED=""; CUT=""; NFT=""; TBF=""; MOUNTED=""; NFQ=""; NFQPID=""
}

# alive_pids KIND DIR: pids of processes the driver marked (task or actor) that still run
alive_pids() {
  local f pid
  for f in "$2"/pids/"$1".*; do
    [[ -e $f ]] || continue
    pid=${f##*.}
    [[ -d /proc/$pid ]] && grep -qxz "SHOAL_CLUSTER_ID=$CID" "/proc/$pid/environ" 2>/dev/null && echo "$pid"
  done
}

# pick WORDS...: PICKED is one of them, drawn with the run's seeded RANDOM (no $(...): bash
# reseeds RANDOM in every subshell, and a replayed run must draw the same victims)
pick() { PICKED=""; local a=("$@"); (($#)) && PICKED=${a[RANDOM % $#]}; return 0; }

# inject FAULT JOB DIR: one fault, logged to DIR/faults (times since the driver started)
inject() {
  local f=$1 jid=$2 W=$3 node pids d p
  local t; t=$(printf %.1f "$(( $(now_ms) - T0MS ))e-3")
  case $f in
    kill-worker|kill-actor)
      local kind=task; [[ $f == kill-actor ]] && kind=actor
      p=""
      local r=$RANDOM
      # the drawn victim among those alive; one that exited meanwhile is replaced by the next
      for _ in $(seq 50); do
        mapfile -t cand < <(alive_pids $kind "$W")
        ((${#cand[@]})) && { p=${cand[r % ${#cand[@]}]}; kill -KILL "$p" 2>/dev/null && break; p=""; }
        sleep 0.2
      done
      if [[ -n $p ]]; then echo "$t $f pid $p"; else echo "$t $f no $kind process alive"; fi ;;
    kill-agent)
      pick node2 node3; node=$PICKED; pids=$(shoal_pids "$jid" "$node")
      [[ -n $pids ]] && kill -KILL $pids; echo "$t $f $node pids ${pids//$'\n'/ }" ;;
    stop-agent|stop-agent-nocont)
      pick node2 node3; node=$PICKED; pids=$(shoal_pids "$jid" "$node"); pids=${pids//$'\n'/ }
      STOPPED=$pids; kill -STOP $pids 2>/dev/null
      if [[ $f == stop-agent ]]; then
        d=$((1 + RANDOM % 6)); echo "$t $f $node pids $pids for ${d}s"; sleep "$d"
        kill -CONT $pids 2>/dev/null; STOPPED=""
      else echo "$t $f $node pids $pids (no SIGCONT until the driver is done)"; fi ;;
    link-cut)
      pick node1 node2 node3; node=$PICKED; d=$((1 + RANDOM % 6)); CUT=$node
      ip link set "$(veth_of "$node")" down; echo "$t $f $node for ${d}s"; sleep "$d"
      ip link set "$(veth_of "$node")" up; CUT="" ;;
    loss)
      pick node1 node2 node3; node=$PICKED; d=$((2 + RANDOM % 8)); p=$((5 + RANDOM % 26)); NFT=$node
      node_exec "$node" nft -f - <<NFT
table inet shoalchaos {
  chain out { type filter hook output priority 0; numgen random mod 100 < $p drop; }
  chain in { type filter hook input priority 0; numgen random mod 100 < $p drop; }
}
NFT
      echo "$t $f $node ${p}% both ways for ${d}s"; sleep "$d"
      node_exec "$node" nft delete table inet shoalchaos; NFT="" ;;
    delay)
      pick node1 node2 node3; node=$PICKED; d=$((2 + RANDOM % 8)); p=$((20 + RANDOM % 200))
      if ((NETEM)); then
        TBF=$node; node_exec "$node" tc qdisc add dev eth0 root netem delay "${p}ms" $((p / 4))ms
        echo "$t $f $node ${p}ms for ${d}s"; sleep "$d"; node_exec "$node" tc qdisc del dev eth0 root; TBF=""
      elif [[ -n $NETDELAY ]]; then
        NFQ=$node; node_exec "$node" "$NETDELAY" --queue 7 --delay "${p}ms" 2>>"$W/netdelay.err" & NFQPID=$!
        sleep 0.2  # bound to its queue before the rule sends it packets (--queue-bypass: none are lost meanwhile)
        if nfq_rule -A "$node"; then echo "$t $f $node ${p}ms out (NFQUEUE) for ${d}s"; sleep "$d"
        else echo "$t $f $node skipped: the NFQUEUE rule was refused"; fi
        nfq_end
      else echo "$t $f skipped: no sch_netem in this kernel, and no NFQUEUE delayer"; fi ;;
    throttle)
      pick node1 node2 node3; node=$PICKED; d=$((2 + RANDOM % 8)); p=$((1 + RANDOM % 20)); TBF=$node
      node_exec "$node" tc qdisc add dev eth0 root tbf rate "${p}mbit" burst 32kbit latency 500ms
      echo "$t $f $node ${p} Mbit/s out for ${d}s"; sleep "$d"; node_exec "$node" tc qdisc del dev eth0 root; TBF="" ;;
    scancel) scancel "$jid"; SCANCEL_AT=$SECONDS; echo "$t $f job $jid" ;;
    second-job)
      SECOND_DIR=$W/second; mkdir -p "$SECOND_DIR"
      submit "$SECOND_DIR" "CHAOS_ROUNDS=1" "" >"$SECOND_DIR/jid" && echo "$t $f job $(cat "$SECOND_DIR/jid")" ;;
    store-full|spill-full|memhog|timelimit) echo "$t $f (set up at submission)" ;;
  esac
}

# submit DIR ENV SBATCH_OPTS [LAUNCH_OPTS]: sbatch the chaos driver in DIR; prints the job id
submit() {
  local W=$1 env=$2 sopts=$3 lopts=${4:-}
  cat >"$W/job.sbatch" <<SB
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 -c 1 --output=$W/out $sopts
export CHAOS_DIR=$W CHAOS_SEED=$SEED CHAOS_COLLECTIVE=${CHAOS_COLLECTIVE:-1} CHAOS_GANG=${CHAOS_GANG:-1} CHAOS_NESTED=${CHAOS_NESTED:-1} $env
srun bash -c 'exec shoal launch --num-cpus 2 --quiet --tmpdir $WORKROOT/tmp --heartbeat-timeout $HB $lopts -- python3 $ROOT/test/slurm/chaos_driver.py 2>>$W/log.\$SLURMD_NODENAME'
SB
  (cd "$W" && sbatch --parsable "$W/job.sbatch")
}

# leftovers CID DIR: what the run left on any node (processes, shm, session and rendezvous files,
# sockets, cgroups)
leftovers() {
  local cid=$1 W=$2 n l=""
  [[ -z $cid ]] && { echo "no cluster id"; return; }
  wait_for 30 eval '[[ $(live_procs "$cid") == 0 ]]'
  n=$(live_procs "$cid"); ((n)) && l+="processes=$n "
  local shm; shm=$(ls -d /dev/shm/*"$cid"* 2>/dev/null); [[ -n $shm ]] && l+="shm=$shm "
  local files; files=$(find "$WORKROOT/tmp" -mindepth 2 -maxdepth 2 -name "$cid*" 2>/dev/null | head -5); [[ -n $files ]] && l+="files=${files//$'\n'/ } "
  for n in node1 node2 node3; do
    grep -q -e "$cid" <(node_exec $n cat /proc/net/unix 2>/dev/null) && l+="unix-socket-on-$n "
  done
  local rdv; rdv=$(find "$SHOAL_RENDEZVOUS_DIR" -mindepth 1 2>/dev/null | head -3); [[ -n $rdv ]] && l+="rendezvous=${rdv//$'\n'/ } "
  local cg p
  for p in $AGENT_PIDS; do
    cg=$(find /sys/fs/cgroup -maxdepth 6 -type d -name "shoal-$p" 2>/dev/null | head -1)
    [[ -n $cg ]] && l+="cgroup=$cg "
  done
  echo "$l"
}

# run_one SEED FAULTS: one run; echoes its summary line and appends its JSON to $out
run_one() {
  SEED=$1; local flist=$2 W=$WORKROOT/run-$1 env="" sopts="" lopts="" f
  rm -rf "$W"; mkdir -p "$WORKROOT/tmp" "$W/pids"; : >"$W/faults"
  RANDOM=$SEED
  IFS=+ read -ra FL <<<"$flist"
  for f in "${FL[@]}"; do
    case $f in
      store-full) env+=" CHAOS_STORE_FULL=1"; lopts+=" --object-store-memory 64m" ;;
      spill-full)
        env+=" CHAOS_STORE_FULL=1 CHAOS_SPILL_FULL=1"; lopts+=" --object-store-memory 64m --spill-dir $W/spill"
        mkdir -p "$W/spill"; n_spill=$W/spill
        for n in node1 node2 node3; do node_exec $n mount -t tmpfs -o size=48m shoal-chaos "$W/spill" && MOUNTED+=" $n"; done ;;
      memhog) env+=" CHAOS_MEMHOG=1" ;;
      timelimit) env+=" CHAOS_FOREVER=1"; sopts+=" --time=1" ;;
      scancel) env+=" CHAOS_FOREVER=1" ;;
    esac
  done
  local jid t_start
  jid=$(submit "$W" "$env" "$sopts" "$lopts") || { echo "run seed=$SEED faults=$flist outcome=error detail=sbatch-failed"; return 1; }
  t_start=$SECONDS
  CID=""; AGENT_PIDS=""; SECOND_DIR=""; SCANCEL_AT=$SECONDS
  if ! wait_for 120 logged "$W/out" '^STARTED'; then
    :  # counted below: no start is a failure unless the job died with a documented error
  fi
  CID=$(sed -n 's/^CLUSTER //p' "$W/out" 2>/dev/null | head -1)
  for n in node1 node2 node3; do AGENT_PIDS+=" $(shoal_pids "$jid" $n | tr '\n' ' ')"; done
  T0=$SECONDS; T0MS=$(now_ms)
  local times=() k
  for f in "${FL[@]}"; do times+=("$((RANDOM % 80))"); done  # tenths of a second
  # faults in time order, each at its drawn second after the driver started
  for k in $(for i in "${!FL[@]}"; do echo "${times[i]} $i"; done | sort -n | awk '{print $2}'); do
    sleep_until $((T0MS + times[k] * 100))
    job_gone "$jid" && break
    inject "${FL[k]}" "$jid" "$W" >>"$W/faults" 2>&1
  done
  local deadline=$DEADLINE outcome="" detail=""
  if [[ -n $STOPPED ]]; then
    # a member stopped for good: once the driver is done, the head ends that node's task of
    # the step (launcher/endlost.go), so the job ends within the heartbeat timeout + 20 s of the
    # driver's end (documented); past that the run is slow, and the stopped agent is killed
    wait_for $((deadline - (SECONDS - t_start))) eval 'job_gone "$jid" || logged "$W/out" "^DONE \|^ERROR "'
    local t_done=$SECONDS
    if ! wait_for $((${HB%s} + 20)) job_gone "$jid"; then
      outcome=slow; detail="the job still ran $((SECONDS - t_done)) s after its driver ended, with a member stopped for good (documented: $((${HB%s} + 20)) s)"
      echo "$((SECONDS - T0)) SIGKILL to the stopped agent $STOPPED (the job outlived its bound)" >>"$W/faults"
      kill -KILL $STOPPED 2>/dev/null
    fi
    kill -CONT $STOPPED 2>/dev/null; STOPPED=""
  fi
  [[ -z $outcome ]] && { wait_for $((deadline - (SECONDS - t_start))) job_gone "$jid" || { outcome=hang; detail="job $jid still running after ${deadline}s"; }; }
  [[ $outcome == hang ]] && { scancel "$jid"; wait_for 60 job_gone "$jid"; }
  wait_for 90 job_gone "$jid"
  local secs=$((SECONDS - t_start)); T_GONE=$SECONDS
  restore_net
  if [[ -n $SECOND_DIR ]] && [[ -s $SECOND_DIR/jid ]]; then
    wait_for 150 job_gone "$(cat "$SECOND_DIR/jid")" || { scancel "$(cat "$SECOND_DIR/jid")"; wait_for 60 job_gone "$(cat "$SECOND_DIR/jid")"; }
  fi
  local res; res=$(cat "$W/out" 2>/dev/null)
  if [[ -z $outcome ]]; then
    if has "$res" "WRONG"; then outcome=wrong; detail=$(grep -m3 WRONG <<<"$res" | tr '\n' ';')
    elif has "$res" "^DONE ok"; then outcome=ok
    elif [[ " ${FL[*]} " == *" scancel "* ]] && ! has "$res" "^ERROR "; then
      # documented: gone within Slurm's KillWait (5 s here) and shoal's teardown: 35 s at most
      outcome=expected; detail="cancelled; the job was gone $((T_GONE - SCANCEL_AT)) s after scancel"
      ((T_GONE - SCANCEL_AT > 35)) && { outcome=slow; detail+=" (documented: 35 s)"; }
    elif [[ " ${FL[*]} " == *" timelimit "* ]] && ! has "$res" "^ERROR "; then
      # documented: the 1-minute limit, Slurm's enforcement period (30 s) and KillWait: 120 s
      outcome=expected; detail="ended by its 1-minute time limit after ${secs}s"
      ((secs > 120)) && { outcome=slow; detail+=" (documented: 120 s)"; }
    else outcome=error; detail=$(grep -m1 '^ERROR ' <<<"$res"; tail -n 3 <<<"$res" | tr '\n' ';')
    fi
  fi
  if [[ $outcome == ok ]]; then
    has "$res" "^EXPECTED " && detail=$(grep -m2 '^EXPECTED ' <<<"$res" | cut -c1-160 | tr '\n' ';')
    has "$res" "^GANG " && detail+="$(grep -m1 '^GANG ' <<<"$res" | cut -c1-120);$(grep -m2 -o '^shoal.train: .* failed ([A-Za-z]*)' <<<"$res" | cut -c14-90 | tr '\n' ';')"
    [[ ${CHAOS_GANG:-1} == 1 ]] && ! has "$res" "^CHECK gang ok" && { outcome=error; detail="no checked result of the training gang: ${detail}"; }
    [[ ${CHAOS_NESTED:-1} == 1 ]] && ! has "$res" "^CHECK nested.0 ok" && { outcome=error; detail="no checked result of the nested tasks: ${detail}"; }
    for f in "${FL[@]}"; do
      case $f in
        store-full|spill-full) has "$res" "^CHECK store_full ok\|^EXPECTED ObjectStoreFullError" || { outcome=error; detail="the store never filled: ${detail}"; } ;;
        memhog) has "$res" "^EXPECTED OutOfMemoryError" || { outcome=error; detail="no OutOfMemoryError: ${detail}"; } ;;
      esac
    done
  fi
  if [[ -n $SECOND_DIR ]]; then
    if ! grep -q '^DONE ok' "$SECOND_DIR/out" 2>/dev/null; then
      outcome=disturbed; detail+=" second job: $(grep -m1 -e '^ERROR' -e WRONG "$SECOND_DIR/out" 2>/dev/null || tail -n 2 "$SECOND_DIR/out" 2>/dev/null | tr '\n' ';')"
    fi
  fi
  local left; left=$(leftovers "$CID" "$W")
  if [[ -n $SECOND_DIR ]]; then
    local cid2; cid2=$(sed -n 's/^CLUSTER //p' "$SECOND_DIR/out" 2>/dev/null | head -1)
    [[ -n $cid2 ]] && left+=$(leftovers "$cid2" "$SECOND_DIR")
  fi
  if [[ -n $left && ( $outcome == ok || $outcome == expected ) ]]; then outcome=leftover; fi
  local fl; fl=$(tr '\n' ';' <"$W/faults" 2>/dev/null)
  echo "run seed=$SEED faults=$flist outcome=$outcome secs=$secs leftovers=${left:-none} injected=[$fl] ${detail:+detail=[$detail]}"
  if [[ -n $out ]]; then
    python3 - "$SEED" "$flist" "$outcome" "$secs" "$left" "$fl" "$detail" >>"$out" <<'PY'
import json, sys
s, f, o, secs, left, inj, det = sys.argv[1:]
print(json.dumps({"seed": int(s), "faults": f.split("+"), "outcome": o, "secs": int(secs), "leftovers": left.strip(), "injected": inj, "detail": det.strip()}))
PY
  fi
  if [[ $outcome != ok && $outcome != expected ]]; then
    mkdir -p /tmp/shoal-chaos-failed && cp -r "$W" "/tmp/shoal-chaos-failed/run-$SEED-$$" 2>/dev/null
    echo "     kept: /tmp/shoal-chaos-failed/run-$SEED-$$ (out, log.node*, faults)"
  fi
  [[ $outcome == ok || $outcome == expected ]]
}

# the plan: seed and faults of every run
plan=()
if [[ -n $seeds ]]; then
  IFS=, read -ra plan <<<"$seeds"
else
  for ((i = 0; i < runs; i++)); do
    s=$((seed + i)); RANDOM=$s
    n=1; ((${#POOL[@]} > 1 && RANDOM % 3 == 0)) && n=2
    pick "${POOL[@]}"; a=$PICKED; fl=$a
    if ((n == 2)); then pick "${POOL[@]}"; [[ $PICKED != "$a" ]] && fl+=+$PICKED; fi
    plan+=("$s:$fl")
  done
fi
echo "chaos: ${#plan[@]} runs: ${plan[*]}"
i=0
for p in "${plan[@]}"; do
  if ((i % batch == 0)); then
    if [[ -n $LOCKFD ]]; then release; sleep 1; fi
    exec {fd}>/tmp/shoal-slurm.lock
    t_lock=$SECONDS
    flock -n "$fd" || { echo "chaos: waiting for /tmp/shoal-slurm.lock (another Slurm test runs)"; flock "$fd"; }
    LOCKFD=$fd  # only now: the exit trap takes the cluster down only while this script holds the lock
    ((SECONDS - t_lock > 1)) && echo "chaos: got the lock after $((SECONDS - t_lock)) s"
    "$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }
    # as on a production cluster, shoal's admin epilog runs after every job on every node: it
    # removes what an agent killed with SIGKILL could not (its store, its session directory)
    printf '#!/bin/sh\nexec %s admin epilog --tmpdir %s >>%s 2>&1\n' "$ROOT/bin/shoal" "$WORKROOT/tmp" "$WORKROOT/epilog.log" >"$EPILOG"
    chmod +x "$EPILOG"
  fi
  i=$((i + 1))
  if run_one "${p%%:*}" "${p#*:}"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
finish
