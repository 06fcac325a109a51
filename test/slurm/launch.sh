#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# `shoal launch` on a real 3-node Slurm 22.05 cluster (scripts/slurm-cluster.sh), as a user runs
# it from sbatch: the cluster spans the nodes, tasks and actors run on all of them, the driver's
# exit code is every step's, workers do not inherit Slurm rank variables, the batch-script mode
# starts the other nodes itself, a missing node times out with its name, and scancel leaves
# nothing behind. Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-launch.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

# job NAME SCRIPT-BODY: run an sbatch script with --wait; sets $rc and $out
job() {
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/%s.out\n%s\n' "$WORK" "$1" "$2" > "$WORK/$1.sbatch"
  (cd "$ROOT/examples/slurm" && timeout 120 sbatch --wait "$WORK/$1.sbatch" >/dev/null 2>&1); rc=$?
  out=$(cat "$WORK/$1.out" 2>/dev/null)
}

# a time limit with --signal=USR1: the driver gets USR1 first (to checkpoint), then the limit ends
# the job cleanly; submitted first since Slurm enforces limits only every few tens of seconds
# (--oversubscribe: a job that does not share keeps the other jobs that do, such as the two
# below, off its nodes until it ends)
cat > "$WORK/limit.sbatch" <<SB
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 --time=1 --signal=USR1@50 --oversubscribe --output=$WORK/limit.out
srun shoal launch -- python3 -c "
import os, signal, time, shoal
shoal.init()
signal.signal(signal.SIGUSR1, lambda *a: print('driver got USR1: checkpointing', flush=True))
print('LIMIT', os.environ['SHOAL_CLUSTER_ID'], flush=True)
f = shoal.remote(lambda: time.sleep(600))
refs = [f.remote() for _ in range(3)]
while True:
    time.sleep(1)"
SB
limit_jid=$(cd "$ROOT/examples/slurm" && sbatch --parsable "$WORK/limit.sbatch")

job fanout 'srun shoal launch -- python3 fanout.py'
if [[ $rc == 0 ]] && has "$out" "3/3 nodes joined" && has "$out" "cluster: 3 nodes" \
   && has "$out" "tasks per node: {'node1': 1, 'node2': 1, 'node3': 1}" \
   && has "$out" "checksums agree: True on nodes \['node1', 'node2', 'node3'\]" && has "$out" "actor total: 45" \
   && has "$out" "node addresses: \['198.18.0.11', '198.18.0.12', '198.18.0.13'\]"; then
  ok "srun shoal launch: tasks, an actor and objects on all 3 nodes"
else bad "srun shoal launch" "rc=$rc" "$out"; fi

job spank 'srun --shoal python3 fanout.py'
if [[ $rc == 0 ]] && has "$out" "3/3 nodes joined" && has "$out" "tasks per node: {'node1': 1, 'node2': 1, 'node3': 1}"; then
  ok "srun --shoal (the SPANK plugin) runs the command under shoal launch on every node"
else bad "srun --shoal" "rc=$rc" "$out"; fi

job nosrun 'shoal launch -- python3 fanout.py'
if [[ $rc == 0 ]] && has "$out" "3/3 nodes joined" && has "$out" "tasks per node: {'node1': 1, 'node2': 1, 'node3': 1}"; then
  ok "shoal launch from the batch script starts the other nodes itself"
else bad "batch-script mode" "rc=$rc" "$out"; fi

job exit5 'srun shoal launch -- python3 -c "
import os, sys, shoal
shoal.init()
f = shoal.remote(lambda: [os.environ.get(v) for v in (\"SLURM_PROCID\", \"SLURM_LOCALID\", \"SLURM_STEP_ID\")])
print(\"rank vars in workers:\", shoal.get([f.remote() for _ in range(6)]))
sys.exit(5)"'
if [[ $rc == 5 ]] && has "$out" "node2: task 1: Exited with exit code 5" && has "$out" "node3: task 2: Exited with exit code 5"; then
  ok "the driver's exit code is the exit code of the step on every node"
else bad "exit code" "rc=$rc" "$out"; fi
if has "$out" "rank vars in workers: \[\[None, None, None\]" && ! grep -q "'[0-9]'" <<<"$(grep 'rank vars' <<<"$out")"; then
  ok "workers do not inherit SLURM_PROCID/SLURM_LOCALID/SLURM_STEP_ID"
else bad "rank variables scrubbed" "$out"; fi

job killed 'srun shoal launch -- python3 -c "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"'
if [[ $rc == 137 ]] && has "$out" "node3: task 2: Exited with exit code 137"; then
  ok "a driver killed by a signal: every step exits 128+9"
else bad "signal exit code" "rc=$rc" "$out"; fi

# two jobs of the same user share the nodes (OverSubscribe) without colliding
share='srun --oversubscribe shoal launch -- python3 -c "
import os, time, shoal
shoal.init()
f = shoal.remote(lambda: (time.sleep(1), os.environ[\"SHOAL_NODE_ID\"])[1])
print(\"SHARED\", sorted(set(shoal.get([f.remote() for _ in range(3)]))), os.environ[\"SHOAL_CLUSTER_ID\"])"'
for k in 1 2; do
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --oversubscribe --output=%s/share%s.out\n%s\n' "$WORK" "$k" "$share" > "$WORK/share$k.sbatch"
done
(cd "$ROOT/examples/slurm" && timeout 120 sbatch --wait "$WORK/share1.sbatch" >/dev/null 2>&1) & p1=$!
(cd "$ROOT/examples/slurm" && timeout 120 sbatch --wait "$WORK/share2.sbatch" >/dev/null 2>&1) & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
o1=$(grep SHARED "$WORK/share1.out" 2>/dev/null); o2=$(grep SHARED "$WORK/share2.out" 2>/dev/null)
if [[ $r1 == 0 && $r2 == 0 ]] && has "$o1" "\['node1', 'node2', 'node3'\]" && has "$o2" "\['node1', 'node2', 'node3'\]" \
   && [[ $(awk '{print $NF}' <<<"$o1") != $(awk '{print $NF}' <<<"$o2") ]]; then
  ok "two jobs share the nodes, each with its own cluster"
else bad "two jobs sharing nodes" "rc=$r1,$r2" "$o1" "$o2" "$(cat "$WORK"/share*.out 2>/dev/null | tail -5)"; fi

job gpus '#SBATCH --gres=gpu:2
srun shoal launch -- python3 -c "
import os, time, shoal
shoal.init()
print(\"GPUS\", shoal.cluster_resources().get(\"GPU\"))
f = shoal.remote(num_gpus=1)(lambda: (time.sleep(0.5), (os.environ[\"SHOAL_NODE_ID\"], os.environ[\"CUDA_VISIBLE_DEVICES\"], shoal.get_gpu_ids()))[1])
print(\"PLACED\", sorted(shoal.get([f.remote() for _ in range(3)])))"'
if [[ $rc == 0 ]] && has "$out" "^GPUS 6.0" && has "$out" "PLACED \[('node1', '0', \[0\]), ('node2', '0', \[0\]), ('node3', '0', \[0\])\]"; then
  ok "--gres=gpu:2: each node offers the job's GPUs (Slurm's indices), tasks get CUDA_VISIBLE_DEVICES"
else bad "GPUs from Slurm" "rc=$rc" "$out"; fi

# GPUs of member nodes as of the head node's: NVML topology (go-nvml's DGX H100 mock) narrowed to
# the job's GPUs, and every worker confined by its node's agent to its own GPUs and the ordinary
# devices (/dev/kmsg is not one), on all three nodes
job gpumock '#SBATCH --gres=gpu:2
export SHOAL_NVML_MOCK=dgxh100
srun shoal launch -- python3 -c "
import os, time, shoal
shoal.init()
print(\"GPUS\", shoal.cluster_resources().get(\"GPU\"))
def probe():
    time.sleep(0.5)
    try:
        open(\"/dev/kmsg\", \"rb\").close(); kmsg = \"ok\"
    except OSError as e:
        kmsg = e.strerror
    return os.environ[\"SHOAL_NODE_ID\"], os.environ[\"CUDA_VISIBLE_DEVICES\"], kmsg
f = shoal.remote(num_gpus=2)(probe)
print(\"PLACED\", sorted(shoal.get([f.remote() for _ in range(3)])))
import subprocess; print(subprocess.run([\"shoal\", \"status\"], capture_output=True, text=True).stdout)"'
if [[ $rc == 0 ]] && has "$out" "^GPUS 6.0" && [[ $(grep -cE "^ +GPU [01] +NVIDIA H100 80GB HBM3 +GPU-" <<<"$out") == 6 ]] \
   && has "$out" "PLACED \[('node1', '0,1', 'Operation not permitted'), ('node2', '0,1', 'Operation not permitted'), ('node3', '0,1', 'Operation not permitted')\]"; then
  ok "GPUs with NVML on every node: shoal status lists them per node; each node's agent confines its own workers to their GPUs"
elif [[ $rc == 0 ]] && has "$out" "GPU confinement unavailable"; then
  ok "GPUs with NVML on every node (confinement not permitted here: $(grep -m1 'GPU confinement unavailable' <<<"$out"))"
else bad "GPUs with NVML on member nodes" "rc=$rc" "$out"; fi

# heterogeneous jobs: one cluster over every component's nodes, from srun --het-group=0,1 and from
# the batch script (which sees only component 0 in SLURM_JOB_NODELIST and starts one srun per
# component)
hetpy='import os, time, shoal
shoal.init()
f = shoal.remote(lambda: (time.sleep(1), os.environ["SHOAL_NODE_ID"])[1])
print("HETNODES", sorted(set(shoal.get([f.remote() for _ in range(6)]))), len(shoal.nodes()))'
printf '%s\n' "$hetpy" > "$WORK/het.py"
for mode in step batch; do
  if [[ $mode == step ]]; then run="srun --het-group=0,1 shoal launch -- python3 $WORK/het.py"; else run="shoal launch -- python3 $WORK/het.py"; fi
  printf '#!/bin/bash\n#SBATCH -N1 --ntasks-per-node=1 --output=%s/het-%s.out\n#SBATCH hetjob\n#SBATCH -N2 --ntasks-per-node=1\n%s\n' "$WORK" "$mode" "$run" > "$WORK/het-$mode.sbatch"
  (cd "$ROOT/examples/slurm" && timeout 120 sbatch --wait "$WORK/het-$mode.sbatch" >/dev/null 2>&1); rc=$?
  out=$(cat "$WORK/het-$mode.out" 2>/dev/null)
  if [[ $rc == 0 ]] && has "$out" "HETNODES \['node1', 'node2', 'node3'\] 3"; then
    ok "heterogeneous job ($mode): one cluster over both components' nodes"
  else bad "heterogeneous job ($mode)" "rc=$rc" "$out"; fi
done

# allowed_interfaces: the agent binds (and announces) an address of an allowed interface; an
# interface that does not exist is an error that names it
printf '#!/bin/bash\n#SBATCH -N1 -w node1 --output=%s/ifaces.out\nsrun shoal launch --allowed-interfaces lo -- python3 -c "import shoal; shoal.init(); print(\\"ADDRS\\", [n[\\"NodeManagerAddress\\"] for n in shoal.nodes()])"\nsrun shoal launch -- python3 -c "import shoal; shoal.init(); print(\\"DEFAULT\\", [n[\\"NodeManagerAddress\\"] for n in shoal.nodes()])"\nsrun shoal launch --allowed-interfaces nosuch0 -- true\necho "BAD rc=$?"\n' "$WORK" > "$WORK/ifaces.sbatch"
(cd "$ROOT/examples/slurm" && timeout 60 sbatch --wait "$WORK/ifaces.sbatch" >/dev/null 2>&1)
out=$(cat "$WORK/ifaces.out" 2>/dev/null)
if has "$out" "^ADDRS \['127.0.0.1'\]" && has "$out" "^DEFAULT \['198.18.0.11'\]" && has "$out" "none of the allowed interfaces (nosuch0)" && has "$out" "^BAD rc=1"; then
  ok "allowed_interfaces: the agent binds an allowed interface's address; a missing interface is named"
else bad "allowed_interfaces" "$out"; fi

# cgroup ConstrainDevices renumbers a step's GPUs: SLURM_STEP_GPUS=2,3 comes with
# CUDA_VISIBLE_DEVICES=0,1. A job holding GPUs 0,1 makes the second job's GPUs 2,3; its step then
# sets CUDA_VISIBLE_DEVICES as ConstrainDevices would (the test cluster runs task/none), and the
# workers must get the step's own numbering, never a global index CUDA cannot see there.
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --oversubscribe --gres=gpu:2 --output=%s/hold.out\nsrun sleep 60\n' "$WORK" > "$WORK/hold.sbatch"
hold=$(cd "$ROOT/examples/slurm" && sbatch --parsable "$WORK/hold.sbatch")
for _ in $(seq 100); do [[ $(squeue -h -j "$hold" -o %T) == RUNNING ]] && break; sleep 0.1; done
job constrained '#SBATCH --oversubscribe --gres=gpu:2
srun --oversubscribe bash -c '"'"'echo "STEP_GPUS $SLURMD_NODENAME $SLURM_STEP_GPUS"; export CUDA_VISIBLE_DEVICES=0,1; exec shoal launch -- python3 -c "
import os, time, shoal
shoal.init()
f = shoal.remote(num_gpus=2)(lambda: (time.sleep(0.5), (os.environ[\"SHOAL_NODE_ID\"], os.environ[\"CUDA_VISIBLE_DEVICES\"]))[1])
print(\"PLACED\", sorted(shoal.get([f.remote() for _ in range(3)])))"'"'"
scancel "$hold" 2>/dev/null
if [[ $rc == 0 ]] && [[ $(grep -c "^STEP_GPUS node[123] 2,3" <<<"$out") == 3 ]] \
   && has "$out" "PLACED \[('node1', '0,1'), ('node2', '0,1'), ('node3', '0,1')\]"; then
  ok "ConstrainDevices: a step with GPUs 2,3 seen as 0,1 hands its workers CUDA_VISIBLE_DEVICES=0,1 on every node"
else bad "ConstrainDevices GPU numbering" "rc=$rc" "$out"; fi

job missing 'srun -N2 -n2 --ntasks-per-node=1 shoal launch --join-timeout 3s -- true'
if [[ $rc != 0 ]] && has "$out" "waiting for node(s) node3 to join"; then
  ok "a node that never joins times out with its name"
else bad "join time-out" "rc=$rc" "$out"; fi

# scancel: every process, socket, directory and /dev/shm file of the job goes
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/cancel.out\nsrun shoal launch -- python3 -c "
import os, time, shoal
shoal.init()
f = shoal.remote(lambda: time.sleep(300))
refs = [f.remote() for _ in range(3)]
print(\\"CLUSTER\\", os.environ[\\"SHOAL_CLUSTER_ID\\"], flush=True)
time.sleep(300)"\n' "$WORK" > "$WORK/cancel.sbatch"
jid=$(cd "$ROOT/examples/slurm" && sbatch --parsable "$WORK/cancel.sbatch")
for _ in $(seq 300); do grep -q CLUSTER "$WORK/cancel.out" 2>/dev/null && break; sleep 0.1; done
cid=$(awk '/^CLUSTER/{print $2}' "$WORK/cancel.out" 2>/dev/null)
workers=$(grep -l "SHOAL_CLUSTER_ID=$cid" /proc/[0-9]*/environ 2>/dev/null | wc -l)
scancel "$jid"
left=1
end=$((SECONDS + 30)); while ((SECONDS < end)); do
  n=$(live_procs "$cid")
  if [[ $n == 0 ]] && ! ls /dev/shm | grep -q "shoal-$cid" && ! ls "$SHOAL_RENDEZVOUS_DIR" | grep -q "^$jid\."; then left=0; break; fi
  sleep 0.1
done
if [[ -n $cid && $workers -ge 3 && $left == 0 ]]; then
  ok "scancel ends the cluster on every node: no process, shm file or rendezvous file left"
else
  bad "scancel cleanup" "cluster=$cid processes-before=$workers" "$(ls /dev/shm "$SHOAL_RENDEZVOUS_DIR")" \
    "$(grep -l "SHOAL_CLUSTER_ID=$cid" /proc/[0-9]*/environ 2>/dev/null | while read -r e; do p=${e%/environ}; echo "${p#/proc/}: $(tr '\0' ' ' < "$p/cmdline") $(awk '{print $3, "ppid", $4}' "$p/stat")"; done)"
  # leave the machine clean for the tests that follow
  [[ -n $cid ]] && "$ROOT/bin/shoal" admin epilog --job "$jid" --uid "$(id -u)" --tmpdir /tmp --rendezvous-dir "$SHOAL_RENDEZVOUS_DIR" >/dev/null
fi

# Ctrl-C on an interactive srun (twice within a second: srun aborts the step) stops everything
(cd "$ROOT/examples/slurm" && exec srun -N3 --ntasks-per-node=1 shoal launch -- python3 -c '
import os, time, shoal
shoal.init()
f = shoal.remote(lambda: time.sleep(300))
refs = [f.remote() for _ in range(3)]
print("CTRLC", os.environ["SHOAL_CLUSTER_ID"], flush=True)
time.sleep(300)') > "$WORK/ctrlc.out" 2>&1 &
sp=$!
for _ in $(seq 300); do grep -q "^CTRLC" "$WORK/ctrlc.out" 2>/dev/null && break; sleep 0.1; done
cid=$(awk '/^CTRLC/{print $2}' "$WORK/ctrlc.out")
kill -INT $sp; sleep 0.3; kill -INT $sp; wait $sp; src=$?
left=1
end=$((SECONDS + 30)); while ((SECONDS < end)); do
  n=$(live_procs "$cid")
  if [[ $n == 0 ]] && ! ls /dev/shm | grep -q "shoal-$cid"; then left=0; break; fi
  sleep 0.1
done
if [[ -n $cid && $src != 0 && $left == 0 ]]; then
  ok "Ctrl-C on srun stops the cluster on every node and leaves no process or shm file"
else bad "Ctrl-C on srun" "cluster=$cid srun=$src left=$left" "$(tail -5 "$WORK/ctrlc.out")"; fi

# a node whose agent dies is noticed and reported; its tasks run elsewhere
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/lost.out\nsrun shoal launch -- python3 -c "
import os, time, shoal
shoal.init()
f = shoal.remote(lambda i: (time.sleep(3), os.environ[\\"SHOAL_NODE_ID\\"])[1])
print(\\"STARTED\\", flush=True)
print(\\"DONE\\", sorted(shoal.get([f.remote(i) for i in range(3)])), flush=True)"\n' "$WORK" > "$WORK/lost.sbatch"
jid=$(cd "$ROOT/examples/slurm" && sbatch --parsable "$WORK/lost.sbatch")
for _ in $(seq 300); do grep -q STARTED "$WORK/lost.out" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
victim=$(shoal_pids "$jid" node3 | head -1)
[[ -n $victim ]] && kill -9 "$victim"
for _ in $(seq 300); do grep -q "^DONE" "$WORK/lost.out" 2>/dev/null && break; sleep 0.1; done
out=$(cat "$WORK/lost.out" 2>/dev/null)
if [[ -n $victim ]] && has "$out" "node lost" && has "$out" "node=node3" && has "$out" "^DONE \['node[12]', 'node[12]', 'node[12]'\]"; then
  ok "a node whose agent dies is reported, and its task runs on another node"
else bad "lost node" "victim=$victim" "$out"; fi
scancel "$jid" 2>/dev/null
# the killed agent could not remove node3's object store: that is the admin epilog's job (the
# test cluster runs no Epilog here), so run it as Slurm would once the job is gone
for _ in $(seq 300); do [[ -z $(squeue -h -j "$jid" 2>/dev/null) ]] && break; sleep 0.1; done
"$ROOT/bin/shoal" admin epilog --job "$jid" --uid "$(id -u)" --tmpdir /tmp --rendezvous-dir "$SHOAL_RENDEZVOUS_DIR" >/dev/null

# the time-limit job (submitted at the start)
cid=""
for _ in $(seq 1200); do
  st=$(squeue -h -j "$limit_jid" -o %T 2>/dev/null)
  [[ -z $st ]] && break
  sleep 0.1
done
out=$(cat "$WORK/limit.out" 2>/dev/null); cid=$(awk '/^LIMIT/{print $2}' <<<"$out")
left=$(live_procs "$cid")
if [[ -n $cid ]] && has "$out" "driver got USR1" && has "$out" "DUE TO TIME LIMIT" && [[ $left == 0 ]] && ! ls /dev/shm | grep -q "shoal-$cid"; then
  ok "--signal=USR1@T reaches the driver; the time limit ends the job and leaves nothing"
else bad "time limit" "cluster=$cid left=$left" "$out"; fi

# the admin's epilog: a job whose head node's shoal was killed (its driver goes with it) leaves an
# object store, a session directory, a rendezvous file and an escaped daemon (stdio detached, so
# that Slurm does not wait for its output); `shoal admin epilog` removes exactly those, on
# every node. Twice: from slurm.conf's Epilog (epilog.d/shoal), and from the SPANK plugin's job
# epilog alone (no Epilog hook; the job uses the default rendezvous directory, as the plugin does).
hook=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/epilog.d/shoal
for via in Epilog SPANK; do
  rdv=$SHOAL_RENDEZVOUS_DIR; setrdv=""
  if [[ $via == Epilog ]]; then
    printf '#!/bin/sh\nexec %s --log-level debug admin epilog --tmpdir /tmp --rendezvous-dir %s >> %s/epilog.log 2>&1\n' "$ROOT/bin/shoal" "$SHOAL_RENDEZVOUS_DIR" "$WORK" > "$hook"
    chmod +x "$hook"
  else
    rm -f "$hook"; rdv=$HOME/.shoal/launch; setrdv="unset SHOAL_RENDEZVOUS_DIR"
  fi
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/epi-%s.out\n%s\nsrun shoal launch -- python3 -c "
import os, subprocess, time, shoal
shoal.init()
subprocess.Popen([\\"setsid\\", \\"sleep\\", \\"600\\"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(\\"EPI\\", os.environ[\\"SHOAL_CLUSTER_ID\\"], flush=True)
time.sleep(600)"\n' "$WORK" "$via" "$setrdv" > "$WORK/epi.sbatch"
  jid=$(cd "$ROOT/examples/slurm" && sbatch --parsable "$WORK/epi.sbatch")
  for _ in $(seq 300); do grep -q "^EPI" "$WORK/epi-$via.out" 2>/dev/null && break; sleep 0.1; done
  cid=$(awk '/^EPI/{print $2}' "$WORK/epi-$via.out" 2>/dev/null)
  for p in $(shoal_pids "$jid" node1); do kill -9 "$p"; done  # the agent, not srun
  # the killed head's store; the members' (shoal-<cid>-nodeN) go as their agents lose the head
  before=$(ls /dev/shm | grep -cx "shoal-$cid")
  # the head's driver ends with its agent (SIGTERM, runDriver's Pdeathsig), and so does the job
  ended=0; for _ in $(seq 300); do [[ -z $(squeue -h -j "$jid" 2>/dev/null) ]] && { ended=1; break; }; sleep 0.1; done
  left=1
  end=$((SECONDS + 30)); while ((SECONDS < end)); do  # Slurm runs the epilog after the job's steps are gone
    n=$(live_procs "$cid")
    if [[ $n == 0 ]] && ! ls /dev/shm | grep -q "shoal-$cid" && ! ls /tmp/shoal-0 2>/dev/null | grep -q "$cid" \
       && ! ls "$rdv" 2>/dev/null | grep -q "^$jid\."; then left=0; break; fi
    sleep 0.1
  done
  rm -f "$hook"
  if [[ -n $cid && $before == 1 && $left == 0 && $ended == 1 ]] && { [[ $via == SPANK ]] || grep -q "job $jid" "$WORK/epilog.log"; }; then
    ok "shoal admin epilog ($via) removes what a killed job left on every node (the job ended with its head node's agent)"
  else bad "epilog via $via" "cluster=$cid shm-before=$before left=$left job-ended=$ended" "$(cat "$WORK/epilog.log" 2>/dev/null)" "$(ls /dev/shm /tmp/shoal-0 "$rdv" 2>/dev/null)" \
    "$(grep -l "SHOAL_CLUSTER_ID=$cid" /proc/[0-9]*/environ 2>/dev/null | while read -r e; do p=${e%/environ}; echo "${p#/proc/}: $(tr '\0' ' ' < "$p/cmdline")"; done)"
    "$ROOT/bin/shoal" admin epilog --job "$jid" --uid "$(id -u)" --tmpdir /tmp --rendezvous-dir "$rdv" >/dev/null
  fi
done

finish
