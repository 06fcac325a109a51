#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# Load on the 3-node Slurm test cluster (not in `make test`; `make chaos-load`): 3-node jobs
# whose driver (test/slurm/load_driver.py) queues 1M tiny tasks, makes 10k actor creations (served
# or refused at the process cap), creates and removes 1k placement groups, and runs 100
# concurrent client threads, each part checked; meanwhile this script samples the head's and
# the agents' peak RSS (VmHWM) and CPU time, and prints them per node at the end.
#
#   scripts/chaos-load.sh [--parts LIST] [--timeout SECONDS]
#
#   --parts LIST     comma-separated part:count (default clients:100,groups:1000,actors:10000,tasks:1000000)
#   --timeout SEC    each part's deadline (default 900; a part still running then is a hang)
# Each part is its own job and its own hold of /tmp/shoal-slurm.lock (the cluster is shared);
# --timeout bounds each. Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. "$PWD/test/slurm/lib.sh"
parts=clients:100,groups:1000,actors:10000,tasks:1000000; deadline=900
while (($#)); do
  case $1 in
    --parts) parts=$2; shift 2 ;;
    --timeout) deadline=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos-load.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $parts =~ ^[a-z]+:[0-9]+(,[a-z]+:[0-9]+)*$ ]] || { echo "chaos-load.sh: --parts $parts: want part:count,... (tasks, actors, groups, clients)" >&2; exit 2; }
[[ $deadline =~ ^[0-9]+$ ]] || { echo "chaos-load.sh: --timeout $deadline: want seconds" >&2; exit 2; }
W=$(mktemp -d /tmp/shoal-chaos-load.XXXXXX)
LOCKFD=""; jid=""
trap '[[ -n $jid ]] && scancel "$jid" 2>/dev/null; [[ -n $LOCKFD ]] && "$CLUSTER" down >/dev/null 2>&1; rm -rf "$W" "$SHOAL_RENDEZVOUS_DIR"' EXIT
tick=$(getconf CLK_TCK)

# part NAME:COUNT: one 3-node job running one part, under the lock (each part is its own hold:
# the cluster is shared); prints the part's result and each node's peak RSS and CPU time
part() {
  local name=${1%%:*} P=$W/${1%%:*}
  mkdir -p "$P/tmp"
  local fd
  exec {fd}>/tmp/shoal-slurm.lock
  flock -n "$fd" || { echo "chaos-load: waiting for /tmp/shoal-slurm.lock"; flock "$fd"; }
  LOCKFD=$fd  # only now: the exit trap takes the cluster down only while this script holds the lock
  "$CLUSTER" up >/dev/null || { bad "slurm cluster up"; return; }
  cat >"$P/job.sbatch" <<SB
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 -c 2 --output=$P/out
export LOAD_PARTS=$1 LOAD_TIMEOUT=$deadline
srun bash -c 'exec shoal launch --num-cpus 2 --quiet --tmpdir $P/tmp -- python3 $ROOT/test/slurm/load_driver.py 2>>$P/log.\$SLURMD_NODENAME'
SB
  jid=$(cd "$P" && sbatch --parsable "$P/job.sbatch") || { bad "$name: sbatch"; return; }
  local -A HWM=() CPU=() PIDS=()
  local t0=$SECONDS n p h c
  while [[ -n $(squeue -h -j "$jid" 2>/dev/null) ]]; do
    ((SECONDS - t0 > deadline)) && { bad "load $name: the job passed its ${deadline}s deadline (a hang)" "$(tail -n 5 "$P/out")"; scancel "$jid"; break; }
    for n in node1 node2 node3; do
      [[ -n ${PIDS[$n]:-} && -d /proc/${PIDS[$n]} ]] || PIDS[$n]=$(shoal_pids "$jid" $n | head -1)
      p=${PIDS[$n]}; [[ -n $p ]] || continue
      h=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null)
      [[ -n $h ]] && ((h > ${HWM[$n]:-0})) && HWM[$n]=$h
      c=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null)
      [[ -n $c ]] && CPU[$n]=$c
    done
    sleep 1
  done
  jid=""
  local secs=$((SECONDS - t0)) out
  out=$(cat "$P/out" 2>/dev/null)
  grep -E '^(QUEUED|LOAD|ACTOR)' <<<"$out"
  if grep -q "^LOAD $name ok" <<<"$out"; then ok "load: $(grep -m1 "^LOAD $name ok" <<<"$out" | cut -d' ' -f4-)"
  else bad "load: $name" "$(grep -m1 "^LOAD $name" <<<"$out")" "$(grep -m3 -e Error -e Traceback <<<"$out")" "$(tail -n 3 "$P"/log.node1)"; fi
  echo "load $name: job ${secs}s; peak RSS (VmHWM) and CPU time of each node's shoal process (node1: head and agent):"
  for n in node1 node2 node3; do
    printf '  %s  peak RSS %s MiB  CPU %s s\n' "$n" "$(( ${HWM[$n]:-0} / 1024 ))" "$(awk -v c="${CPU[$n]:-0}" -v t="$tick" 'BEGIN {printf "%.1f", c / t}')"
  done
  local cid left
  cid=$(sed -n 's/^CLUSTER //p' <<<"$out" | head -1)
  for _ in $(seq 60); do [[ $(live_procs "$cid") == 0 ]] && break; sleep 0.5; done
  left="$(live_procs "$cid") $(ls -d /dev/shm/*"$cid"* "$P"/tmp/shoal-*/"$cid"* 2>/dev/null)"
  if [[ -n $cid && $left == "0 " ]]; then ok "load $name: nothing of cluster $cid left on any node"; else bad "load $name: left behind" "$left"; fi
  "$CLUSTER" down >/dev/null 2>&1; flock -u "$LOCKFD"; LOCKFD=""
}

for p in ${parts//,/ }; do part "$p"; done
finish
