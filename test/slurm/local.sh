#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# Member-local scheduling on the real 3-node Slurm cluster (docs/architecture.md "Member-local
# scheduling"), as a user sees it: tasks that a member node's workers submit run there without
# the head node's agent on their path. With that agent stopped (SIGSTOP) for 1.5 s, a loop of
# submit-and-get on a member goes on, and on the head node it waits; a worker that dies is run
# again there (max_retries) or fails the task; errors, cancel (queued, running, force), large
# values in the member's store, and references that leave the submitter all behave as through
# the head; a queue that built up on a member while the other nodes were busy moves to them
# when they free up. Then the same program with --no-local-tasks: nothing goes on while the head is
# stopped. Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-local.XXXXXX)
chmod 755 "$WORK"
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

cat > "$WORK/local.py" <<'PY'
import os, signal, sys, time
import shoal as ray
from shoal.util.placement_group import placement_group
from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init()
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
ray.get(pg.ready(), timeout=60)
head_pid = os.getppid()  # the head node's agent (shoal launch) runs this driver
only_stop = len(sys.argv) > 1


def on(b):
    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b)


@ray.remote
def leaf(i, nap=0.0):
    if nap:
        time.sleep(nap)
    return os.environ["SHOAL_NODE_ID"], i, time.time()


@ray.remote(num_cpus=1)
def fan(k):
    res = ray.get([leaf.remote(i) for i in range(k)])
    return os.environ["SHOAL_NODE_ID"], sum(r[1] for r in res)


if not only_stop:
    out = ray.get([fan.options(scheduling_strategy=on(b)).remote(2000) for b in range(3)], timeout=120)
    print("FAN", sorted(out))


# one task at a time, as a loop of submit and get does, while the head node's agent is stopped
@ray.remote(num_cpus=1)
def loop(n):
    return [ray.get(leaf.remote(i, 0.005)) for i in range(n)]


refs = [loop.options(scheduling_strategy=on(b)).remote(400) for b in range(3)]
time.sleep(1.0)
t0 = time.time()
os.kill(head_pid, signal.SIGSTOP)
time.sleep(1.5)
t1 = time.time()
os.kill(head_pid, signal.SIGCONT)
for r in ray.get(refs, timeout=120):
    print("STOPPED", r[0][0], len(r), sum(i for _, i, _ in r), "during", sum(1 for _, _, t in r if t0 + 0.1 < t < t1 - 0.1))
if only_stop:
    sys.exit(0)


@ray.remote(max_retries=1)
def die_once(path):
    if path and not os.path.exists(path):
        open(path, "w").close()
        os._exit(1)
    return "again"


@ray.remote(max_retries=0)
def die(really):
    if really:
        os._exit(1)


@ray.remote
def boom(really):
    if really:
        raise ValueError("boom-marker")


@ray.remote(num_cpus=1)
def failures(path):
    ray.get([die_once.remote(""), die.remote(False), boom.remote(False)])  # the code is at the member now
    out = [ray.get(die_once.remote(path))]
    try:
        ray.get(die.remote(True))
        out.append("none")
    except ray.exceptions.WorkerCrashedError:
        out.append("crashed")
    try:
        ray.get(boom.remote(True))
        out.append("none")
    except ValueError as e:
        out.append("raised " + str(e).splitlines()[-1])
    return out


print("FAILURES", ray.get(failures.options(scheduling_strategy=on(1)).remote(f"/tmp/shoal-local-die.{os.getpid()}"), timeout=120))
os.unlink(f"/tmp/shoal-local-die.{os.getpid()}")


@ray.remote
def nap(s):
    time.sleep(s)
    return "slept"


@ray.remote
def nap2(s):  # a function of its own: nap's mean time here (the cancelled 60 s naps) would send it to the head
    time.sleep(s)
    return "slept"


@ray.remote(num_cpus=1)
def cancels():
    ray.get(nap.remote(0))
    out = []
    for force in (False, True):
        r = nap.remote(60)
        time.sleep(1.5)
        t = time.time()
        ray.cancel(r, force=force)
        try:
            ray.get(r, timeout=30)
            out.append("none")
        except ray.exceptions.TaskCancelledError:
            out.append(f"running force={force} {time.time() - t < 10}")
    # a queued one: more than this node's CPUs of naps, the last cancelled before it starts
    rs = [nap2.remote(2) for _ in range(3)]
    ray.cancel(rs[-1])
    try:
        ray.get(rs[-1], timeout=30)
        out.append("none")
    except ray.exceptions.TaskCancelledError:
        out.append("queued " + str(ray.get(rs[:-1])))
    return out


print("CANCEL", ray.get(cancels.options(scheduling_strategy=on(2)).remote(), timeout=120))


@ray.remote
def big(i):
    return bytes([i]) * (1 << 20)


@ray.remote(num_cpus=1)
def bigs():
    refs = [big.remote(i) for i in range(8)]
    return [len(v) for v in ray.get(refs)], refs, [leaf.remote(i) for i in range(5)]


lens, brefs, lrefs = ray.get(bigs.options(scheduling_strategy=on(1)).remote(), timeout=120)
print("BIG", lens, [ray.get(r)[0] for r in brefs], sum(r[1] for r in ray.get(lrefs)))

# a threaded actor on a member whose threads each submit and get tasks at the same time: they
# share the worker's one connection to its node's agent (one thread reads it at a time)
@ray.remote(num_cpus=1, max_concurrency=4)
class Threads:
    def run(self, k, nap):
        return sum(r[1] for r in ray.get([leaf.remote(i, nap) for i in range(k)])), os.environ["SHOAL_NODE_ID"]

    def loop(self, k):
        return sum(ray.get(leaf.remote(i))[1] for i in range(k))


th = Threads.options(scheduling_strategy=on(1)).remote()
out = ray.get([th.run.remote(50, 0.01) for _ in range(3)] + [th.loop.remote(50)], timeout=120)
print("THREADS", out[:3], out[3])
ray.kill(th)

# a queue that built up on node2 while the other nodes' free CPUs were taken: when they free up,
# its member hands its tail back to the head, which runs it there
from shoal.util.scheduling_strategies import NodeAffinitySchedulingStrategy as NA


@ray.remote(num_cpus=1)
def hold(s):
    time.sleep(s)


@ray.remote
def step(i):
    time.sleep(0.25)
    return os.environ["SHOAL_NODE_ID"]


@ray.remote(num_cpus=1)
def backlog(n):
    time.sleep(0.5)
    ray.get(step.remote(-1))  # its time is known here from now on
    return [ray.get(r) for r in [step.remote(i) for i in range(n)]]


holds = [hold.options(scheduling_strategy=NA(n)).remote(2.5) for n in ("node1", "node3")]
where = ray.get(backlog.options(scheduling_strategy=on(1)).remote(12), timeout=120)
ray.get(holds)
print("BACKLOG", len(where), "on node2", where.count("node2"), "elsewhere", len(where) - where.count("node2"))
PY

run() { # NAME LAUNCH_ARGS SCRIPT_ARGS
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 -c 2 --output=%s/%s.out\nsrun shoal launch %s -- python3 %s/local.py %s\n' \
    "$WORK" "$1" "$2" "$WORK" "$3" > "$WORK/$1.sbatch"
  (cd "$ROOT/examples/slurm" && timeout 240 sbatch --wait "$WORK/$1.sbatch" >/dev/null 2>&1)
}
run local "" ""; rc=$?
out=$(cat "$WORK/local.out" 2>/dev/null)

if [[ $rc == 0 ]] && has "$out" "FAN \[('node1', 1999000), ('node2', 1999000), ('node3', 1999000)\]"; then
  ok "tasks on each node that submit 2000 tasks and get them finish with the right values"
else bad "fan-out from each node" "rc=$rc" "$out"; fi
if grep -Eq "^STOPPED node2 400 79800 during [1-9]" <<<"$out" && grep -Eq "^STOPPED node3 400 79800 during [1-9]" <<<"$out" \
  && has "$out" "STOPPED node1 400 79800 during 0"; then
  ok "with the head node's agent stopped, tasks submitted on member nodes go on (on the head node they wait)"
else bad "member-local tasks while the head is stopped" "$out"; fi
if has "$out" "FAILURES \['again', 'crashed', 'raised ValueError: boom-marker'\]" \
  && has "$out" "shoal.member.local: retrying a task: its worker exited: task=die_once attempt=1"; then
  ok "a member runs a task again when its worker dies (max_retries=1), else WorkerCrashedError; errors propagate"
else bad "failures of member-local tasks" "$out"; fi
if has "$out" "CANCEL \['running force=False True', 'running force=True True', \"queued \['slept', 'slept'\]\"\]"; then
  ok "cancel() of a task a member runs: running (interrupted, or force=True) and queued"
else bad "cancel of member-local tasks" "$out"; fi
if has "$out" "BIG \[1048576, 1048576, 1048576, 1048576, 1048576, 1048576, 1048576, 1048576\] \[0, 1, 2, 3, 4, 5, 6, 7\] 10"; then
  ok "1 MiB values stay in the member's store; their refs and others returned to the driver resolve"
else bad "large values and refs that leave the submitter" "$out"; fi
if has "$out" "THREADS \[(1225, 'node2'), (1225, 'node2'), (1225, 'node2')\] 1225"; then
  ok "the threads of a threaded actor on a member submit and get tasks at the same time, with the right values"
else bad "a threaded actor's concurrent gets on a member" "$(grep THREADS <<<"$out")"; fi
if grep -Eq "^BACKLOG 12 on node2 [0-9]+ elsewhere [1-9]" <<<"$out"; then
  ok "tasks queued on a member while the other nodes were busy move to them when they free up ($(grep -o 'elsewhere [0-9]*' <<<"$out") of 12)"
else bad "a member's queue handed back to the head" "$(grep BACKLOG <<<"$out")"; fi
if has "$out" "tasks 7450 (5 failed, 1 retried)"; then
  ok "the job report counts the tasks members ran, their failures and retries"
else bad "job report of member-local tasks" "$(grep 'job report' <<<"$out")"; fi

run nolocal "--no-local-tasks" "stop-only"; rc=$?
out=$(cat "$WORK/nolocal.out" 2>/dev/null)
if [[ $rc == 0 ]] && has "$out" "STOPPED node2 400 79800 during 0" && has "$out" "STOPPED node3 400 79800 during 0"; then
  ok "--no-local-tasks: every task goes through the head node's agent (nothing runs while it is stopped)"
else bad "--no-local-tasks" "rc=$rc" "$out"; fi
finish
