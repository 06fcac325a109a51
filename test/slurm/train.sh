#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# `shoal train` and shoal.train on a real 3-node Slurm 22.05 cluster (scripts/slurm-cluster.sh),
# as an ML engineer runs them from sbatch: the gang is placed all at once with torchrun's
# environment, torch's gloo backend initialises across the nodes and DDP's gradients agree with
# one process, a killed rank restarts the gang from its checkpoint, scancel reaches every rank
# and leaves nothing behind, and a gang the cluster cannot hold is refused with a clear
# message. Run it under `flock /tmp/shoal-slurm.lock`. Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
# (The test nodes reach no DNS server; scripts/slurm-cluster.sh puts the nodes' IPv4-mapped
# addresses, which torch's c10d asks names for, in /etc/hosts.)
WORK=$(mktemp -d /tmp/shoal-train.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }
python3 -c "import torch" 2>/dev/null; have_torch=$?

# job NAME SCRIPT-BODY [SBATCH-LINE]: run an sbatch script with --wait; sets $rc and $out
job() {
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/%s.out\n%s\n%s\n' "$WORK" "$1" "${3:-}" "$2" > "$WORK/$1.sbatch"
  (cd "$ROOT/examples/train" && timeout 180 sbatch --wait "$WORK/$1.sbatch" >/dev/null 2>&1); rc=$?
  out=$(cat "$WORK/$1.out" 2>/dev/null)
}

cat > "$WORK/env.py" <<'PY'
import os
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
        "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
        "NCCL_SOCKET_IFNAME", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")
print("ENV", os.environ["SHOAL_NODE_ID"], " ".join(f"{k}={os.environ.get(k, '-')}" for k in keys), flush=True)
PY

job env "srun shoal launch -- shoal train --nproc-per-node 2 --max-restarts 1 -- python3 $WORK/env.py"
envs=$(grep -o 'ENV .*' <<<"$out" | sort -t= -k2 -n)
ports=$(grep -o 'MASTER_PORT=[0-9]*' <<<"$envs" | sort -u | wc -l)
want="ENV node1 RANK=0 LOCAL_RANK=0 WORLD_SIZE=6 LOCAL_WORLD_SIZE=2 NODE_RANK=0 GROUP_RANK=0 MASTER_ADDR=198.18.0.11
ENV node1 RANK=1 LOCAL_RANK=1 WORLD_SIZE=6 LOCAL_WORLD_SIZE=2 NODE_RANK=0 GROUP_RANK=0 MASTER_ADDR=198.18.0.11
ENV node2 RANK=2 LOCAL_RANK=0 WORLD_SIZE=6 LOCAL_WORLD_SIZE=2 NODE_RANK=1 GROUP_RANK=1 MASTER_ADDR=198.18.0.11
ENV node2 RANK=3 LOCAL_RANK=1 WORLD_SIZE=6 LOCAL_WORLD_SIZE=2 NODE_RANK=1 GROUP_RANK=1 MASTER_ADDR=198.18.0.11
ENV node3 RANK=4 LOCAL_RANK=0 WORLD_SIZE=6 LOCAL_WORLD_SIZE=2 NODE_RANK=2 GROUP_RANK=2 MASTER_ADDR=198.18.0.11
ENV node3 RANK=5 LOCAL_RANK=1 WORLD_SIZE=6 LOCAL_WORLD_SIZE=2 NODE_RANK=2 GROUP_RANK=2 MASTER_ADDR=198.18.0.11"
got=$(sed 's/ MASTER_PORT.*//' <<<"$envs")
if [[ $rc == 0 && $got == "$want" && $ports == 1 ]] && has "$out" "6 ranks running (attempt 0): node1: ranks 0-1, node2: ranks 2-3, node3: ranks 4-5"; then
  ok "srun shoal launch -- shoal train --nproc-per-node 2: 6 ranks, consecutive per node, one MASTER_ADDR:MASTER_PORT"
else bad "rank layout and environment" "rc=$rc" "$got" "$out"; fi
if [[ $(grep -c 'TORCHELASTIC_RESTART_COUNT=0 TORCHELASTIC_MAX_RESTARTS=1 OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES=- NCCL_SOCKET_IFNAME==eth0 SLURM_PROCID=- SLURM_LOCALID=- SLURM_NTASKS=-' <<<"$envs") == 6 ]]; then
  ok "every rank has TORCHELASTIC_*, OMP_NUM_THREADS, its node's NCCL_SOCKET_IFNAME, and no SLURM_PROCID/LOCALID/NTASKS"
else bad "per-rank variables" "$envs"; fi

job gpus "srun shoal launch -- shoal train --nproc-per-node auto -- python3 $WORK/env.py
srun --overlap shoal launch -- shoal train --nproc-per-node auto --cuda-visible-devices shared -- python3 $WORK/env.py" '#SBATCH --gres=gpu:2'
per=$(grep -o 'ENV node2 RANK=[0-9] LOCAL_RANK=[0-9].*CUDA_VISIBLE_DEVICES=[0-9,]*' <<<"$out" | sed 's/ WORLD_SIZE.*CUDA/ CUDA/' | sort -u)
if [[ $rc == 0 ]] && has "$per" "ENV node2 RANK=2 LOCAL_RANK=0 CUDA_VISIBLE_DEVICES=0$" && has "$per" "ENV node2 RANK=3 LOCAL_RANK=1 CUDA_VISIBLE_DEVICES=1$" \
   && has "$per" "ENV node2 RANK=2 LOCAL_RANK=0 CUDA_VISIBLE_DEVICES=0,1" && has "$per" "ENV node2 RANK=3 LOCAL_RANK=1 CUDA_VISIBLE_DEVICES=0,1"; then
  ok "--gres=gpu:2 with --nproc-per-node auto: 2 ranks per node in GPU order, one GPU each (per-rank) or both (shared)"
else bad "GPU ranks" "rc=$rc" "$per" "$out"; fi

job spread "srun shoal launch -- shoal train --nproc-per-node 1 --placement-strategy STRICT_SPREAD -- python3 $WORK/env.py
srun --overlap shoal launch -- shoal train --nproc-per-node 2 --cpus-per-rank 1 -- python3 $WORK/env.py; echo \"exit=\$?\""
if has "$out" "3 ranks running (attempt 0): node1: rank 0, node2: rank 1, node3: rank 2" \
   && has "$out" "cannot place the ranks: the cluster can never hold 6 ranks of {CPU:1} (PACK): .*do not fit on the cluster's 3 nodes" && has "$out" "ask for fewer ranks" && has "$out" "^exit=[1-9]"; then
  ok "STRICT_SPREAD puts one rank per node; a gang the cluster can never hold is refused, saying what was asked"
else bad "placement strategies" "rc=$rc" "$out"; fi

# the numpy FSDP-style example (shoal.collective only): the loss of 3 sharded ranks is the loss of
# one process trained on the whole batch
job fsdp "srun shoal launch -- shoal train --nproc-per-node 1 -- python3 fsdp_numpy.py --steps 100"
if [[ $rc == 0 ]] && has "$out" "FSDP world=3 steps=100 first_loss=0.623533 loss=0.0763945.* single_process_loss=0.0763945.* agree=True"; then
  ok "numpy FSDP on 3 nodes: loss 0.6235 -> $(grep -o ' loss=[0-9.]*' <<<"$out" | head -1 | cut -c7-14), equal to one process's within 1e-9 (relative)"
else bad "numpy FSDP convergence" "rc=$rc" "$out"; fi

# spares CID|JOB KEY: how many warm spares (started as `python -c ...<shoal train spare>...`) of
# the cluster (KEY SHOAL_CLUSTER_ID) or Slurm job (KEY SLURM_JOB_ID) run
spares() {
  local e n=0
  for e in /proc/[0-9]*/environ; do
    { tr '\0' '\n' < "${e%/environ}/cmdline"; } 2>/dev/null | grep -q '<shoal train spare>' || continue  # (a process may be gone)
    { tr '\0' '\n' < "$e"; } 2>/dev/null | grep -qx "${2:-SHOAL_CLUSTER_ID}=$1" && n=$((n + 1))
  done
  echo "$n"
}

# a rank killed mid-run: the gang stops and restarts from the last sharded checkpoint, then
# finishes with exactly the loss of an uninterrupted run; the new attempt runs in the ranks' warm
# spares (which had imported torch), and once more with --preload '' (cold): the same loss
killrun() { # NAME PRELOAD-ARGS: sets $out, $victim
  local ck=$WORK/ckpt-$1 jid
  mkdir -p "$ck"
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/%s.out\nsrun shoal launch -- shoal train --nproc-per-node 1 --max-restarts 2 %s -- python3 fsdp_numpy.py --steps 200 --step-time 0.05 --ckpt-every 10 --ckpt-dir %s\n' "$WORK" "$1" "$2" "$ck" > "$WORK/$1.sbatch"
  jid=$(cd "$ROOT/examples/train" && sbatch --parsable "$WORK/$1.sbatch")
  for _ in $(seq 600); do [[ -e $ck/step29/shard0.npz ]] && break; sleep 0.1; done
  # spares are made once a node has a CPU to spare: wait for them (at most 30 s)
  [[ $2 != *preload* ]] && for _ in $(seq 300); do [[ $(spares "$jid" SLURM_JOB_ID) == 3 ]] && break; sleep 0.1; done
  victim=$(grep -o 'START rank=2 world=3 attempt=0 pid=[0-9]*' "$WORK/$1.out" | sed 's/.*pid=//')
  [[ -n $victim ]] && kill -9 "$victim"
  for _ in $(seq 1200); do [[ -z $(squeue -h -j "$jid" 2>/dev/null) ]] && break; sleep 0.1; done
  out=$(cat "$WORK/$1.out")
  has "$out" "rank 2 on node3 failed (killed by signal 9); restarting the gang from checkpoint $ck/step[0-9]* (restart 1 of 2)" \
    && [[ $(grep -c "RESUME rank=[0-2] from=$ck/step" <<<"$out") == 3 ]]
}
killrun kill "--spare-wait 2s"; warm_ok=$?; warm_out=$out; warm_victim=$victim
killrun killcold "--preload ''"; cold_ok=$?; cold_out=$out
warm_loss=$(grep -o 'FSDP world=3 steps=200 .*' <<<"$warm_out"); cold_loss=$(grep -o 'FSDP world=3 steps=200 .*' <<<"$cold_out")
if [[ -n $warm_victim && $warm_ok == 0 ]] && has "$warm_out" "3 ranks running (attempt 1, 3 from warm spares)" \
   && has "$warm_loss" " agree=True"; then
  ok "a rank killed with SIGKILL: the gang restarts from the last checkpoint on every node, in the ranks' warm spares, and ends with the uninterrupted loss"
else bad "restart from checkpoint (warm spares)" "victim=$warm_victim" "$warm_out"; fi
if [[ $cold_ok == 0 && -n $warm_loss && $warm_loss == "$cold_loss" ]] && ! has "$cold_out" "from warm spares"; then
  ok "the same with --preload '' (every attempt cold): the same final loss to the last digit ($(grep -o ' loss=[0-9.]*' <<<"$cold_loss" | cut -c7-))"
else bad "warm restart vs cold restart" "warm: $warm_loss" "cold: $cold_loss" "$cold_out"; fi

# a node lost mid-run (its agent killed): the gang stops at once; 3 one-CPU ranks no longer fit
# on the 2 nodes left, which shoal train says instead of waiting
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/lost.out\nsrun shoal launch -- shoal train --nproc-per-node 1 --max-restarts 2 -- python3 fsdp_numpy.py --steps 400 --step-time 0.05\n' "$WORK" > "$WORK/lost.sbatch"
jid=$(cd "$ROOT/examples/train" && sbatch --parsable "$WORK/lost.sbatch")
for _ in $(seq 600); do [[ $(grep -c "START rank=" "$WORK/lost.out" 2>/dev/null) == 3 ]] && break; sleep 0.1; done
sleep 1
victim=$(shoal_pids "$jid" node3 | head -1)
[[ -n $victim ]] && kill -9 "$victim"
t0=$(date +%s.%N)
for _ in $(seq 600); do [[ -z $(squeue -h -j "$jid" 2>/dev/null) ]] && break; sleep 0.1; done
took=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")
out=$(cat "$WORK/lost.out")
# (which failure shoal train sees first is a race: node3's rank lost, or rank 1's collective
# failing on the connection to it)
if [[ -n $victim ]] && has "$out" "rank [0-9] on node[1-3] failed (.*); restarting the gang" \
   && has "$out" "cannot place the ranks: the cluster can never hold 3 ranks of {CPU:1}" && ! has "$out" "FSDP world="; then
  ok "a node lost mid-run: the gang is stopped and the job ends in ${took} s, saying the 3 ranks no longer fit"
else bad "node lost" "victim=$victim took=$took" "$out"; fi

if [[ $have_torch == 0 ]]; then
  job ddp "srun shoal launch -- shoal train --nproc-per-node 1 -- python3 ddp_torch.py --steps 5"
  if [[ $rc == 0 && $(grep -c "INIT rank=[0-2] world=3" <<<"$out") == 3 && $(grep -c "GRADS rank=[0-2] identical_across_ranks=True .* agree=True" <<<"$out") == 3 ]] \
     && has "$out" "DONE steps=5"; then
    ok "torch (PyPI, CPU): init_process_group('gloo', 'env://') on 3 nodes, and DDP's gradients agree with one process's"
  else bad "torch gloo DDP across 3 nodes" "rc=$rc" "$out"; fi

  # shoal.train.run from Python: 3 workers, torch gloo inside, results in rank order
  cat > "$WORK/pyrun.py" <<'PY'
import os
import shoal, shoal.train
import torch, torch.distributed as dist

def fn(config):
    ctx = shoal.train.get_context()
    dist.init_process_group("gloo", init_method="env://")
    t = torch.tensor([float(ctx.world_rank + 1)])
    dist.all_reduce(t)
    dist.destroy_process_group()
    return (ctx.world_rank, ctx.world_size, os.environ["SHOAL_NODE_ID"], float(t))

shoal.init()
print("RESULTS", shoal.train.run(fn, num_workers=3, resources_per_worker={"CPU": 1}, placement_strategy="SPREAD", config={}))
PY
  job pyrun "srun shoal launch -- python3 $WORK/pyrun.py"
  if [[ $rc == 0 ]] && has "$out" "RESULTS \[(0, 3, 'node1', 6.0), (1, 3, 'node2', 6.0), (2, 3, 'node3', 6.0)\]"; then
    ok "shoal.train.run: 3 workers spread over the nodes, gloo allreduce inside, results in rank order"
  else bad "shoal.train.run on 3 nodes" "rc=$rc" "$out"; fi
else
  bad "torch is not installed (scripts/deps.sh installs it): the torch tests did not run"
fi

# scancel: SIGTERM reaches every rank (each saves), then nothing of the job is left
cat > "$WORK/term.py" <<'PY'
import os, signal, sys, time
d = sys.argv[1]
def save(*_):
    open(os.path.join(d, f"saved-{os.environ['RANK']}"), "w").write(os.environ["SHOAL_NODE_ID"])
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
usr1 = 0
def note(*_):
    global usr1
    usr1 += 1
    print("USR1", os.environ["RANK"], usr1, flush=True)
signal.signal(signal.SIGUSR1, note)
print("RUNNING", os.environ["RANK"], os.environ["SHOAL_CLUSTER_ID"], flush=True)
while True:
    time.sleep(1)
PY
mkdir -p "$WORK/saved"
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/cancel.out\nsrun shoal launch -- shoal train --nproc-per-node 1 --max-restarts 3 --spare-wait 2s -- python3 %s %s\n' "$WORK" "$WORK/term.py" "$WORK/saved" > "$WORK/cancel.sbatch"
jid=$(cd "$ROOT/examples/train" && sbatch --parsable "$WORK/cancel.sbatch")
for _ in $(seq 600); do [[ $(grep -c "RUNNING" "$WORK/cancel.out" 2>/dev/null) == 3 ]] && break; sleep 0.1; done
cid=$(awk '/RUNNING/{print $NF; exit}' "$WORK/cancel.out" 2>/dev/null)
before=$(live_procs "$cid")
for _ in $(seq 300); do [[ $(spares "$cid") == 3 ]] && break; sleep 0.1; done
spares_before=$(spares "$cid")
scancel -s USR1 "$jid"   # as --signal=USR1@T does: to every process of the step
sleep 3
usr1=$(grep -o 'USR1 [0-9] [0-9]*' "$WORK/cancel.out" | sort | paste -sd' ')
spares_usr1=$(spares "$cid")
scancel "$jid"
left=1
for _ in $(seq 300); do
  if [[ $(live_procs "$cid") == 0 ]] && ! ls /dev/shm | grep -q "shoal-$cid"; then left=0; break; fi
  sleep 0.1
done
saved=$(cd "$WORK/saved" && for f in saved-*; do echo "$f:$(cat "$f")"; done | sort | paste -sd' ')
if [[ -n $cid && $before -ge 6 && $left == 0 && $saved == "saved-0:node1 saved-1:node2 saved-2:node3" ]] \
   && ! grep -q "restarting the gang" "$WORK/cancel.out" && [[ $usr1 == "USR1 0 1 USR1 1 1 USR1 2 1" ]] \
   && [[ $spares_before == 3 && $spares_usr1 == 3 ]]; then
  ok "scancel -s USR1 reaches every rank once (the 3 warm spares stay); scancel: every rank gets SIGTERM and saves, no restart, no process (spares included) or shm file left"
else bad "scancel" "cluster=$cid before=$before spares=$spares_before after USR1: $spares_usr1 left=$left saved=$saved usr1=$usr1" "$(cat "$WORK/cancel.out")" \
  "$(grep -l "SHOAL_CLUSTER_ID=$cid" /proc/[0-9]*/environ 2>/dev/null | while read -r e; do p=${e%/environ}; echo "${p#/proc/}: $(tr '\0' ' ' < "$p/cmdline")"; done)"; fi

finish
