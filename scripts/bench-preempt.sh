#!/usr/bin/env bash
# shellcheck disable=SC2016
# Preemption and resume: shoal train --requeue against submitit's checkpoint-and-requeue
# (PyPI), in one run on the 3-node Slurm cluster (scripts/slurm-cluster.sh, partitions
# `preemptible` with PreemptMode=REQUEUE and GraceTime=10, and `urgent`). The same torch gloo DDP
# training on 3 nodes (one rank per node) in both; an urgent job preempts it at step 20. Measured:
#   save:   from the urgent job's submission (Slurm preempts at once) to rank 0's checkpoint file
#           in place (shoal: checkpoint_due() -> all ranks agree -> save; submitit: its USR2
#           handler on rank 0 calls checkpoint(), with SlurmctldParameters=preempt_send_user_signal)
#   resume: from the requeued job's batch script start to every rank past init_process_group
#           with the checkpoint loaded
# and, for shoal alone (submitit has no spares), a spare node taking over (--spare-nodes 1):
#   takeover: from the SIGKILL of rank 1's node's agent to both ranks of the new attempt past
#           init_process_group with the checkpoint loaded (the spare's rank in the warm spare of
#           the standby rank made there at gang start; the node is lost at step 60, ~6 s into
#           the training, once that spare has imported torch)
# Usage: flock /tmp/shoal-slurm.lock scripts/bench-preempt.sh [ROUNDS] (default 1; ~3 min a round)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
export SLURM_CONF=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/slurm.conf
export PATH=$ROOT/bin:$PATH
ROUNDS=${1:-1}
python3 -c "import torch, submitit" || { echo "bench-preempt: needs torch and submitit (pip install submitit)"; exit 1; }
WORK=$(mktemp -d /tmp/shoal-bench-preempt.XXXXXX)
SHOAL_RENDEZVOUS_DIR=$(mktemp -d /tmp/shoal-rdv.XXXXXX); export SHOAL_RENDEZVOUS_DIR
trap '[[ -n ${KEEP:-} ]] || rm -rf "$WORK"; rm -rf "$SHOAL_RENDEZVOUS_DIR"' EXIT
export PYTHONPATH=$WORK:$ROOT/python${PYTHONPATH:+:$PYTHONPATH}   # benchlib, subtrainer, shoal
"$ROOT/scripts/slurm-cluster.sh" up >/dev/null || exit 1

cat > "$WORK/benchlib.py" <<'PY'
import os, sys, time
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
D, B, STEPS = 8, 24, 400

def batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(B, D, generator=g)
    return x, x @ torch.arange(1.0, D + 1).unsqueeze(1) + 0.1 * torch.randn(B, 1, generator=g)

def fresh():
    torch.manual_seed(0)
    m = torch.nn.Linear(D, 1)
    return m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

def load(model, opt, path):
    s = torch.load(path)
    model.load_state_dict(s["model"]); opt.load_state_dict(s["opt"])
    return s["step"]

def save(model, opt, step, path):
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, path + ".tmp")
    os.replace(path + ".tmp", path)
    print(f"SAVED t={time.time():.3f} step={step}", flush=True)

def one_step(ddp, opt, step, rank, world):
    x, y = batch(step)
    n = B // world
    opt.zero_grad()
    loss = ((ddp(x[rank * n:(rank + 1) * n]) - y[rank * n:(rank + 1) * n]) ** 2).mean()
    loss.backward()
    opt.step()
    if rank == 0 and step % 10 == 0:
        print(f"STEP {step}", flush=True)
    time.sleep(0.1)
PY

# shoal: checkpoint_due() in the loop
cat > "$WORK/shoal_train.py" <<'PY'
import os, sys, time
from benchlib import *
import shoal.train
ckdir = sys.argv[1]
every = int(sys.argv[2]) if len(sys.argv) > 2 else 0   # a checkpoint every N steps too
dist.init_process_group("gloo", init_method="env://")
rank, world = dist.get_rank(), dist.get_world_size()
model, opt = fresh()
start = load(model, opt, shoal.train.get_checkpoint()) if shoal.train.get_checkpoint() else 0
print(f"READY t={time.time():.3f} rank={rank} step={start}", flush=True)
ddp = DDP(model)
for step in range(start, STEPS):
    due = torch.tensor([1 if shoal.train.checkpoint_due() else 0])
    dist.all_reduce(due, op=dist.ReduceOp.MAX)
    if due.item():
        path = os.path.join(ckdir, f"shoal-step{step}.pt")
        if rank == 0:
            save(model, opt, step, path)
            shoal.train.report({"step": step}, checkpoint=path)
        dist.barrier()
        os._exit(0)
    if every and step > start and step % every == 0 and rank == 0:
        path = os.path.join(ckdir, f"shoal-step{step}.pt")
        save(model, opt, step, path)
        shoal.train.report({"step": step}, checkpoint=path)
    one_step(ddp, opt, step, rank, world)
print("FINAL", flush=True)
os._exit(0)
PY

# submitit: a Checkpointable whose checkpoint() (its USR2 handler, on rank 0) saves the model; in
# a module of its own, so that submitit's unpickler finds the class in the job
cat > "$WORK/subtrainer.py" <<'PY'
import os, sys, time
import submitit
from benchlib import *

class Trainer(submitit.helpers.Checkpointable):
    def __init__(self, ckdir, ckpt=None):
        self.ckdir, self.ckpt = ckdir, ckpt
    def __call__(self):
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        dist.init_process_group("gloo", init_method="env://")
        rank, world = dist.get_rank(), dist.get_world_size()
        self.model, self.opt = fresh()
        start = load(self.model, self.opt, self.ckpt) if self.ckpt else 0
        print(f"READY t={time.time():.3f} rank={rank} step={start}", flush=True)
        ddp = DDP(self.model)
        for step in range(start, STEPS):
            self.step = step
            one_step(ddp, self.opt, step, rank, world)
        print("FINAL", flush=True)
    def checkpoint(self):
        path = os.path.join(self.ckdir, f"submitit-step{self.step}.pt")
        save(self.model, self.opt, self.step, path)
        return submitit.helpers.DelayedSubmission(Trainer(self.ckdir, path))
PY
cat > "$WORK/submitit_train.py" <<'PY'
import sys
import submitit
from subtrainer import Trainer
folder, ckdir = sys.argv[1], sys.argv[2]
ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
ex.update_parameters(partition="preemptible", nodes=3, ntasks_per_node=1, exclusive=True, time=30,
                     setup=['echo "ALLOC t=$(date +%s.%N) restart=${SLURM_RESTART_COUNT:-0}"'],
                     additional_parameters={"requeue": True})
print(ex.submit(Trainer(ckdir)).job_id, flush=True)
PY

now() { date +%s.%N; }
wait_grep() { # FILES-GLOB PATTERN SECONDS
  local i; for ((i = 0; i < $3 * 10; i++)); do cat $1 2>/dev/null | grep -q -- "$2" && return 0; sleep 0.1; done; return 1; }
urgent() { sbatch -p urgent -N 3 --exclusive -o /dev/null --wrap 'sleep 2' >/dev/null; }
# numbers LOGS T_URGENT: "save resume" in seconds
numbers() {
  local logs=$1 t0=$2 saved alloc ready
  saved=$(cat $logs | grep -o 'SAVED t=[0-9.]*' | head -1 | cut -d= -f2)
  alloc=$(cat $logs | grep -o 'ALLOC t=[0-9.]* restart=1' | head -1 | sed 's/ALLOC t=//; s/ restart=1//')
  ready=$(cat $logs | grep 'READY t=.* step=[1-9]' | grep -o 't=[0-9.]*' | cut -d= -f2 | sort -n | tail -1)
  awk -v s="$saved" -v t="$t0" -v a="$alloc" -v r="$ready" 'BEGIN{ if (s == "" || a == "" || r == "") print "- -"; else printf "%.2f %.2f\n", s - t, r - a }'
}

results=()
for ((k = 1; k <= ROUNDS; k++)); do
  # shoal
  ck=$WORK/ck-shoal-$k; mkdir -p "$ck"
  printf '#!/bin/bash\n#SBATCH -p preemptible -N 3 --ntasks-per-node=1 --exclusive --requeue --open-mode=append --output=%s/shoal-%s.out\necho "ALLOC t=$(date +%%s.%%N) restart=${SLURM_RESTART_COUNT:-0}"\nsrun shoal launch -- shoal train --requeue --nproc-per-node 1 --state-dir %s/state-%s -- python3 %s/shoal_train.py %s\n' \
    "$WORK" "$k" "$WORK" "$k" "$WORK" "$ck" > "$WORK/shoal-$k.sbatch"
  jid=$(sbatch --parsable "$WORK/shoal-$k.sbatch")
  wait_grep "$WORK/shoal-$k.out" "STEP 20" 120 || echo "bench-preempt: shoal round $k never reached step 20"
  t0=$(now); urgent
  wait_grep "$WORK/shoal-$k.out" "READY t=.* step=[1-9]" 180 && for r in 0 1 2; do wait_grep "$WORK/shoal-$k.out" "READY t=.* rank=$r step=[1-9]" 30; done
  scancel "$jid"; sleep 1
  read -r s_save s_resume < <(numbers "$WORK/shoal-$k.out" "$t0")
  # submitit
  ck=$WORK/ck-submitit-$k; mkdir -p "$ck"
  # (gloo finds its address through the host name, which every test node shares: shoal train
  # sets GLOO_SOCKET_IFNAME from discovery, submitit's job gets it from here)
  sjid=$(GLOO_SOCKET_IFNAME=eth0 python3 "$WORK/submitit_train.py" "$WORK/submitit-$k" "$ck" 2>"$WORK/submitit-$k.err")
  [[ -n $sjid ]] || { echo "bench-preempt: submitit did not submit:"; cat "$WORK/submitit-$k.err"; }
  wait_grep "$WORK/submitit-$k/*.out" "STEP 20" 120 || echo "bench-preempt: submitit round $k never reached step 20"
  t0=$(now); urgent
  wait_grep "$WORK/submitit-$k/*.out" "READY t=.* step=[1-9]" 180 && for r in 0 1 2; do wait_grep "$WORK/submitit-$k/*.out" "READY t=.* rank=$r step=[1-9]" 30; done
  scancel "$sjid"; sleep 1
  read -r b_save b_resume < <(numbers "$WORK/submitit-$k/*.out" "$t0")
  # shoal, a spare node takes over
  ck=$WORK/ck-spare-$k; mkdir -p "$ck"
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --exclusive --no-kill --output=%s/spare-%s.out\nsrun shoal launch -- shoal train --spare-nodes 1 --max-restarts 1 --nproc-per-node 1 -- python3 %s/shoal_train.py %s 10\n' \
    "$WORK" "$k" "$WORK" "$ck" > "$WORK/spare-$k.sbatch"
  jid=$(sbatch --parsable "$WORK/spare-$k.sbatch")
  wait_grep "$WORK/spare-$k.out" "STEP 60" 120 || echo "bench-preempt: spare round $k never reached step 60"
  lost=$(grep -o "2 ranks running (attempt 0): .*;" "$WORK/spare-$k.out" | grep -o "node[0-9]: rank 1" | cut -d: -f1)
  victim=$(for e in /proc/[0-9]*/environ; do env=$({ tr '\0' '\n' < "$e"; } 2>/dev/null) || continue
    grep -qx "SLURM_JOB_ID=$jid" <<<"$env" && grep -qx "SLURMD_NODENAME=$lost" <<<"$env" && ! grep -q "^SHOAL_WORKER_ID=" <<<"$env" || continue
    [[ $(basename "$(tr '\0' '\n' < "${e%/environ}/cmdline" | head -1)") == shoal ]] && basename "${e%/environ}"; done | head -1)
  t0=$(now); [[ -n $victim ]] && kill -9 "$victim"
  for r in 0 1; do wait_grep "$WORK/spare-$k.out" "READY t=.* rank=$r step=[1-9]" 60; done   # every rank's, not the first
  scancel "$jid"; sleep 1
  s_take=$(grep 'READY t=.* step=[1-9]' "$WORK/spare-$k.out" | grep -o 't=[0-9.]*' | cut -d= -f2 | sort -n)
  s_take=$(awk -v t="$t0" '{ r = $1; n++ } END { if (n < 2) print "-"; else printf "%.2f", r - t }' <<<"$s_take")
  echo "round $k: shoal save ${s_save} s resume ${s_resume} s; submitit save ${b_save} s resume ${b_resume} s; shoal spare takeover ${s_take} s"
  results+=("$s_save $s_resume $b_save $b_resume")
done
printf '%s\n' "${results[@]}" | awk '$1 != "-" && $3 != "-" { a += $1; b += $2; c += $3; d += $4; n++ }
  END { if (!n) { print "bench-preempt: no complete round"; exit 1 }
        printf "mean of %d: save shoal %.2f s, submitit %.2f s; resume shoal %.2f s, submitit %.2f s (submitit/shoal: %.2fx)\n", n, a/n, c/n, b/n, d/n, d/b }'
