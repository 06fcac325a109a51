"""Ray's task features as Ray documents them (issue 14, docs/ray-tasks.md): generators
(static num_returns, "dynamic", "streaming" with ObjectRefGenerator), retry_exceptions,
max_calls, logical GPUs, scheduling strategies and label selectors, and ray.cancel on actor
calls and generators. One local cluster for the module, started as a Ray user would."""
import asyncio
import os
import time

import pytest

from conftest import shoal_bin


@pytest.fixture(scope="module")
def ray():
    os.environ.setdefault("SHOAL_BIN", shoal_bin())
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID"):
        os.environ.pop(k, None)
    import shoal
    # logical GPUs on a machine without any, node labels, and a custom accelerator resource
    shoal.init(num_cpus=4, num_gpus=2, object_store_memory=256 << 20, labels={"zone": "east", "disk": "ssd"},
               resources={"accelerator_type:T4": 1})
    yield shoal
    shoal.shutdown()


# ---------------------------------------------------------------- generators

def test_streaming_is_the_default_and_yields_arrive_while_the_task_runs(ray, tmp_path):
    go_on = tmp_path / "go_on"

    @ray.remote
    def gen(path):
        yield "first"
        # the second value only comes once the driver has seen the first: with returns
        # delivered at the end, the driver would not see "first" before this wait ends
        deadline = time.time() + 30
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.05)
        yield "on time" if os.path.exists(path) else "late"

    g = gen.remote(str(go_on))
    assert isinstance(g, ray.ObjectRefGenerator)
    assert ray.get(next(g), timeout=30) == "first"
    go_on.touch()
    assert ray.get(next(g), timeout=30) == "on time"
    with pytest.raises(StopIteration):
        next(g)
    assert g.is_finished()


def test_streaming_large_values_and_for_loop(ray):
    import numpy as np

    @ray.remote(num_returns="streaming")
    def arrays(n):
        for i in range(n):
            yield np.full(300_000, i, dtype=np.int64)  # 2.4 MB each: through the store

    got = [int(ray.get(r)[0]) for r in arrays.remote(4)]
    assert got == [0, 1, 2, 3]


def test_streaming_async_for(ray):
    @ray.remote
    def gen(n):
        for i in range(n):
            yield i * i

    async def consume():
        return [await ref async for ref in gen.remote(4)]

    assert asyncio.run(consume()) == [0, 1, 4, 9]


def test_streaming_exception_mid_stream(ray):
    @ray.remote
    def gen():
        yield 1
        raise KeyError("mid-stream")

    g = gen.remote()
    assert ray.get(next(g), timeout=30) == 1
    bad = next(g)
    with pytest.raises(KeyError):
        ray.get(bad, timeout=30)
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(bad, timeout=30)
    with pytest.raises(StopIteration):
        next(g)


@pytest.mark.parametrize("mode", ["streaming", "dynamic"])
def test_generator_modes_need_a_generator_function(ray, mode):
    def plain():
        return 5

    with pytest.raises(ValueError, match="generator function"):
        ray.remote(num_returns=mode)(plain)
    with pytest.raises(ValueError, match="generator function"):
        ray.remote(plain).options(num_returns=mode)


def test_get_and_wait_of_a_generator(ray, tmp_path):
    go_on = tmp_path / "go_on"

    @ray.remote
    def gen(path):
        yield 1
        while not os.path.exists(path):
            time.sleep(0.05)
        yield 2

    g = gen.remote(str(go_on))
    assert ray.get(g) is g  # as Ray: get of a generator is the generator
    ready, not_ready = ray.wait([g], timeout=30)
    assert ready == [g] and not_ready == []
    assert ray.get(next(g), timeout=30) == 1
    ready, not_ready = ray.wait([g], timeout=0.3)  # its next yield waits for the file
    assert ready == [] and not_ready == [g]
    go_on.touch()
    other = ray.put("x")
    ready, _ = ray.wait([g, other], num_returns=2, timeout=30)
    assert len(ready) == 2
    assert [ray.get(r, timeout=30) for r in g] == [2]
    ready, _ = ray.wait([g], timeout=30)  # ended: ready, and next() raises StopIteration
    assert ready == [g]


def test_cancel_a_streaming_generator(ray):
    @ray.remote
    def forever():
        i = 0
        while True:
            yield i
            i += 1
            time.sleep(0.05)

    g = forever.remote()
    assert ray.get(next(g), timeout=30) == 0
    ray.cancel(g)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        for ref in g:  # the values yielded before the cancel, then the cancellation
            ray.get(ref, timeout=30)
    with pytest.raises(StopIteration):
        next(g)


def test_static_num_returns_with_a_generator(ray):
    @ray.remote(num_returns=3)
    def three():
        for i in range(3):
            yield i + 10

    @ray.remote(num_returns=2)
    def more():
        for i in range(3):
            yield i

    @ray.remote(num_returns=3)
    def fewer():
        yield "only"

    @ray.remote(num_returns=1)
    def one():
        yield 5

    assert ray.get(list(three.remote()), timeout=30) == [10, 11, 12]
    # as Ray: the first num_returns yields are kept, the rest dropped with an error logged
    assert ray.get(list(more.remote()), timeout=30) == [0, 1]
    # as Ray: the missing ones raise ValueError
    a, b, c = fewer.remote()
    assert ray.get(a, timeout=30) == "only"
    for x in (b, c):
        with pytest.raises(ValueError, match="Task returned 1 objects, but num_returns=3"):
            ray.get(x, timeout=30)
    assert ray.get(one.remote(), timeout=30) == 5


def test_dynamic_num_returns(ray):
    @ray.remote(num_returns="dynamic")
    def split(n):
        for i in range(n):
            yield str(i)

    ref = split.remote(5)
    assert isinstance(ref, ray.ObjectRef)
    gen = ray.get(ref, timeout=30)
    assert isinstance(gen, ray.DynamicObjectRefGenerator)
    assert len(gen) == 5
    assert ray.get(list(gen), timeout=30) == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("bad", [-1, 1.5, "many"])
def test_bad_num_returns_is_refused(ray, bad):
    @ray.remote
    def f():
        return 1

    with pytest.raises(ValueError, match="num_returns"):
        f.options(num_returns=bad).remote()


def test_actor_generator_methods(ray):
    @ray.remote
    class Source:
        def __init__(self):
            self.base = 100

        def stream(self, n):
            for i in range(n):
                yield self.base + i

        def pair(self):
            yield "a"
            yield "b"

    s = Source.remote()
    g = s.stream.remote(3)
    assert isinstance(g, ray.ObjectRefGenerator)
    assert [ray.get(r, timeout=30) for r in g] == [100, 101, 102]
    g = s.stream.options(num_returns="streaming").remote(2)
    assert [ray.get(r, timeout=30) for r in g] == [100, 101]
    a, b = s.pair.options(num_returns=2).remote()
    assert ray.get([a, b], timeout=30) == ["a", "b"]


def test_generator_consumed_inside_a_task(ray):
    @ray.remote
    def gen(n):
        for i in range(n):
            yield i

    @ray.remote
    def total(n):
        return sum(ray.get(r) for r in gen.remote(n))

    assert ray.get(total.remote(5), timeout=60) == 10


# ---------------------------------------------------------------- retries and max_calls

def _counter(path):
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        return len(f.read())


@pytest.mark.parametrize("retry,raised,want_calls,recovers", [
    (True, KeyError, 3, True),             # any exception is retried
    ([KeyError], KeyError, 3, True),       # a listed class is retried
    ([KeyError], ValueError, 1, False),    # an unlisted one is not
    (False, KeyError, 1, False),           # the default: application errors are not retried
])
def test_retry_exceptions(ray, tmp_path, retry, raised, want_calls, recovers):
    path = str(tmp_path / "calls")

    @ray.remote(max_retries=2, retry_exceptions=retry)
    def flaky():
        n = _counter(path)
        if n < 3:
            raise raised(f"call {n}")
        return n

    ref = flaky.remote()
    if recovers:
        assert ray.get(ref, timeout=60) == 3
    else:
        with pytest.raises(raised):
            ray.get(ref, timeout=60)
    with open(path) as f:
        assert len(f.read()) == want_calls


def test_retry_exceptions_stops_at_max_retries(ray, tmp_path):
    path = str(tmp_path / "calls")

    @ray.remote(max_retries=1, retry_exceptions=True)
    def always():
        _counter(path)
        raise RuntimeError("always")

    with pytest.raises(RuntimeError):
        ray.get(always.remote(), timeout=60)
    with open(path) as f:
        assert len(f.read()) == 2


def test_retry_exceptions_must_be_bool_or_exception_list(ray):
    @ray.remote
    def f():
        return 1

    with pytest.raises(ValueError, match="retry_exceptions"):
        f.options(retry_exceptions=[1]).remote()
    with pytest.raises(ValueError, match="retry_exceptions"):
        f.options(retry_exceptions="yes").remote()


def test_max_calls_replaces_the_worker_without_error(ray):
    @ray.remote(max_calls=2)
    def pid():
        return os.getpid()

    pids = [ray.get(pid.remote(), timeout=60) for _ in range(6)]
    counts = {p: pids.count(p) for p in pids}
    assert all(c <= 2 for c in counts.values()), pids
    assert len(counts) >= 3, pids
    with pytest.raises(ValueError, match="max_calls"):
        pid.options(max_calls=-1).remote()


# ---------------------------------------------------------------- resources

def test_logical_gpus(ray):
    assert ray.cluster_resources().get("GPU") == 2

    @ray.remote(num_gpus=1)
    def gpu_ids():
        time.sleep(0.5)
        return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

    a, b = ray.get([gpu_ids.remote(), gpu_ids.remote()], timeout=60)
    assert sorted(a[0] + b[0]) == [0, 1]
    assert a[1] == str(a[0][0]) and b[1] == str(b[0][0])


def test_accelerator_type_is_a_resource(ray):
    @ray.remote(accelerator_type="T4")
    def on_t4():
        return "t4"

    @ray.remote(accelerator_type="H100")
    def on_h100():
        return "h100"

    assert ray.get(on_t4.remote(), timeout=60) == "t4"
    with pytest.raises(ray.exceptions.TaskUnschedulableError, match="accelerator_type:H100"):
        ray.get(on_h100.remote(), timeout=60)


# ---------------------------------------------------------------- scheduling strategies

def test_node_affinity_and_spread_on_one_node(ray):
    from shoal.util.scheduling_strategies import NodeAffinitySchedulingStrategy as NA
    me = ray.get_runtime_context().get_node_id()

    @ray.remote
    def where():
        return ray.get_runtime_context().get_node_id()

    assert ray.get(where.options(scheduling_strategy=NA(me, soft=False)).remote(), timeout=60) == me
    assert ray.get(where.options(scheduling_strategy=NA("no-such-node", soft=True)).remote(), timeout=60) == me
    with pytest.raises(ray.exceptions.TaskUnschedulableError, match="no-such-node"):
        ray.get(where.options(scheduling_strategy=NA("no-such-node", soft=False)).remote(), timeout=60)
    assert ray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(3)], timeout=60) == [me] * 3

    @ray.remote(scheduling_strategy=NA("no-such-node", soft=False))
    class Pinned:
        def ping(self):
            return 1

    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(Pinned.remote().ping.remote(), timeout=60)


def test_bad_strategies_are_refused(ray):
    from shoal.util import scheduling_strategies as ss

    @ray.remote
    def f():
        return 1

    with pytest.raises(ValueError, match="scheduling_strategy"):
        f.options(scheduling_strategy="PACK").remote()
    with pytest.raises(ValueError, match="label_selector"):
        ss.NodeLabelSchedulingStrategy(hard={"zone": "east"})
    with pytest.raises(ValueError, match="capture_child_tasks"):
        f.options(placement_group_capture_child_tasks=True).remote()


@pytest.mark.parametrize("selector,runs", [
    ({"zone": "east"}, True),
    ({"zone": "in(west,east)"}, True),
    ({"zone": "!west"}, True),
    ({"gpu": "!in(a100,h100)"}, True),   # a node without the label matches a negation
    ({"zone": "east", "disk": "ssd"}, True),
    ({"zone": "west"}, False),
    ({"zone": "!in(east)"}, False),
    ({"zone": "east", "disk": "hdd"}, False),
])
def test_label_selector(ray, selector, runs):
    @ray.remote
    def f():
        return "ran"

    ref = f.options(label_selector=selector).remote()
    if runs:
        assert ray.get(ref, timeout=60) == "ran"
    else:
        with pytest.raises(ray.exceptions.TaskUnschedulableError, match="label_selector"):
            ray.get(ref, timeout=60)


def test_label_selector_node_id_and_bad_selectors(ray):
    me = ray.get_runtime_context().get_node_id()
    (node,) = ray.nodes()
    assert node["Labels"] == {"zone": "east", "disk": "ssd", "ray.io/node-id": me}

    @ray.remote
    def f():
        return "ran"

    assert ray.get(f.options(label_selector={"ray.io/node-id": me}).remote(), timeout=60) == "ran"
    for bad in ({"zone": "in()"}, {"zone": 3}, {"zone": "a b"}, "zone=east"):
        with pytest.raises(ValueError, match="label_selector"):
            f.options(label_selector=bad).remote()


# ---------------------------------------------------------------- cancel on actors

def test_cancel_actor_calls(ray):
    @ray.remote
    class Slow:
        def sleep(self, s):
            time.sleep(s)
            return "slept"

        def ping(self):
            return "pong"

        def touch(self, path):
            open(path, "w").close()
            return "touched"

    a = Slow.remote()
    assert ray.get(a.ping.remote(), timeout=60) == "pong"
    running = a.sleep.remote(1.5)
    queued = a.sleep.remote(0)
    marker = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"shoal-cancel-{os.getpid()}-{time.time()}")
    never = a.touch.remote(marker)  # sent ahead to the actor's worker while sleep runs
    time.sleep(0.5)
    ray.cancel(queued)
    ray.cancel(never)
    ray.cancel(running)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(never, timeout=60)
    assert not os.path.exists(marker), "a call cancelled before it ran ran"
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(queued, timeout=60)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(running, timeout=60)
    slow = a.sleep.remote(0.5)  # still queued or running when the cancels come
    with pytest.raises(ValueError, match="force=True is not supported"):
        ray.cancel(slow, force=True)
    with pytest.raises(TypeError, match="force=True is not supported"):  # what older Ray raised
        ray.cancel(slow, force=True)
    assert ray.get(slow, timeout=60) == "slept"  # a refused cancel leaves the call alone
    assert ray.get(a.ping.remote(), timeout=60) == "pong"  # the actor lives on


def test_cancel_an_actor_generator(ray):
    @ray.remote
    class Source:
        def forever(self):
            i = 0
            while True:
                yield i
                i += 1
                time.sleep(0.05)

        def ping(self):
            return "pong"

    s = Source.remote()
    g = s.forever.remote()
    assert ray.get(next(g), timeout=60) == 0
    ray.cancel(g)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        for ref in g:
            ray.get(ref, timeout=60)
    assert ray.get(s.ping.remote(), timeout=60) == "pong"


def test_cancel_async_actor_call(ray):
    @ray.remote
    class AsyncActor:
        async def wait(self):
            await asyncio.sleep(600)  # only a cancel ends it within the get's timeout
            return "done"

        async def ping(self):
            return "pong"

    a = AsyncActor.remote()
    ref = a.wait.remote()
    assert ray.get(a.ping.remote()) == "pong"  # the loop runs other calls while wait sleeps
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)
    assert ray.get(a.ping.remote()) == "pong"  # the actor goes on


def test_a_sync_actor_call_polls_is_canceled(ray, tmp_path):
    seen = tmp_path / "seen"

    @ray.remote
    class Worker:
        def loop(self, path):
            for _ in range(600):
                if ray.get_runtime_context().is_canceled():
                    open(path, "w").close()
                    return "stopped early"
                time.sleep(0.05)
            return "ran to the end"

    w = Worker.remote()
    ref = w.loop.remote(str(seen))
    time.sleep(1.0)
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)
    assert seen.exists(), "the call never saw is_canceled() turn True"
    with pytest.raises(RuntimeError, match="is_canceled"):
        ray.get_runtime_context().is_canceled()


def test_completed_is_ready_when_the_task_ends(ray):
    @ray.remote
    def gen():
        yield 1
        yield 2

    g = gen.remote()
    ready, _ = ray.wait([g.completed()], timeout=60)
    assert ready
    assert [ray.get(r) for r in g] == [1, 2]
