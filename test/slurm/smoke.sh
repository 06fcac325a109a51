#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317  # job scripts are quoted for the job; helpers run via wait_for
# Smoke test of the test Slurm cluster (scripts/slurm-cluster.sh), checked as a user would:
# srun across nodes, a batch job with a nested step, the hostlist, scancel, fake GPUs,
# oversubscription, and that `down` leaves nothing behind. Brings the cluster up (or uses the
# one that is up), takes it down at the end, and brings it back up if it was up before.
# Last line: "N passed, N failed"; exit status 1 when anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
CLUSTER=$PWD/scripts/slurm-cluster.sh
DIR=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}
export SLURM_CONF=$DIR/slurm.conf
KILLWAIT=5  # KillWait in the cluster's slurm.conf

pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; (($#)) && printf '     %s\n' "$@"; return 0; }
# expect NAME WANT GOT: pass when GOT equals WANT.
expect() { if [[ $3 == "$2" ]]; then ok "$1"; else bad "$1" "want: $(echo "$2" | paste -sd' ')" "got:  $(echo "$3" | paste -sd' ')"; fi; }
finish() { echo "$pass passed, $fail failed"; ((fail == 0)); exit; }

if [[ $(id -u) != 0 ]]; then
  echo "skip: the test cluster needs root (network namespaces, /etc/hosts, daemons)"
  finish
fi

# Pids of processes that run, zombies excluded (this VM's PID 1 reaps them only every ~2 s).
live() {
  local p st
  for p in $(pgrep "$@"); do
    st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    st=${st##*) }
    [[ ${st%% *} == Z ]] || echo "$p"
  done
}
# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds; fails after SECONDS.
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < end)) || return 1; sleep 0.1; done
}
job_state() { squeue -h -j "$1" -o %T 2>/dev/null; }

T0=$SECONDS
was_up=
"$CLUSTER" status >/dev/null 2>&1 && was_up=1
WORK=$(mktemp -d /tmp/shoal-slurm-smoke.XXXXXX)
trap 'rm -rf "$WORK"; [[ -n $was_up && ! -f $SLURM_CONF ]] && "$CLUSTER" up >/dev/null' EXIT

# 1. up
t=$SECONDS
if "$CLUSTER" up; then ok "up: 3 nodes idle ($((SECONDS - t))s)"; else bad "up"; finish; fi
expect "up again is a no-op that leaves the nodes idle" "node[1-3] idle" \
  "$("$CLUSTER" up >/dev/null && sinfo -h -o '%N %t')"
expect "env prints SLURM_CONF" "export SLURM_CONF=$SLURM_CONF" "$("$CLUSTER" env)"

# 2. srun across the nodes; each node is its own network namespace with its own address
expect "srun -N3 --ntasks-per-node=1: SLURMD_NODENAME on each node" $'node1\nnode2\nnode3' \
  "$(timeout 30 srun -N3 --ntasks-per-node=1 printenv SLURMD_NODENAME | sort)"
expect "each node has its own address" $'node1 198.18.0.11\nnode2 198.18.0.12\nnode3 198.18.0.13' \
  "$(timeout 30 srun -N3 --ntasks-per-node=1 bash -c \
    'echo $SLURMD_NODENAME $(ip -4 -o addr show dev eth0 | awk "{print \$4}" | cut -d/ -f1)' | sort)"
expect "node names resolve through /etc/hosts" "198.18.0.12" "$(getent hosts node2 | awk '{print $1}')"
expect "hostname is the same on every node (one UTS namespace)" "1" \
  "$(timeout 30 srun -N3 --ntasks-per-node=1 hostname | sort -u | wc -l)"
expect "a job sees the host's cgroup mounts and its own network in /sys" "cgroup:yes net:eth0 lo" \
  "$(timeout 30 srun -N1 -w node3 bash -c \
    'echo "cgroup:$(mountpoint -q /sys/fs/cgroup/memory && echo yes) net:$(ls /sys/class/net | paste -sd" ")"')"
expect "exec runs a command on a node" "198.18.0.12/24" \
  "$("$CLUSTER" exec node2 ip -4 -o addr show dev eth0 | awk '{print $4}')"

# 3. a batch job on 3 nodes with a step on each node; every node writes its id and name
cat >"$WORK/batch.sh" <<EOF
#!/bin/bash
echo "\$SLURM_JOB_NODELIST" >"$WORK/nodelist"
srun -N3 -n3 --ntasks-per-node=1 bash -c 'echo "\$SLURM_NODEID \$SLURMD_NODENAME" >"$WORK/node.\$SLURMD_NODENAME"'
EOF
t=$SECONDS
if timeout 60 sbatch -N3 --wait -o "$WORK/batch.out" "$WORK/batch.sh" >/dev/null; then
  ok "sbatch -N3 --wait: exit 0 ($((SECONDS - t))s)"
else
  bad "sbatch -N3 --wait: exit 0" "$(cat "$WORK/batch.out" 2>/dev/null)"
fi
expect "sbatch: the nested srun ran once on each node with SLURM_NODEID 0..2" \
  $'0 node1\n1 node2\n2 node3' "$(cat "$WORK"/node.* 2>/dev/null)"
expect "SLURM_JOB_NODELIST is node[1-3]" "node[1-3]" "$(cat "$WORK/nodelist" 2>/dev/null)"

# 4. scancel kills the batch shell's processes and two steps' tasks within KillWait; a task that
# ignores SIGTERM gets SIGKILL after KillWait. (With proctrack/linuxproc, a process of the batch
# step that outlives its parent shell escapes tracking; with SHOAL_SLURM_PROCTRACK=cgroup it does
# not, and the test checks that too.)
m1=$((900000 + RANDOM)); m2=$((m1 + 1)); m3=$((m1 + 2)); m4=$((m1 + 3))  # unique sleep lengths
want=3; pat="$m1|$m2|$m3"; orphan=
if [[ ${SHOAL_SLURM_PROCTRACK:-linuxproc} == cgroup ]]; then
  want=4; pat="$pat|$m4"; orphan="(trap '' TERM; exec sleep $m4) & "
fi
marked() { live -f "(^|/)sleep ($pat)\$"; }  # slurmstepd runs /usr/bin/sleep
all_running() { [[ $(marked | wc -l) == "$want" ]]; }
none_left() { [[ -z $(marked) ]]; }
# Parallel steps need --exact (or --overlap): by default a step takes all of the job's CPUs
# on its nodes and the next step waits.
jid=$(sbatch --parsable -N1 -n2 -o /dev/null --wrap "srun -N1 -n1 --exact sleep $m2 & \
  srun -N1 -n1 --exact bash -c \"trap '' TERM; exec sleep $m3\" & ${orphan}sleep $m1; wait")
if wait_for 20 all_running; then
  t=$EPOCHREALTIME
  scancel "$jid"
  if wait_for $((KILLWAIT + 3)) none_left; then
    ok "scancel: all $want marked processes gone in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')s (KillWait=$KILLWAIT)"
  else
    bad "scancel: processes gone within KillWait" "left: $(marked | xargs -r ps -o pid=,args= -p | paste -sd';')"
  fi
else
  bad "scancel: job $jid did not start its $want sleeps" "state: $(job_state "$jid")" "running: $(marked | paste -sd' ')"
  scancel "$jid" 2>/dev/null
fi
# kill what a failed check left, so that it cannot disturb what follows
mapfile -t pids < <(marked); ((${#pids[@]})) && kill -9 "${pids[@]}" 2>/dev/null

# 5. fake GPUs: a job asks for two of a node's four
timeout 60 sbatch -N1 --gres=gpu:2 --wait -o "$WORK/gpu.out" \
  --wrap 'echo batch $SLURM_JOB_GPUS $CUDA_VISIBLE_DEVICES; srun -N1 -n1 bash -c "echo step \$SLURM_STEP_GPUS \$CUDA_VISIBLE_DEVICES"' >/dev/null
expect "--gres=gpu:2: SLURM_JOB_GPUS, SLURM_STEP_GPUS and CUDA_VISIBLE_DEVICES" \
  $'batch 0,1 0,1\nstep 0,1 0,1' "$(cat "$WORK/gpu.out" 2>/dev/null)"

# 6. two jobs share a node's CPUs with --oversubscribe; a third without it waits
share=(-N1 -n2 -w node1 -o /dev/null --parsable)
a=$(sbatch "${share[@]}" --oversubscribe --wrap 'sleep 60')
b=$(sbatch "${share[@]}" --oversubscribe --wrap 'sleep 60')
both_run() { [[ $(job_state "$a") == RUNNING && $(job_state "$b") == RUNNING ]]; }
if wait_for 20 both_run; then ok "--oversubscribe: two jobs run on node1's 2 CPUs at once"
else bad "--oversubscribe: two jobs run on node1's 2 CPUs at once" "states: $(job_state "$a") $(job_state "$b")"; fi
c=$(sbatch "${share[@]}" --wrap 'sleep 60')
evaluated() { [[ $(squeue -h -j "$c" -o %r 2>/dev/null) != None ]]; }
wait_for 10 evaluated
expect "without --oversubscribe a third job waits for resources" "PENDING Resources" \
  "$(squeue -h -j "$c" -o '%T %r' 2>/dev/null)"
scancel "$a" "$b" "$c"

# 7. down leaves nothing behind
t=$SECONDS
"$CLUSTER" down
left=()
procs=$(for name in slurmctld slurmd slurmstepd; do live -x "$name"; done | xargs -r ps -o pid=,args= -p)
[[ -n $procs ]] && left+=("processes: $(echo "$procs" | paste -sd';')")
ip netns list | grep -q shoal-n && left+=("namespaces: $(ip netns list | paste -sd' ')")
[[ -d /sys/class/net/shoalbr0 ]] && left+=("bridge shoalbr0")
grep -q 'shoal-slurm-cluster' /etc/hosts && left+=("/etc/hosts: $(grep 'shoal-slurm-cluster' /etc/hosts | paste -sd' ')")
[[ -e $DIR ]] && left+=("state dir $DIR")
compgen -G '/sys/fs/cgroup/*/slurm_node*' >/dev/null && left+=("cgroups: $(compgen -G '/sys/fs/cgroup/*/slurm_node*' | paste -sd' ')")
[[ -n $(marked) ]] && left+=("job processes")
if ((${#left[@]} == 0)); then ok "down ($((SECONDS - t))s): no slurm process, namespace, bridge, hosts line, cgroup or state dir"
else bad "down leaves nothing behind" "${left[@]}"; fi
if "$CLUSTER" down >/dev/null; then ok "down again is a no-op"; else bad "down again is a no-op"; fi

echo "total $((SECONDS - T0))s"
finish
