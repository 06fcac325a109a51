"""shoal.collective across actors of a real `shoal run` cluster: every collective, dtype and op
against a reference computed here, world sizes 1 to 4 (non-powers of two), sizes not divisible
by the world size, and a rank killed in the middle of a collective."""
import json
import os

import pytest

from conftest import ROOT, run_script

LIB = os.path.join(ROOT, "python", "shoal", "bin", "libshoalcoll.so")
pytestmark = pytest.mark.skipif(not os.path.exists(LIB), reason="libshoalcoll.so is not built (make build)")

RANKS = r'''
import json, sys, time
import numpy as np
import shoal
from shoal import collective as col

DTYPES = ["float16", "float32", "float64", "int32", "int64"]
try:
    import ml_dtypes  # numpy's bfloat16
    DTYPES.append(ml_dtypes.bfloat16)
except ImportError:
    pass
OPS = ["sum", "prod", "min", "max", "avg"]

def data(rank, count, dtype, salt=0):
    rng = np.random.default_rng(1000 * salt + rank)
    return rng.choice(np.array([-2, -1, 1, 2]), size=count).astype(dtype)

@shoal.remote(num_cpus=0)
class Rank:
    def check(self, rank, n, counts):
        col.init_group(n, rank, group_name="t", timeout=60)
        out = []
        for count in counts:
            for dt in DTYPES:
                for op in OPS:
                    a = data(rank, count, dt)
                    col.allreduce(a, group_name="t", op=op)
                    out.append(("allreduce", count, dt, op, a.astype(np.float64).tolist()))
                    inp = data(rank, count * n, dt, salt=1)
                    o = np.empty(count, dtype=dt)
                    col.reducescatter(o, inp.reshape(n, count), group_name="t", op=op)
                    out.append(("reducescatter", count, dt, op, o.astype(np.float64).tolist()))
                g = np.empty((n, count), dtype=dt)
                col.allgather(g, data(rank, count, dt), group_name="t")
                out.append(("allgather", count, dt, "", g.astype(np.float64).tolist()))
                b = data(rank, count, dt) if rank == n - 1 else np.zeros(count, dtype=dt)
                col.broadcast(b, src_rank=n - 1, group_name="t")
                out.append(("broadcast", count, dt, "", b.astype(np.float64).tolist()))
        col.barrier(group_name="t")
        if n > 1:
            m = np.arange(1001, dtype=np.int64) * (rank + 1)
            r = np.empty_like(m)
            if rank % 2 == 0:
                col.send(m, (rank + 1) % n, group_name="t")
                col.recv(r, (rank - 1) % n, group_name="t")
            else:
                col.recv(r, (rank - 1) % n, group_name="t")
                col.send(m, (rank + 1) % n, group_name="t")
            out.append(("sendrecv", 1001, "int64", "", r.tolist()))
        col.destroy_group("t")
        return out

def reference(kind, n, rank, count, dt, op):
    if kind == "allreduce":
        xs = [data(r, count, dt) for r in range(n)]
    elif kind == "reducescatter":
        xs = [data(r, count * n, dt, salt=1)[rank * count:(rank + 1) * count] for r in range(n)]
    elif kind == "allgather":
        return np.stack([data(r, count, dt) for r in range(n)]).astype(np.float64).tolist()
    elif kind == "broadcast":
        return data(n - 1, count, dt).astype(np.float64).tolist()
    else:
        return (np.arange(1001, dtype=np.int64) * ((rank - 1) % n + 1)).tolist()
    acc = xs[0].copy()
    for x in xs[1:]:
        if op in ("sum", "avg"):
            acc = acc + x
        elif op == "prod":
            acc = acc * x
        elif op == "min":
            acc = np.minimum(acc, x)
        else:
            acc = np.maximum(acc, x)
    if op == "avg":
        if np.issubdtype(np.dtype(dt), np.integer):
            acc = (np.trunc(acc.astype(np.float64) / n)).astype(dt)
        elif np.dtype(dt).itemsize == 2:  # float16, bfloat16: divided in float32, rounded once
            acc = (acc.astype(np.float32) / np.float32(n)).astype(dt)
        else:
            acc = (acc / np.array(n, dtype=dt)).astype(dt)
    return acc.astype(np.float64).tolist()

shoal.init()
bad = []
for n in (1, 2, 3, 4):
    ranks = [Rank.remote() for _ in range(n)]
    counts = [1, 7, 20001]
    res = shoal.get([r.check.remote(i, n, counts) for i, r in enumerate(ranks)], timeout=300)
    checked = 0
    for rank, rows in enumerate(res):
        for kind, count, dt, op, got in rows:
            want = reference(kind, n, rank, count, dt, op)
            checked += 1
            if got != want:
                bad.append(f"{kind} {dt} {op} count={count} world={n} rank={rank}")
    print(json.dumps({"world": n, "checked": checked, "dtypes": sorted({str(np.dtype(d)) for d in DTYPES})}))
    for r in ranks:
        shoal.kill(r)
print(json.dumps({"bad": bad}))
'''


def test_every_collective_dtype_and_op_across_actors():
    p = run_script(RANKS, "--num-cpus", "4", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    worlds = {x["world"]: x["checked"] for x in lines if "world" in x}
    assert sorted(worlds) == [1, 2, 3, 4], p.stdout
    assert all(v > 0 for v in worlds.values())
    assert lines[-1]["bad"] == [], lines[-1]["bad"][:20]
    try:
        import ml_dtypes  # noqa: F401
        assert "bfloat16" in lines[0]["dtypes"], lines[0]
    except ImportError:
        pass


KILL = r'''
import json, os, time
import numpy as np
import shoal
from shoal import collective as col

@shoal.remote(num_cpus=0)
class Rank:
    def loop(self, rank, n):
        col.init_group(n, rank, group_name="k", timeout=20)
        a = np.ones(1 << 20, dtype=np.float32)
        t0 = time.time()
        try:
            while True:
                col.allreduce(a, group_name="k")
        except col.CollectiveError as e:
            return {"error": str(e), "seconds": time.time() - t0}
    def pid(self):
        return os.getpid()

n = 3
ranks = [Rank.remote() for _ in range(n)]
pids = shoal.get([r.pid.remote() for r in ranks])
refs = [r.loop.remote(i, n) for i, r in enumerate(ranks)]
time.sleep(2)
shoal.kill(ranks[1])
out = shoal.get([refs[0], refs[2]], timeout=120)
print(os.environ["SHOAL_CLUSTER_ID"])
print(json.dumps(out))
'''


def test_a_killed_rank_fails_the_others():
    p = run_script(KILL, "--num-cpus", "4", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for r in out:
        assert "aborted" in r["error"], r
    cluster = p.stdout.strip().splitlines()[-2]  # its ring files only: other tests may run beside it (pytest -n)
    leftovers = [f for f in os.listdir("/dev/shm") if f.startswith(f"shoal-{cluster}-ring-")]
    assert len(cluster) == 12 and leftovers == [], (cluster, leftovers)


def test_init_group_outside_a_cluster_says_what_to_do():
    p = run_script("print('x')")  # the cluster is fine; the check below runs without one
    assert p.returncode == 0
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env["PYTHONPATH"] = os.path.join(ROOT, "python")
    q = subprocess.run([sys.executable, "-c", "from shoal import collective as c; c.init_group(2, 0)"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert q.returncode != 0
    assert "SHOAL_ADDRESS" in q.stderr
