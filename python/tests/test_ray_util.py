"""shoal.util's libraries as Ray documents them: ActorPool, queue.Queue, multiprocessing.Pool and
collective (ray.util.collective's API), on a one-node cluster started by init()."""
import asyncio
import itertools
import multiprocessing as std_mp
import os
import queue as std_queue
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT

LIB = os.path.join(ROOT, "python", "shoal", "bin", "libshoalcoll.so")


@pytest.fixture(scope="module")
def doubler(ray):
    @ray.remote
    class Doubler:
        def double(self, v, t=0):
            time.sleep(t)
            return 2 * v

        def pid(self):
            return os.getpid()
    made = []

    def make(n):
        actors = [Doubler.remote() for _ in range(n)]
        made.extend(actors)
        ray.get([a.double.remote(0) for a in actors])  # started, so that call times are the calls'
        return actors
    yield make
    for a in made:
        ray.kill(a)


# ---------------------------------------------------------------- ActorPool

def test_ray_util_names(ray):
    from shoal.util import ActorPool
    from shoal.util.collective import allreduce
    from shoal.util.multiprocessing import Pool
    from shoal.util.queue import Empty, Full, Queue
    # `import shoal as ray` code reaches them as attributes, as with ray.util
    assert ray.util.ActorPool is ActorPool and ray.util.queue.Queue is Queue
    assert ray.util.multiprocessing.Pool is Pool and ray.util.collective.allreduce is allreduce
    assert issubclass(Empty, std_queue.Empty) and issubclass(Full, std_queue.Full)


def test_actor_pool_map(ray, doubler):
    pool = ray.util.ActorPool(doubler(2))
    # the first values take longest: map keeps the input's order, map_unordered does not wait for it
    vals = [(4, 0.6), (3, 0.3), (2, 0), (1, 0)]
    assert list(pool.map(lambda a, v: a.double.remote(*v), vals)) == [8, 6, 4, 2]
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(*v), vals)) == [2, 4, 6, 8]
    assert list(pool.map(lambda a, v: a.double.remote(v), [])) == []
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_actor_pool_submit_queue_and_order(ray, doubler):
    pool = ray.util.ActorPool(doubler(2))
    for v in range(5):  # 2 run, 3 wait in the pool for an actor
        pool.submit(lambda a, v: a.double.remote(v, 0.05), v)
    assert not pool.has_free() and pool.pop_idle() is None
    assert [pool.get_next() for _ in range(5)] == [0, 2, 4, 6, 8]
    assert not pool.has_next() and pool.has_free()


def test_actor_pool_get_next_after_unordered(ray, doubler):
    pool = ray.util.ActorPool(doubler(2))
    pool.submit(lambda a, v: a.double.remote(v, 3.0), 1)
    pool.submit(lambda a, v: a.double.remote(v), 2)
    assert pool.get_next_unordered() == 4  # the fast one, submitted second
    with pytest.raises(ValueError, match="get_next_unordered"):
        pool.get_next()
    assert pool.get_next_unordered() == 2


def test_actor_pool_timeouts(ray, doubler):
    pool = ray.util.ActorPool(doubler(1))
    pool.submit(lambda a, v: a.double.remote(v, 1.5), 5)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0)
    assert pool.has_next() and pool.get_next(timeout=30) == 10
    pool.submit(lambda a, v: a.double.remote(v, 1.5), 6)
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next(timeout=0.1, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()  # the task was dropped, its actor given back


def test_actor_pool_push_pop(ray, doubler):
    a, b, c = doubler(3)
    pool = ray.util.ActorPool([a, b])
    idle = pool.pop_idle()
    assert idle in (a, b)
    assert list(pool.map(lambda x, v: x.double.remote(v), [1, 2])) == [2, 4]
    pool.push(c)
    pool.push(idle)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(c)
    pids = set(pool.map(lambda x, v: x.pid.remote(), range(12)))
    assert len(pids) >= 2
    pool.submit(lambda x, v: x.double.remote(v, 0.5), 1)
    for actor in (a, b, c):  # one busy, two idle: all belong to the pool
        with pytest.raises(ValueError, match="already belongs"):
            pool.push(actor)
    assert pool.get_next() == 2


def test_actor_pool_drops_a_dead_actor(ray, doubler):
    a, b = doubler(2)
    pool = ray.util.ActorPool([a, b])
    ray.kill(a)
    results, died = [], 0
    for v in range(4):
        pool.submit(lambda x, v: x.double.remote(v), v)
    while pool.has_next():
        try:
            results.append(pool.get_next_unordered())
        except ray.exceptions.RayActorError:
            died += 1
    # a's call failed and a left the pool; b ran the rest, including those queued after a died
    assert died == 1 and len(results) == 3
    assert pool.pop_idle() == b and pool.pop_idle() is None
    pool.push(b)
    pool.submit(lambda x, v: x.double.remote(v), None)  # 2 * None raises TypeError in b
    with pytest.raises(TypeError):
        pool.get_next()
    assert pool.has_free() and pool.pop_idle() == b  # a call that raised keeps its actor


# ---------------------------------------------------------------- Queue

def test_queue_basics(ray):
    from shoal.util.queue import Empty, Full, Queue
    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and q.qsize() == 0 and len(q) == 0
    for i in range(3):
        q.put(i)
    assert q.full() and q.size() == 3
    with pytest.raises(Full):
        q.put_nowait(9)
    with pytest.raises(Full):
        q.put(9, timeout=0.1)
    with pytest.raises(Full):
        q.put(9, block=False)
    with pytest.raises(ValueError, match="non-negative"):
        q.put(9, timeout=-1)
    assert [q.get(), q.get_nowait(), q.get(block=False)] == [0, 1, 2]
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.1)
    with pytest.raises(Empty):
        q.get(timeout=0)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    ref = ray.put("in the store")
    q.put(ref)  # a top-level ObjectRef is an argument of the actor's call: its value goes in, as in Ray
    assert q.get() == "in the store"
    q.put([ref])  # wrapped, the ref itself travels
    got = q.get()
    assert isinstance(got[0], ray.ObjectRef) and ray.get(got[0]) == "in the store"
    q.shutdown()


def test_queue_batches(ray):
    from shoal.util.queue import Empty, Full, Queue
    q = Queue(maxsize=4)
    q.put_nowait_batch((1, 2, 3))  # any iterable
    with pytest.raises(Full, match="Cannot add 2 items"):
        q.put_nowait_batch([4, 5])
    assert q.qsize() == 3  # all or nothing
    with pytest.raises(TypeError):
        q.put_nowait_batch(7)
    with pytest.raises(Empty, match="Cannot get 4 items"):
        q.get_nowait_batch(4)
    with pytest.raises(TypeError):
        q.get_nowait_batch("2")
    with pytest.raises(ValueError, match="nonnegative"):
        q.get_nowait_batch(-1)
    assert q.get_nowait_batch(0) == [] and q.get_nowait_batch(2) == [1, 2] and q.get_nowait_batch(1) == [3]
    q.shutdown()


def test_queue_across_tasks_blocking(ray):
    from shoal.util.queue import Queue

    @ray.remote
    def produce(q, base, n, pause):
        for i in range(n):
            time.sleep(pause)
            q.put(base + i)  # blocks while the queue is full
        return n

    @ray.remote
    def consume(q, n):
        return [q.get(timeout=60) for _ in range(n)]

    q = Queue(maxsize=2)
    a, b = produce.remote(q, 100, 10, 0), produce.remote(q, 200, 10, 0)
    got = [q.get(timeout=60) for _ in range(20)]
    assert ray.get([a, b]) == [10, 10]
    assert sorted(got) == list(range(100, 110)) + list(range(200, 210))
    assert [v for v in got if v < 200] == list(range(100, 110))  # each producer's order kept
    c = consume.remote(q, 3)  # a consumer blocked on an empty queue gets items put later
    time.sleep(0.3)
    for v in ("x", "y", "z"):
        q.put(v)
    assert ray.get(c) == ["x", "y", "z"]
    q.shutdown()


def test_queue_blocked_consumers_lend_their_cpus(ray):
    # more consumer tasks than CPUs wait on an empty queue; the producers still run, as in Ray:
    # each ask of a blocked Queue.get is a get, during which the agent lends the task's CPU
    from shoal.util.queue import Queue
    cpus = int(ray.cluster_resources()["CPU"])

    @ray.remote(num_cpus=1)
    def consume(q):
        return q.get(timeout=60)

    @ray.remote(num_cpus=1)
    def produce(q, v):
        q.put(v)
        return v
    q = Queue()
    consumers = [consume.remote(q) for _ in range(cpus + 1)]
    time.sleep(0.5)
    producers = [produce.remote(q, v) for v in range(cpus + 1)]
    assert sorted(ray.get(consumers, timeout=60)) == list(range(cpus + 1))
    assert sorted(ray.get(producers)) == list(range(cpus + 1))
    q.shutdown()


def test_queue_async(ray):
    from shoal.util.queue import Empty, Full, Queue
    q = Queue(maxsize=1)

    async def main():
        with pytest.raises(Empty):
            await q.get_async(timeout=0.1)
        with pytest.raises(Empty):
            await q.get_async(block=False)
        await q.put_async("a")
        with pytest.raises(Full):
            await q.put_async("b", block=False)
        with pytest.raises(Full):
            await q.put_async("b", timeout=0.1)

        async def later():
            await asyncio.sleep(0.2)
            return await q.get_async()
        # put_async waits for room while another coroutine frees it
        _, first = await asyncio.gather(q.put_async("b", timeout=30), later())
        peeked = await q.peek_async()
        return first, peeked, await q.get_async(timeout=30)
    assert asyncio.run(main()) == ("a", "b", "b")
    q.shutdown()


def test_queue_options_and_shutdown(ray):
    from shoal.util.queue import Empty, Queue
    q = Queue(actor_options={"name": "util-test-queue"})
    q.put(1)
    actor = ray.get_actor("util-test-queue")
    assert ray.get(actor.qsize.remote()) == 1
    q.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(2)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actor.qsize.remote(), timeout=30)
    q.shutdown()  # again: nothing happens
    assert q.actor is None
    with pytest.raises(TypeError):
        Queue(maxsize="3")
    with pytest.raises(ValueError):
        Queue(maxsize=-1)
    with pytest.raises(TypeError):
        Queue(actor_options=[1, 2])
    unbounded = Queue(maxsize=0)
    unbounded.put_nowait_batch(range(50))
    assert not unbounded.full() and unbounded.qsize() == 50
    assert unbounded.peek() == 0 and unbounded.qsize() == 50  # peek leaves the item
    unbounded.clear()
    assert unbounded.empty()
    with pytest.raises(Empty):
        unbounded.peek()
    unbounded.shutdown()


# ---------------------------------------------------------------- multiprocessing.Pool

def test_pool_map_family(ray):
    from shoal.util.multiprocessing import Pool

    def square(x):
        return x * x

    def add(a, b):
        return a + b
    with Pool(processes=2) as p:
        assert p.map(square, range(20)) == [x * x for x in range(20)]
        assert p.map(square, range(7), chunksize=3) == [x * x for x in range(7)]
        assert p.map(square, []) == []
        assert list(p.imap(square, range(10))) == [x * x for x in range(10)]
        assert sorted(p.imap_unordered(square, range(10), chunksize=3)) == sorted(x * x for x in range(10))
        endless = p.imap(square, itertools.count())  # read lazily, as in Ray
        assert [next(endless) for _ in range(25)] == [x * x for x in range(25)]
        assert p.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert p.starmap_async(add, [(5, 6)]).get(timeout=30) == [11]
        assert p.apply(add, (2, 3)) == 5 and p.apply(add, (2,), {"b": 9}) == 11
        r = p.apply_async(square, (9,))
        assert r.get(timeout=30) == 81 and r.ready() and r.successful()
        got = []
        m = p.map_async(square, range(4), callback=got.append)
        m.wait(30)
        assert m.get(timeout=30) == [0, 1, 4, 9] and got == [[0, 1, 4, 9]]
        with pytest.raises(ValueError):
            p.map(square, range(3), chunksize=0)
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(square, [1])


def test_pool_errors_and_timeouts(ray):
    from shoal.util.multiprocessing import Pool

    def inv(x):
        return 1 / x

    def slow(t):
        time.sleep(t)
        return t
    with Pool(2) as p:
        with pytest.raises(ZeroDivisionError):
            p.map(inv, [1, 0, 2])
        it = p.imap(inv, [1, 0, 4])
        assert next(it) == 1.0
        assert isinstance(next(it), ZeroDivisionError)  # as Ray's imap: the exception is the item
        assert next(it) == 0.25
        assert sum(isinstance(v, ZeroDivisionError) for v in p.imap_unordered(inv, [0, 1, 0], chunksize=2)) == 2
        errors = []
        r = p.apply_async(inv, (0,), error_callback=errors.append)
        with pytest.raises(ZeroDivisionError):
            r.get(timeout=30)
        assert not r.successful() and isinstance(errors[0], ZeroDivisionError)
        s = p.apply_async(slow, (1.5,))
        with pytest.raises(ValueError):
            s.successful()  # not ready yet
        with pytest.raises(std_mp.TimeoutError):
            s.get(timeout=0.1)
        with pytest.raises(std_mp.TimeoutError):
            p.imap(slow, [1.5]).next(timeout=0.1)
        assert s.get(timeout=30) == 1.5


def test_pool_lifecycle_and_options(ray):
    from shoal.util.multiprocessing import Pool

    def setup(v):
        os.environ["UTIL_TEST_POOL_INIT"] = v  # process state, seen by every later call

    def read(_):
        return os.environ.get("UTIL_TEST_POOL_INIT")

    def pid(_):
        return os.getpid()
    with pytest.raises(ValueError, match="only 4 CPUs"):
        Pool(processes=5)
    with pytest.raises(ValueError):
        Pool(processes=0)

    def broken():
        raise RuntimeError("initializer failed")
    with pytest.raises(ray.exceptions.RayActorError, match="initializer failed"):
        Pool(processes=2, initializer=broken)
    p = Pool(processes=2, initializer=setup, initargs=("ready",))
    assert p.map(read, range(4)) == ["ready"] * 4
    with pytest.raises(ValueError, match="still running"):
        p.join()
    r = p.map_async(lambda t: (time.sleep(t), t)[1], [0.3, 0.3])
    p.close()
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(read, (0,))
    p.join()  # waits for the map, then stops the actors
    assert r.get(timeout=30) == [0.3, 0.3]
    with Pool(processes=1, maxtasksperchild=1) as p1:
        pids = [p1.apply(pid, (i,)) for i in range(3)]
    assert len(set(pids)) == 3  # a new process after each call


def test_pool_nested_and_self_started(ray):
    from shoal.util.multiprocessing import Pool

    def inner(x):
        from shoal.util.multiprocessing import Pool as P
        with P(processes=2, ray_address="auto") as p:  # inside a pool's actor
            return p.map(lambda v: v * v, range(x))

    # the outer pool holds every CPU; the inner ones ask none, as Ray's pools, so they still run
    with Pool(processes=int(ray.cluster_resources()["CPU"])) as p:
        assert p.map_async(inner, [2, 3]).get(timeout=60) == [[0, 1], [0, 1, 4]]

    # a Pool in a process with no cluster starts one with `processes` CPUs, as Ray does
    code = ("from shoal.util.multiprocessing import Pool\n"
            "import shoal\n"
            "p = Pool(processes=2)\n"
            "print(int(shoal.cluster_resources()['CPU']), sorted(set(p.map(lambda _: __import__('os').getpid(), range(8)))).__len__())\n"
            "p.terminate()\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID")}
    env["PYTHONPATH"] = os.path.join(ROOT, "python")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "2"]


# ---------------------------------------------------------------- collective

needs_lib = pytest.mark.skipif(not os.path.exists(LIB), reason="libshoalcoll.so is not built (make build)")


@pytest.fixture(scope="module")
def member(ray):
    @ray.remote(num_cpus=0)
    class Member:
        def join(self, n, rank, group, backend="gloo"):
            from shoal.util import collective as col
            col.init_collective_group(n, rank, backend=backend, group_name=group)
            return col.get_rank(group), col.get_collective_group_size(group)

        def run(self, group, n):
            from shoal.util import collective as col
            rank = col.get_rank(group)
            out = {"rank_before": rank}
            ones = np.ones(5, dtype=np.float32)
            col.allreduce(ones, group_name=group)  # joins a declared group on first use
            out["ones"] = ones.tolist()
            rank = col.get_rank(group)
            out["rank"] = rank
            a = np.full(5, rank + 1.0, dtype=np.float32)
            col.allreduce(a, group_name=group, op=col.ReduceOp.SUM)
            out["sum"] = a.tolist()
            m = np.array([rank * 10 + 1], dtype=np.int64)
            col.allreduce(m, group_name=group, op=col.ReduceOp.MAX)
            out["max"] = int(m[0])
            r = np.full(3, rank + 1.0)
            col.reduce(r, dst_rank=0, group_name=group, op=col.ReduceOp.PRODUCT)
            out["reduce"] = r.tolist()
            b = np.arange(4, dtype=np.float64) if rank == n - 1 else np.zeros(4)
            col.broadcast(b, src_rank=n - 1, group_name=group)
            out["bcast"] = b.tolist()
            parts = [np.zeros(2, dtype=np.int32) for _ in range(n)]
            col.allgather(parts, np.array([rank, rank], dtype=np.int32), group_name=group)
            out["gather"] = [p.tolist() for p in parts]
            mine = np.zeros(2, dtype=np.float32)
            col.reducescatter(mine, [np.full(2, float(i), dtype=np.float32) for i in range(n)], group_name=group)
            out["scatter"] = mine.tolist()
            col.barrier(group_name=group)
            if n > 1:
                msg = np.zeros(3, dtype=np.int64)
                if rank == 0:
                    col.send(np.array([7, 8, 9], dtype=np.int64), 1, group_name=group)
                elif rank == 1:
                    col.recv(msg, 0, group_name=group)
                out["recv"] = msg.tolist()
                try:
                    col.send(msg, rank, group_name=group)
                except RuntimeError as e:
                    out["self_send"] = str(e)
            col.destroy_collective_group(group)
            out["after"] = (col.get_rank(group), col.is_group_initialized(group))
            return out

        def try_op(self, group):
            from shoal.util import collective as col
            try:
                col.allreduce(np.zeros(1), group_name=group)
            except Exception as e:  # noqa: BLE001
                return type(e).__name__, str(e)
            return None
    made = []

    def make(n):
        ms = [Member.remote() for _ in range(n)]
        made.extend(ms)
        return ms
    yield make
    for m in made:
        ray.kill(m)


def _check_run(outs, n):
    for rank, o in enumerate(outs):
        assert o["rank"] == rank and o["ones"] == [float(n)] * 5
        assert o["sum"] == [n * (n + 1) / 2] * 5
        assert o["max"] == (n - 1) * 10 + 1
        assert o["reduce"] == ([float(np.prod(range(1, n + 1)))] * 3 if rank == 0 else [rank + 1.0] * 3)
        assert o["bcast"] == [0.0, 1.0, 2.0, 3.0]
        assert o["gather"] == [[i, i] for i in range(n)]
        assert o["scatter"] == [float(rank * n)] * 2
        assert o["after"] == (-1, False)
    assert outs[1]["recv"] == [7, 8, 9] and "is self" in outs[0]["self_send"]


@needs_lib
def test_collective_init_in_members(ray, member):
    ms = member(3)
    assert ray.get([m.join.remote(3, i, "util-g1") for i, m in enumerate(ms)]) == [(0, 3), (1, 3), (2, 3)]
    _check_run(ray.get([m.run.remote("util-g1", 3) for m in ms]), 3)


@needs_lib
def test_collective_declared_by_driver(ray, member):
    from shoal.util import collective as col
    ms = member(2)
    col.create_collective_group(ms, 2, [1, 0], backend="gloo", group_name="util-g2")
    with pytest.raises(RuntimeError, match="twice"):
        col.create_collective_group(ms, 2, [0, 1], backend="gloo", group_name="util-g2")
    outs = ray.get([m.run.remote("util-g2", 2) for m in ms])
    assert outs[0]["rank_before"] == -1  # not joined until its first collective call, as in Ray
    _check_run([outs[1], outs[0]], 2)  # ms[0] has rank 1
    col.destroy_collective_group("util-g2")
    name, msg = ray.get(ms[0].try_op.remote("util-g2"))
    assert name == "RuntimeError" and "not initialized" in msg
    col.create_collective_group(ms, 2, [0, 1], backend="gloo", group_name="util-g2")  # the name is free again
    col.destroy_collective_group("util-g2")


def test_collective_refusals(ray, member):
    from shoal.util import collective as col
    ms = member(2)
    with pytest.raises(ValueError, match="'nccl' is not available.*backend='gloo'"):
        col.create_collective_group(ms, 2, [0, 1], group_name="util-g3")  # Ray's default backend is nccl
    with pytest.raises(RuntimeError, match="permutation"):
        col.create_collective_group(ms, 2, [0, 0], backend="gloo", group_name="util-g3")
    with pytest.raises(RuntimeError, match="one rank"):
        col.create_collective_group(ms, 3, [0, 1, 2], backend="gloo", group_name="util-g3")
    with pytest.raises(RuntimeError, match="one rank"):
        col.create_collective_group(ms, 2, [0], backend="gloo", group_name="util-g3")
    with pytest.raises(ValueError, match="unknown collective backend"):
        col.init_collective_group(1, 0, backend="carrier-pigeon", group_name="util-g3")
    with pytest.raises(ValueError, match="rank"):
        col.init_collective_group(2, 2, backend="gloo", group_name="util-g3")
    with pytest.raises(ray.exceptions.RayTaskError, match="'mpi' is not available"):
        ray.get(ms[0].join.remote(1, 0, "util-g3", "mpi"))
    with pytest.raises(NotImplementedError, match="GPUs"):
        col.allreduce_multigpu([np.zeros(1)])
    assert col.get_rank("util-nope") == -1 and col.get_collective_group_size("util-nope") == -1
    assert not col.nccl_available() and col.gloo_available()
    assert col.is_backend_available("gloo") and not col.is_backend_available("nccl")
    assert col.Backend("torch_gloo") == col.Backend.GLOO and col.Backend("nccl") == col.Backend.NCCL
    with pytest.raises(ValueError, match="Unrecognized"):
        col.Backend("carrier-pigeon")
    with pytest.raises(ValueError, match="'nccl' is not available"):
        col.init_collective_group(1, 0, backend=col.Backend.NCCL, group_name="util-g3")
    name, msg = ray.get(ms[1].try_op.remote("util-nope"))
    assert name == "RuntimeError" and "not initialized" in msg
