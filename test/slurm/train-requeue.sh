#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# Training that outlives its allocation, on the 3-node Slurm 22.05 cluster
# (scripts/slurm-cluster.sh: partitions `preemptible`, PreemptMode=REQUEUE with GraceTime=10, and
# `urgent`, which preempts it; AuthInfo=cred_expire=10, so a requeued job starts again ~11 s
# after it ended). A torch gloo DDP run on 3 nodes under `shoal train --requeue`:
#   1. preempted by an urgent job: every rank checkpoints within the grace time, the allocation
#      is held until Slurm ends the job, Slurm requeues it, and the new allocation resumes from
#      the checkpoint;
#   2. warned of its time limit (USR1 to every process of the step, as --signal=USR1@T sends
#      it): it checkpoints, requeues itself (scontrol requeue) and resumes;
#   3. elastic (--nnodes 2:3, sbatch --no-kill): a node's agent is killed, and the gang goes on
#      from its last checkpoint with 2 ranks on the 2 nodes left;
#   4. a spare node (--spare-nodes 1): 2 ranks on 2 nodes, the node of rank 1 is lost, and the
#      gang goes on from its checkpoint on the spare with the same world size, the spare's rank
#      in the warm spare of the standby rank made there at gang start.
# Each ends with the weights of the same training in one process (relative difference < 1e-5),
# a history (--state-dir) that says why each allocation ended, and nothing left on any node.
# Run it under `flock /tmp/shoal-slurm.lock`. Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-requeue.XXXXXX)
trap '[[ -n ${KEEP:-} ]] || rm -rf "$WORK"; rm -rf "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }
if ! python3 -c "import torch" 2>/dev/null; then
  bad "torch is not installed (scripts/deps.sh installs it): the requeue tests did not run"; finish
fi

# A DDP run whose every step's batch is fixed by the step number, so that any split into
# allocations trains the same weights as one process on the whole batch. The model, the batches
# and a step are shared by the script (ddp_requeue.py) and the shoal.train.run driver (ddp_pyrun.py).
cat > "$WORK/ddp_model.py" <<'PY'
import torch

D, B = 8, 24

def batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(B, D, generator=g)
    return x, x @ torch.arange(1.0, D + 1).unsqueeze(1) + 0.1 * torch.randn(B, 1, generator=g)

def fresh():
    torch.manual_seed(0)
    m = torch.nn.Linear(D, 1)
    return m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

def step_on(model, opt, x, y):
    opt.zero_grad()
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
    return loss.item()
PY
cat > "$WORK/ddp_requeue.py" <<'PY'
import os, sys, time
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
import shoal.train
from ddp_model import B, batch, fresh, step_on

steps, ckdir, step_time = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
every = int(sys.argv[4]) if len(sys.argv) > 4 else 0   # a checkpoint every N steps too
# the first allocation waits at this step until its checkpoint is due (at most 120 s), so that
# the trigger (a preemption, a time-limit warning) lands mid-run however slowly Slurm acts on it
hold = int(sys.argv[5]) if len(sys.argv) > 5 else 0

dist.init_process_group("gloo", init_method="env://")
rank, world = dist.get_rank(), dist.get_world_size()
model, opt = fresh()
start, ck = 0, shoal.train.get_checkpoint()
if ck:
    s = torch.load(ck)
    model.load_state_dict(s["model"]); opt.load_state_dict(s["opt"]); start = s["step"]
print(f"RESUME rank={rank} world={world} step={start} from={ck} restart={os.environ.get('SLURM_RESTART_COUNT', '0')} cid={os.environ['SHOAL_CLUSTER_ID']}", flush=True)
ddp, n = DDP(model), B // world
step, held = start, time.monotonic()
while step < steps:
    due = torch.tensor([1 if shoal.train.checkpoint_due() else 0])
    dist.all_reduce(due, op=dist.ReduceOp.MAX)   # every rank stops at the same step
    if not due.item() and hold and start == 0 and step == hold and time.monotonic() - held < 120:
        time.sleep(0.05)
        continue
    held = time.monotonic()
    if due.item():
        path = os.path.join(ckdir, f"step{step}.pt")
        if rank == 0:
            t = time.monotonic()  # another rank may have had the note first: rank 0's says why
            while not shoal.train.checkpoint_due() and time.monotonic() - t < 5:
                time.sleep(0.01)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, path + ".tmp")
            os.replace(path + ".tmp", path)
            shoal.train.report({"step": step, "reason": shoal.train.checkpoint_due()}, checkpoint=path)
        dist.barrier()
        print(f"DUE rank={rank} step={step}", flush=True)
        os._exit(0)
    if every and step > start and step % every == 0 and rank == 0:
        path = os.path.join(ckdir, f"step{step}.pt")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, path + ".tmp")
        os.replace(path + ".tmp", path)
        shoal.train.report({"step": step}, checkpoint=path)
    x, y = batch(step)
    loss = step_on(ddp, opt, x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n])
    if rank == 0 and step % 10 == 0:
        print(f"STEP {step} loss={loss:.6f}", flush=True)
    time.sleep(step_time)
    step += 1
if rank == 0:
    ref, ropt = fresh()
    for step in range(steps):
        step_on(ref, ropt, *batch(step))
    diff = max((a - b).abs().max().item() for a, b in zip(model.parameters(), ref.parameters()))
    scale = max(p.abs().max().item() for p in ref.parameters())
    print(f"FINAL steps={steps} rel_diff={diff / scale:.2e} agree={diff / scale < 1e-5}", flush=True)
dist.barrier()
os._exit(0)  # past torch's gloo teardown, which aborts now and then (docs/training.md)
PY

# gone JOB: wait (at most 240 s) until JOB has left squeue
gone() { for _ in $(seq 2400); do [[ -z $(squeue -h -j "$1" 2>/dev/null) ]] && return 0; sleep 0.1; done; return 1; }
# clean OUT: no process of any shoal cluster the job made, no shm file of it
clean() {
  local cid ok=0
  for cid in $(grep -o 'cid=[a-z0-9]*' <<<"$1" | sed 's/cid=//' | sort -u); do
    [[ $(live_procs "$cid") == 0 ]] || { echo "left: processes of $cid"; ok=1; }
    ls /dev/shm | grep -q "shoal-$cid" && { echo "left: shm of $cid"; ok=1; }
  done
  # no process of the job on any node
  for n in node1 node2 node3; do
    [[ -z $(shoal_pids "$2" "$n") ]] || { echo "left: shoal on $n"; ok=1; }
  done
  return $ok
}

# run NAME PARTITION-LINE TRIGGER: submit the DDP run, wait for step 20, TRIGGER (a function
# given the job id), wait for the job to finish its second allocation; sets $out, $hist, $jid
run() {
  local name=$1 ck=$WORK/ck-$1 st=$WORK/state-$1
  mkdir -p "$ck"
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --exclusive --requeue --open-mode=append --output=%s/%s.out\n%s\necho "ALLOCATION restart=${SLURM_RESTART_COUNT:-0}"\nsrun shoal launch -- shoal train --requeue --nproc-per-node 1 --state-dir %s -- python3 %s 120 %s 0.1 0 40\n' \
    "$WORK" "$name" "$2" "$st" "$WORK/ddp_requeue.py" "$ck" > "$WORK/$name.sbatch"
  jid=$(sbatch --parsable "$WORK/$name.sbatch")
  for _ in $(seq 900); do grep -q "STEP 20 " "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  "$3" "$jid"
  for _ in $(seq 2400); do grep -q "^FINAL\|\[rank0\]: FINAL" "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  gone "$jid"
  out=$(cat "$WORK/$name.out")
  hist=$(shoal train history --state-dir "$st" 2>&1)
}

# ONLY=preempt, timelimit, elastic or spare runs one of the four
preempt() { sbatch -p urgent -N 3 --exclusive --output="$WORK/urgent.out" --wrap 'echo "URGENT ran on $SLURM_JOB_NODELIST"; sleep 2' >/dev/null; }
if [[ ${ONLY:-preempt} == preempt ]]; then
run preempt "#SBATCH -p preemptible" preempt
ck=$(grep -o 'DUE rank=0 step=[0-9]*' <<<"$out" | sed 's/.*=//')
if [[ -n $ck ]] && has "$out" "a preemption: a checkpoint is due" && [[ $(grep -c "DUE rank=[0-2] step=$ck" <<<"$out") == 3 ]] \
   && has "$out" "preempted: the gang is stopped with the last one, $WORK/ck-preempt/step$ck.pt; holding the allocation" \
   && has "$out" "ALLOCATION restart=1" && has "$out" "starting from checkpoint $WORK/ck-preempt/step$ck.pt" \
   && [[ $(grep -c "RESUME rank=[0-2] world=3 step=$ck from=$WORK/ck-preempt/step$ck.pt restart=1" <<<"$out") == 3 ]] \
   && has "$out" "FINAL steps=120 .* agree=True" && has "$(cat "$WORK/urgent.out" 2>/dev/null)" "URGENT ran"; then
  ok "preempted by an urgent job: every rank stops at step $ck with a checkpoint in the grace time, Slurm requeues the job, it resumes there and ends with one process's weights ($(grep -o 'rel_diff=[^ ]*' <<<"$out"))"
else bad "preemption" "checkpoint step=$ck" "$out" "$(cat "$WORK/urgent.out" 2>/dev/null)"; fi
if has "$hist" "allocation 1: job $jid (restart 0) .*: preempted" && has "$hist" "attempt 0: 3 ranks .* from the start, .*: preempted" \
   && has "$hist" "checkpoint step $ck: $WORK/ck-preempt/step$ck.pt .*\"reason\":\"preemption\"" \
   && has "$hist" "allocation 2: job $jid (restart 1) .*: completed" && has "$hist" "attempt 1: 3 ranks .* from $WORK/ck-preempt/step$ck.pt, .*: completed"; then
  ok "shoal train history: allocation 1 preempted with its checkpoint (step $ck), allocation 2 resumed from it and completed"
else bad "history after a preemption" "$hist"; fi
if left=$(clean "$out" "$jid"); then ok "nothing of either allocation is left on any node"; else bad "leftovers after the preemption" "$left"; fi

fi

warn() { sleep 0.5; scancel -s USR1 "$1"; }   # what --signal=USR1@T sends: USR1 to every process of the step
if [[ ${ONLY:-timelimit} == timelimit ]]; then
run timelimit "#SBATCH --time=10 --signal=USR1@60" warn
ck=$(grep -o 'DUE rank=0 step=[0-9]*' <<<"$out" | sed 's/.*=//')
if [[ -n $ck ]] && has "$out" "the time-limit warning: a checkpoint is due" && [[ $(grep -c "DUE rank=[0-2] step=$ck" <<<"$out") == 3 ]] \
   && has "$out" "the job is requeued and resumes from it" && has "$out" "ALLOCATION restart=1" \
   && [[ $(grep -c "RESUME rank=[0-2] world=3 step=$ck from=$WORK/ck-timelimit/step$ck.pt restart=1" <<<"$out") == 3 ]] \
   && has "$out" "FINAL steps=120 .* agree=True" && has "$hist" "allocation 1: job $jid (restart 0) .*: requeued" \
   && has "$hist" "allocation 2: job $jid (restart 1) .*: completed"; then
  ok "time-limit warning (USR1): every rank stops at step $ck with a checkpoint, shoal train requeues the job, it resumes there and ends with one process's weights ($(grep -o 'rel_diff=[^ ]*' <<<"$out"))"
else bad "time-limit requeue" "checkpoint step=$ck" "$out" "$hist"; fi
if left=$(clean "$out" "$jid"); then ok "nothing of either allocation is left on any node"; else bad "leftovers after the requeue" "$left"; fi
fi

# The same two with a Python driver, in one job: shoal.train.run(requeue=True) under `srun shoal
# launch`, 3 workers (one a node) running the same DDP training as a function; allocation 1 is
# preempted, allocation 2 gets the time-limit warning and requeues itself, allocation 3 finishes.
# (No --signal in this job: with the cluster's preempt_send_user_signal, Slurm would preempt it
# with that signal instead of SIGTERM, which run() would take for the warning.)
if [[ ${ONLY:-py} == py ]]; then
cat > "$WORK/ddp_pyrun.py" <<'PY'
import os, sys, time
import shoal, shoal.train as st

steps, ckdir, step_time, state = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
# allocation N waits at step holds[N] until its checkpoint is due (at most 120 s), so that the
# trigger lands mid-run however slowly Slurm acts on it
holds = [int(h) for h in sys.argv[5].split(",")]
restart = int(os.environ.get("SLURM_RESTART_COUNT", "0"))

here = os.path.dirname(os.path.abspath(__file__))  # where ddp_model.py is

def fn(config):
    import torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    sys.path.insert(0, here)
    from ddp_model import B, batch, fresh, step_on
    dist.init_process_group("gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, opt = fresh()
    start, ck = 0, st.get_checkpoint()
    if ck:
        s = torch.load(ck)
        model.load_state_dict(s["model"]); opt.load_state_dict(s["opt"]); start = s["step"]
    print(f"RESUME rank={rank} world={world} step={start} from={ck} restart={os.environ.get('SLURM_RESTART_COUNT', '0')} cid={os.environ['SHOAL_CLUSTER_ID']}", flush=True)
    ddp, n = DDP(model), B // world
    step, held = start, time.monotonic()
    while step < steps:
        due = torch.tensor([1 if st.checkpoint_due() else 0])
        dist.all_reduce(due, op=dist.ReduceOp.MAX)   # every rank stops at the same step
        if not due.item() and restart < len(holds) and step == holds[restart] and time.monotonic() - held < 120:
            time.sleep(0.05)
            continue
        held = time.monotonic()
        if due.item():
            path = os.path.join(ckdir, f"step{step}.pt")
            if rank == 0:
                t = time.monotonic()
                while not st.checkpoint_due() and time.monotonic() - t < 5:
                    time.sleep(0.01)
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, path + ".tmp")
                os.replace(path + ".tmp", path)
                st.report({"step": step, "reason": st.checkpoint_due()}, checkpoint=path)
            dist.barrier()
            print(f"DUE rank={rank} step={step}", flush=True)
            with open(os.path.join(ckdir, f"due-{restart}-{rank}"), "w") as f:  # (its output may be cut
                f.write(str(step))                                             # by the allocation's end)
            return ("due", step)
        x, y = batch(step)
        loss = step_on(ddp, opt, x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n])
        if rank == 0 and step % 10 == 0:
            print(f"STEP {step} loss={loss:.6f}", flush=True)
        time.sleep(step_time)
        step += 1
    if rank == 0:
        ref, ropt = fresh()
        for step in range(steps):
            step_on(ref, ropt, *batch(step))
        diff = max((a - b).abs().max().item() for a, b in zip(model.parameters(), ref.parameters()))
        scale = max(p.abs().max().item() for p in ref.parameters())
        print(f"FINAL steps={steps} rel_diff={diff / scale:.2e} agree={diff / scale < 1e-5}", flush=True)
    dist.barrier()
    return ("done", start)

shoal.init()
print("DRIVER restart=" + os.environ.get("SLURM_RESTART_COUNT", "0") + " cid=" + os.environ["SHOAL_CLUSTER_ID"], flush=True)
out = st.run(fn, num_workers=3, resources_per_worker={"CPU": 1}, placement_strategy="STRICT_SPREAD", requeue=True,
             state_dir=state)
print("RESULTS", out, flush=True)
PY

ck=$WORK/ck-py; st=$WORK/state-py; mkdir -p "$ck"
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --exclusive --requeue --open-mode=append --output=%s/py.out\n#SBATCH -p preemptible\necho "ALLOCATION restart=${SLURM_RESTART_COUNT:-0}"\nsrun shoal launch -- python3 %s 70 %s 0.1 %s 25,40\n' \
  "$WORK" "$WORK/ddp_pyrun.py" "$ck" "$st" > "$WORK/py.sbatch"
jid=$(sbatch --parsable "$WORK/py.sbatch")
for _ in $(seq 1200); do grep -q "STEP 20 " "$WORK/py.out" 2>/dev/null && break; sleep 0.1; done
preempt "$jid"
for _ in $(seq 1200); do grep -q "STEP 30 " "$WORK/py.out" 2>/dev/null && break; sleep 0.1; done   # allocation 2's
warn "$jid"
for _ in $(seq 2400); do grep -q "^RESULTS" "$WORK/py.out" 2>/dev/null && break; sleep 0.1; done
gone "$jid"
out=$(cat "$WORK/py.out")
hist=$(shoal train history --state-dir "$st" 2>&1)
p1=$(cat "$ck"/due-0-0 2>/dev/null); p2=$(cat "$ck"/due-1-0 2>/dev/null)
if [[ -n $p1 && -n $p2 && $(cat "$ck"/due-0-[0-2]) == "$p1$p1$p1" && $(cat "$ck"/due-1-[0-2]) == "$p2$p2$p2" ]] \
   && has "$out" "a preemption: a checkpoint is due; asking every worker for one" \
   && has "$out" "preempted: the gang is stopped with the last one, $ck/step$p1.pt; holding the allocation" \
   && has "$out" "the time-limit warning: a checkpoint is due; asking every worker for one" \
   && has "$out" "time-limit warning: the gang is stopped with the last one, $ck/step$p2.pt; the job is requeued and resumes from it" \
   && has "$out" "ALLOCATION restart=2" && has "$out" "starting from checkpoint $ck/step$p2.pt" \
   && [[ $(grep -c "RESUME rank=[0-2] world=3 step=$p1 from=$ck/step$p1.pt restart=1" <<<"$out") == 3 ]] \
   && [[ $(grep -c "RESUME rank=[0-2] world=3 step=$p2 from=$ck/step$p2.pt restart=2" <<<"$out") == 3 ]] \
   && has "$out" "FINAL steps=70 .* agree=True" && has "$out" "^RESULTS \[('done', $p2), ('done', $p2), ('done', $p2)\]" \
   && has "$hist" "allocation 1: job $jid (restart 0) .*: preempted" && has "$hist" "attempt 0: 3 ranks .* from the start, .*: preempted" \
   && has "$hist" "checkpoint step $p1: $ck/step$p1.pt .*\"reason\":\"preemption\"" \
   && has "$hist" "allocation 2: job $jid (restart 1) .*: requeued" && has "$hist" "attempt 1: 3 ranks .* from $ck/step$p1.pt, .*: requeued" \
   && has "$hist" "checkpoint step $p2: $ck/step$p2.pt .*\"reason\":\"time_limit\"" \
   && has "$hist" "allocation 3: job $jid (restart 2) .*: completed" && has "$hist" "attempt 2: 3 ranks .* from $ck/step$p2.pt, .*: completed"; then
  ok "shoal.train.run(requeue=True): preempted (every worker stops at step $p1 with a checkpoint, the allocation held), resumed; warned of its time limit (all stop at step $p2), requeued itself, resumed, and ends with one process's weights ($(grep -o 'rel_diff=[^ ]*' <<<"$out")); history preempted, requeued, completed"
else bad "shoal.train.run across allocations" "due steps: $p1 $p2" "$out" "$hist"; fi
if left=$(clean "$out" "$jid"); then ok "shoal.train.run: nothing of the three allocations is left on any node"; else bad "leftovers after shoal.train.run's allocations" "$left"; fi
fi

if [[ ${ONLY:-elastic} == elastic ]]; then
ck=$WORK/ck-elastic; mkdir -p "$ck"
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --exclusive --no-kill --output=%s/elastic.out\nsrun shoal launch -- shoal train --nnodes 2:3 --max-restarts 2 --nproc-per-node 1 --state-dir %s/state-elastic -- python3 %s 120 %s 0.1 10\n' \
  "$WORK" "$WORK" "$WORK/ddp_requeue.py" "$ck" > "$WORK/elastic.sbatch"
jid=$(sbatch --parsable "$WORK/elastic.sbatch")
for _ in $(seq 900); do grep -q "STEP 30 " "$WORK/elastic.out" 2>/dev/null && break; sleep 0.1; done
victim=$(shoal_pids "$jid" node3 | head -1)
[[ -n $victim ]] && kill -9 "$victim"
for _ in $(seq 1800); do grep -q "FINAL" "$WORK/elastic.out" 2>/dev/null && break; sleep 0.1; done
gone "$jid"
out=$(cat "$WORK/elastic.out")
hist=$(shoal train history --state-dir "$WORK/state-elastic" 2>&1)
from=$(grep -o "RESUME rank=0 world=2 step=[0-9]*" <<<"$out" | sed 's/.*=//')
if [[ -n $victim && -n $from ]] && has "$out" "elastic: 2 ranks instead of 3 on the nodes left" && has "$out" "2 ranks running (attempt 1): node1: rank 0, node2: rank 1" \
   && [[ $(grep -c "RESUME rank=[01] world=2 step=$from from=$ck/step$from.pt" <<<"$out") == 2 ]] && has "$out" "FINAL steps=120 .* agree=True" \
   && has "$hist" "attempt 0: 3 ranks .*: failed" && has "$hist" "attempt 1: 2 ranks (node1: rank 0, node2: rank 1) from $ck/step$from.pt, .*: completed"; then
  ok "--nnodes 2:3: node3's agent killed, the gang goes on with 2 ranks (renumbered) from step $from and ends with one process's weights ($(grep -o 'rel_diff=[^ ]*' <<<"$out"))"
else bad "elastic gang" "victim=$victim from=$from" "$out" "$hist"; fi
if left=$(clean "$out" "$jid"); then ok "nothing of the elastic job is left on any node"; else bad "leftovers after the elastic run" "$left"; fi
fi

if [[ ${ONLY:-spare} == spare ]]; then
ck=$WORK/ck-spare; mkdir -p "$ck"
printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --exclusive --no-kill --output=%s/spare.out\nsrun shoal launch -- shoal train --spare-nodes 1 --max-restarts 2 --nproc-per-node 1 --state-dir %s/state-spare -- python3 %s 120 %s 0.1 10\n' \
  "$WORK" "$WORK" "$WORK/ddp_requeue.py" "$ck" > "$WORK/spare.sbatch"
jid=$(sbatch --parsable "$WORK/spare.sbatch")
for _ in $(seq 900); do grep -q "STEP 30 " "$WORK/spare.out" 2>/dev/null && break; sleep 0.1; done
first=$(grep -o "2 ranks running (attempt 0): .*;" "$WORK/spare.out")
lost=$(grep -o "node[0-9]: rank 1" <<<"$first" | cut -d: -f1)
spare=$(for n in node1 node2 node3; do grep -q "$n" <<<"$first" || echo "$n"; done)
victim=$([[ -n $lost ]] && shoal_pids "$jid" "$lost" | head -1)
[[ -n $victim ]] && kill -9 "$victim"
for _ in $(seq 1800); do grep -q "FINAL" "$WORK/spare.out" 2>/dev/null && break; sleep 0.1; done
gone "$jid"
out=$(cat "$WORK/spare.out")
from=$(grep -o "RESUME rank=0 world=2 step=[1-9][0-9]*" <<<"$out" | sed 's/.*=//')
if [[ -n $victim && -n $spare && -n $from ]] && has "$out" "2 ranks running (attempt 1, 2 from warm spares): .*$spare: rank" \
   && has "$out" "1 standby rank(s) with warm spares on $spare," && has "$out" "1 standby rank(s) on $spare take the place of the ranks on $lost" \
   && [[ $(grep -c "RESUME rank=[01] world=2 step=$from from=$ck/step$from.pt" <<<"$out") == 2 ]] && has "$out" "FINAL steps=120 .* agree=True" \
   && ! has "$out" "instead of"; then
  ok "--spare-nodes 1: $lost (rank 1's node) lost, the gang goes on from step $from with $spare's warm standby rank in its place (both ranks from warm spares), world size 2, and ends with one process's weights ($(grep -o 'rel_diff=[^ ]*' <<<"$out"))"
else bad "spare node" "first: $first lost=$lost spare=$spare victim=$victim from=$from" "$out"; fi
if left=$(clean "$out" "$jid"); then ok "nothing of the spare-node job is left on any node"; else bad "leftovers after the spare-node run" "$left"; fi
fi
finish
