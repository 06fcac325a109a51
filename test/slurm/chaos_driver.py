"""The driver of one chaos run (scripts/chaos.sh): real work whose results it checks itself.

Work, each part checked against a value computed here, never taken from the cluster:
  - a placement group of 3 bundles (SPREAD), held for the whole run;
  - a fan-out of tasks with retries (sum of squares), some in the group's bundles;
  - actors with restarts whose state (a set of applied increments) survives a restart through a
    checkpoint file: after the run each actor holds exactly the increments sent to it;
  - objects of many sizes (0 B .. 24 MiB) put here and hashed by tasks on other nodes, and made by
    tasks on other nodes and hashed here; an object whose only copy was on a node lost since is
    the documented ObjectLostError (shoal does not reconstruct it), and the part is made again;
  - with CHAOS_STORE_FULL=1: objects put until the store refuses one with ObjectStoreFullError
    (the documented error), then freed, and the work above goes on;
  - with CHAOS_MEMHOG=1: a task that allocates past its memory= request fails with
    OutOfMemoryError naming it, after its retries, while the rest finishes;
  - a training gang (shoal.train.run, the Python form of a `shoal train` gang; CHAOS_GANG=0
    leaves it out): 3 workers, SPREAD, data-parallel SGD on a least-squares problem with the
    gradient summed over shoal.collective, rank 0 reporting a checkpoint every 25 of its 150 steps, and
    max_failures=4: a worker killed or its node lost restarts the gang from its last checkpoint.
    It runs alongside the rounds (a thread), so the faults reach it; its final weights must equal
    those of the same steps in one process here (relative difference under 1e-9);
  - with CHAOS_FOREVER=1 (scancel, time limit): the work repeats until the job is ended.
The chaos harness injects its faults from outside and writes pids of workers and actors'
processes under CHAOS_DIR/pids so it can pick its victims. Output lines the harness reads:
  CLUSTER <id>, CHECK <part> ok|WRONG <detail>, EXPECTED <ErrorClass> <detail>,
  GANG <attempts, restarts, checkpoint resumed from>,
  ERROR <ErrorClass>: <message> (an undocumented failure), DONE ok|wrong.
"""
import hashlib
import os
import random
import sys
import threading
import time

import shoal
from shoal.util.placement_group import placement_group, remove_placement_group
from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy

W = os.environ["CHAOS_DIR"]
SEED = int(os.environ.get("CHAOS_SEED", "1"))
TIMEOUT = float(os.environ.get("CHAOS_GET_TIMEOUT", "120"))
rng = random.Random(SEED)
wrong = []


def say(*a):
    print(*a, flush=True)


def check(part, good, detail=""):
    if good:
        say("CHECK", part, "ok")
    else:
        wrong.append(part)
        say("CHECK", part, "WRONG", detail)


def mark(kind):
    d = os.path.join(W, "pids")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, f"{kind}.{os.environ.get('SHOAL_NODE_ID', '?')}.{os.getpid()}"), "w").close()


def blob(n, salt):
    r = random.Random(f"{SEED}-{salt}-{n}")
    return r.randbytes(n)


@shoal.remote(num_cpus=0.25, max_retries=-1)
def square(i, pause):
    mark("task")
    time.sleep(pause)
    return i * i


@shoal.remote(num_cpus=0.25, max_retries=-1)
def digest(b):
    mark("task")
    return len(b), hashlib.sha256(b).hexdigest()


@shoal.remote(num_cpus=0.25, max_retries=-1)
def make(n, salt):
    mark("task")
    return blob(n, salt)


@shoal.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Counter:
    """Applies increments once each; its state survives restarts through a checkpoint file."""

    def __init__(self, name):
        mark("actor")
        self.path = os.path.join(W, f"ckpt.{name}")
        self.applied = set()
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.applied = {int(x) for x in f.read().split()}
        self.incarnation = len([p for p in os.listdir(W) if p.startswith(f"life.{name}.")])
        open(os.path.join(W, f"life.{name}.{os.getpid()}"), "w").close()

    def add(self, seq):
        if seq not in self.applied:
            self.applied.add(seq)
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.write(" ".join(map(str, sorted(self.applied))))
            os.replace(tmp, self.path)
        time.sleep(0.02)
        return seq

    def state(self):
        return sorted(self.applied), self.incarnation


def fanout(pg, n, round_):
    refs = []
    for i in range(n):
        opts = {}
        if i % 3 == 0:
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i % 9 // 3)
        refs.append(square.options(**opts).remote(i, rng.uniform(0, 0.3)))
    got = shoal.get(refs, timeout=TIMEOUT)
    want = [i * i for i in range(n)]
    check(f"tasks.{round_}", got == want, f"{n} squares: {sum(a != b for a, b in zip(got, want))} differ")


@shoal.remote(max_retries=-1)
def leaf(i):
    mark("task")
    return i * 3


@shoal.remote(num_cpus=0.25, max_retries=-1)
def nest(k):
    # one-CPU plain tasks submitted on this node: its agent runs them (member-local scheduling)
    return sum(shoal.get([leaf.remote(i) for i in range(k)], timeout=TIMEOUT))


def nested(pg, round_):
    k = 8
    refs = [nest.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b)).remote(k)
            for b in range(3)]
    got = shoal.get(refs, timeout=TIMEOUT)
    want = 3 * sum(range(k))
    check(f"nested.{round_}", got == [want] * 3, f"sums {got}, want {want} each")


def actors(round_):
    """Three actors (max_restarts=-1, max_task_retries=-1) get increments; each must end holding
    exactly the increments sent to it (they are idempotent: a call run again after a restart
    adds nothing twice). A call that fails anyway is sent again by hand and counted wrong."""
    names = [f"c{round_}.{k}" for k in range(3)]
    cs = [Counter.options(name=f"chaos-{nm}").remote(nm) for nm in names]
    sent = {nm: list(range(rng.randint(20, 40))) for nm in names}
    pending = [(c, s) for c, nm in zip(cs, names) for s in sent[nm]]
    resent = 0
    for attempt in range(30):
        refs = [c.add.remote(s) for c, s in pending]
        failed = []
        for (c, s), r in zip(pending, refs):
            try:
                shoal.get(r, timeout=TIMEOUT)
            except shoal.exceptions.RayActorError:
                failed.append((c, s))
        if not failed:
            break
        resent += len(failed)
        pending = failed
        time.sleep(0.2)
    else:
        check(f"actors.{round_}", False, f"{len(pending)} calls still failing after 30 tries")
    # max_task_retries=-1: a call in flight when its actor's process died runs again on the
    # restarted instance; none should have failed
    check(f"actor_calls_retried.{round_}", resent == 0, f"{resent} calls failed with RayActorError and were sent again by hand")
    for c, nm in zip(cs, names):
        applied, inc = shoal.get(c.state.remote(), timeout=TIMEOUT)
        check(f"actor.{nm}", applied == sent[nm], f"applied {len(applied)} of {len(sent[nm])} (incarnation {inc})")
        say("ACTOR", nm, "incarnations", inc + 1)
    for c in cs:
        shoal.kill(c)


SIZES = [0, 1, 1000, 100 << 10, 1 << 20, 5 << 20, 24 << 20]


def lost_with_its_node(e):
    """Whether e is the documented loss of an object whose only copy was on a node lost since:
    an ObjectLostError (or a task's error caused by one) that names a lost node's address."""
    cause = e if isinstance(e, shoal.exceptions.ObjectLostError) else getattr(e, "cause", None)
    if not isinstance(cause, shoal.exceptions.ObjectLostError):
        return False
    msg = str(e)
    return any(f"tcp:{n['NodeManagerAddress']}:" in msg for n in shoal.nodes() if not n["Alive"])


def objects(pg, round_):
    for attempt in range(3):
        try:
            objects_once(pg, round_)
            if attempt:
                say("OBJECTS made again", attempt, "time(s)")
            return
        except shoal.exceptions.RayError as e:
            if not lost_with_its_node(e):
                raise
            say("EXPECTED ObjectLostError (its only copy was on a node lost since):",
                str(e).replace("\n", " | ")[:200])
    check(f"objects.{round_}", False, "3 attempts lost objects with their nodes")


def objects_once(pg, round_):
    sizes = rng.sample(SIZES, 5)
    puts = [shoal.put(blob(n, f"put{round_}")) for n in sizes]
    strat = [PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b % 3) for b in range(len(sizes))]
    got = shoal.get([digest.options(scheduling_strategy=s).remote(r) for s, r in zip(strat, puts)], timeout=TIMEOUT)
    want = [(n, hashlib.sha256(blob(n, f"put{round_}")).hexdigest()) for n in sizes]
    check(f"objects.put.{round_}", got == want, f"sizes {sizes}")
    made = shoal.get([make.options(scheduling_strategy=s).remote(n, f"make{round_}") for s, n in zip(strat, sizes)],
                     timeout=TIMEOUT)
    check(f"objects.made.{round_}", [hashlib.sha256(b).hexdigest() for b in made] ==
          [hashlib.sha256(blob(n, f"make{round_}")).hexdigest() for n in sizes], f"sizes {sizes}")


def store_full():
    """A 64 MiB store: 160 MiB of puts spill to disk and read back whole; with a full spill
    disk as well (CHAOS_SPILL_FULL), a put fails with ObjectStoreFullError."""
    held = []
    limit = 40 if os.environ.get("CHAOS_SPILL_FULL") == "1" else 20
    try:
        for k in range(limit):
            held.append(shoal.put(blob(8 << 20, f"full{k}")))
    except shoal.exceptions.ObjectStoreFullError as e:
        say("EXPECTED ObjectStoreFullError after", len(held) * 8, "MiB:", str(e).splitlines()[0][:200])
        return
    if os.environ.get("CHAOS_SPILL_FULL") == "1":
        check("store_full", False, f"{len(held) * 8} MiB put into a 64 MiB store and a 48 MiB spill disk")
        return
    back = shoal.get(held, timeout=TIMEOUT)
    check("store_full", all(b == blob(8 << 20, f"full{k}") for k, b in enumerate(back)),
          f"{len(held)} objects of 8 MiB spilled and read back")
    del back, held


@shoal.remote(num_cpus=0.25, memory=64 << 20, max_retries=1)
def hog():
    mark("task")
    b = bytearray(512 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    time.sleep(5)
    return len(b)


def memhog():
    t0 = time.time()
    try:
        shoal.get(hog.remote(), timeout=TIMEOUT)
        check("memhog", False, "a task that used 512 MiB over its 64 MiB finished")
    except shoal.exceptions.OutOfMemoryError as e:
        msg = str(e)
        check("memhog", "hog" in msg, f"OutOfMemoryError does not name the task: {msg[:300]}")
        say("EXPECTED OutOfMemoryError after", round(time.time() - t0, 1), "s:", msg.splitlines()[0][:200])


@shoal.remote(num_cpus=0, max_restarts=0)
class Rank:
    """A rank of a collective group (CHAOS_COLLECTIVE=1)."""

    def run(self, rank, n, name, k):
        import numpy as np
        from shoal import collective as col
        mark("actor")
        col.init_group(n, rank, group_name=name, timeout=20)
        try:
            a = np.full(k, rank + 1, dtype=np.float64)
            for _ in range(3):
                col.allreduce(a, group_name=name)
                a /= n * (n + 1) / 2
            b = np.arange(k, dtype=np.int64) if rank == 0 else np.zeros(k, dtype=np.int64)
            col.broadcast(b, src_rank=0, group_name=name)
            col.barrier(group_name=name)
            return float(a.sum()), int(b.sum())
        finally:
            col.destroy_group(name)


def collective(pg, round_):
    """Three ranks, one in each bundle of the group: allreduce and broadcast, results checked. A
    rank's death fails the group (CollectiveError in the others, RayActorError for the dead one's
    call); the round is then made again with a new group, as shoal.train restarts a gang."""
    from shoal import collective as col
    n, k = 3, 1 << 18
    for attempt in range(5):
        rs = [Rank.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b)).remote()
              for b in range(n)]
        name = f"chaos-{round_}-{attempt}"
        try:
            got = shoal.get([r.run.remote(i, n, name, k) for i, r in enumerate(rs)], timeout=TIMEOUT)
            # the same arithmetic here, on one element (every element is the same; all exact)
            v = [float(r + 1) for r in range(n)]
            for _ in range(3):
                v = [sum(v) / (n * (n + 1) / 2)] * n
            want = float(k) * v[0]
            check(f"collective.{round_}", all(g == (want, k * (k - 1) // 2) for g in got), f"{got} want {want}")
            if attempt:
                say("COLLECTIVE made again", attempt, "time(s)")
            return
        except (col.CollectiveError, shoal.exceptions.RayTaskError, shoal.exceptions.RayActorError) as e:
            say("COLLECTIVE failed, made again:", type(e).__name__, str(e).splitlines()[0][:160])
        finally:
            for r in rs:
                shoal.kill(r)
    check(f"collective.{round_}", False, "5 attempts failed")


# the training gang (CHAOS_GANG): least squares by full-batch gradient descent, the batch
# sharded over the ranks, the gradient summed with shoal.collective's allreduce
GANG = {"workers": 3, "n": 240, "d": 6, "lr": 0.02, "steps": 150, "every": 25, "step_time": 0.04}


def gang_data():
    r = random.Random(f"{SEED}-gang")
    import numpy as np
    x = np.array([[r.gauss(0, 1) for _ in range(GANG["d"])] for _ in range(GANG["n"])])
    w = np.array([r.gauss(0, 1) for _ in range(GANG["d"])])
    y = x @ w + np.array([r.gauss(0, 0.1) for _ in range(GANG["n"])])
    return x, y


def gang_step(w, x, y, n):
    """The gradient of the mean squared error over n samples, from this shard (x, y)."""
    return x.T @ (x @ w - y) * (2.0 / n)


def gang_fn(cfg):
    import numpy as np
    import shoal.train as st
    from shoal import collective as col
    mark("actor")
    ctx = st.get_context()
    k, r = ctx.world_size, ctx.world_rank
    x, y = gang_data()
    per = GANG["n"] // k
    xs, ys = x[r * per:(r + 1) * per], y[r * per:(r + 1) * per]
    start, w = 0, np.zeros(GANG["d"])
    ck = st.get_checkpoint()
    if ck:
        with np.load(ck) as z:
            start, w = int(z["step"]), z["w"].copy()
    group = st.init_collective(timeout=20)
    try:
        for step in range(start, GANG["steps"]):
            g = gang_step(w, xs, ys, GANG["n"])
            col.allreduce(g, group_name=group)
            w = w - GANG["lr"] * g
            time.sleep(GANG["step_time"])
            if r == 0 and (step + 1) % GANG["every"] == 0 and step + 1 < GANG["steps"]:
                path = os.path.join(cfg["dir"], f"ck-{ctx.attempt}-{step + 1}.npz")
                np.savez(path + ".tmp.npz", step=step + 1, w=w)
                os.replace(path + ".tmp.npz", path)
                st.report({"step": step + 1}, checkpoint=path)
    finally:
        col.destroy_group(group)
    return w.tolist(), ctx.attempt, start


def gang():
    """The gang under the run's faults; its weights are checked against one process's."""
    import numpy as np
    import shoal.train as st
    d = os.path.join(W, "gang")
    os.makedirs(d, exist_ok=True)
    t0 = time.time()
    got = st.run(gang_fn, num_workers=GANG["workers"], resources_per_worker={"CPU": 0.1}, placement_strategy="SPREAD",
                 max_failures=4, config={"dir": d}, stop_grace=1.0)
    x, y = gang_data()
    w = np.zeros(GANG["d"])
    for _ in range(GANG["steps"]):
        w = w - GANG["lr"] * gang_step(w, x, y, GANG["n"])
    attempt, start = got[0][1], got[0][2]
    diff = max(float(np.max(np.abs(np.array(g[0]) - w)) / float(np.max(np.abs(w)))) for g in got)
    say("GANG attempts", attempt + 1, "restarts", attempt, "last attempt from step", start, "of", GANG["steps"],
        f"in {time.time() - t0:.1f} s; rel_diff {diff:.2e}")
    check("gang", diff < 1e-9 and all(g[1] == attempt for g in got),
          f"weights differ from one process's by {diff:.2e} (relative), attempts {[g[1] for g in got]}")


def gang_thread():
    """gang() in a thread; the thread's RayError (TrainingFailedError: no restart left) is
    raised again in main."""
    box = {}

    def body():
        try:
            gang()
        except BaseException as e:  # noqa: BLE001 - handed to main
            box["error"] = e

    t = threading.Thread(target=body, name="gang", daemon=True)
    t.start()

    def join():
        t.join()
        if "error" in box:
            raise box["error"]
    return join


def main():
    shoal.init()
    say("CLUSTER", os.environ["SHOAL_CLUSTER_ID"])
    pg = placement_group([{"CPU": 0.5}] * 3, strategy="SPREAD")
    shoal.get(pg.ready(), timeout=TIMEOUT)
    say("STARTED")
    rounds = 10**9 if os.environ.get("CHAOS_FOREVER") == "1" else int(os.environ.get("CHAOS_ROUNDS", "4"))
    join_gang = gang_thread() if os.environ.get("CHAOS_GANG", "1") == "1" else None
    for r in range(rounds):
        if os.environ.get("CHAOS_STORE_FULL") == "1" and r == 0:
            store_full()
        if os.environ.get("CHAOS_MEMHOG") == "1" and r == 0:
            memhog()
        fanout(pg, 60, r)
        if os.environ.get("CHAOS_NESTED", "1") == "1":
            nested(pg, r)
        actors(r)
        objects(pg, r)
        if os.environ.get("CHAOS_COLLECTIVE") == "1":
            collective(pg, r)
        say("ROUND", r, "done")
    if join_gang:
        join_gang()
    remove_placement_group(pg)
    say("DONE", "wrong" if wrong else "ok")
    return 3 if wrong else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except shoal.exceptions.RayError as e:
        say(f"ERROR {type(e).__name__}: " + str(e).replace("\n", " | ")[:600])
        sys.exit(2)
