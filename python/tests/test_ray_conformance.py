"""Points where Ray's own core test files found shoal differing from Ray's documented behaviour
(docs/ray-conformance.md), each checked here from Ray's documentation, in shoal's own tests."""
import asyncio
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def test_async_def_remote_function_is_refused(ray):
    # Ray's API reference (ray.remote): `async def` is for actor methods; a remote function
    # declared `async def` raises ValueError when decorated, before anything is submitted.
    async def f():
        return 1

    with pytest.raises(ValueError, match="async def"):
        ray.remote(f)
    with pytest.raises(ValueError, match="asyncio.run"):
        ray.remote(num_cpus=1)(f)

    @ray.remote
    class Fine:  # async methods of an actor stay allowed
        async def g(self):
            await asyncio.sleep(0)
            return 2

    assert ray.get(Fine.remote().g.remote()) == 2


def test_task_function_name_as_ray_names_it(ray):
    # RuntimeContext.get_task_function_name(): module and function name for a task (even one
    # defined inside another function), module.Class.method for an actor's method
    def outer():
        @ray.remote
        def inner():
            return ray.get_runtime_context().get_task_function_name()
        return inner

    mod = __name__
    assert ray.get(outer().remote()) == f"{mod}.inner"

    @ray.remote
    class Named:
        def sync_name(self):
            return ray.get_runtime_context().get_task_function_name()

    @ray.remote(max_concurrency=2)
    class Threaded:
        def sync_name(self):
            return ray.get_runtime_context().get_task_function_name()

    assert ray.get(Named.remote().sync_name.remote()) == f"{mod}.Named.sync_name"
    assert ray.get(Threaded.remote().sync_name.remote()) == f"{mod}.Threaded.sync_name"

    @ray.remote
    class Async:
        async def async_name(self):
            return ray.get_runtime_context().get_task_function_name()

    # an async method is named by its qualified name, as Ray reports it
    want = f"{mod}.test_task_function_name_as_ray_names_it.<locals>.Async.async_name"
    assert ray.get(Async.remote().async_name.remote()) == want
    assert ray.get_runtime_context().get_task_function_name() is None  # the driver runs no task


def test_ray_cloudpickle_maps_to_cloudpickle():
    # `from ray.cloudpickle import dumps` (Ray's vendored cloudpickle) works under
    # `import ray` mapped to shoal, and is the cloudpickle shoal serializes with
    code = ("from shoal import compat; compat.install_alias()\n"
            "import cloudpickle, ray.cloudpickle as rc\n"
            "from ray.cloudpickle import dumps, loads\n"
            "assert rc is cloudpickle\n"
            "assert loads(dumps(lambda x: x + 1))(1) == 2\n"
            "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_async_generator_method_of_an_async_actor(ray):
    # Ray's generator guide: an async actor's `async def` method that yields streams its values
    # (next, for, async for) while the actor's event loop keeps serving other calls
    @ray.remote
    class Actor:
        def __init__(self):
            self.gate = asyncio.Event()

        async def agen(self, n):
            for i in range(n):
                await asyncio.sleep(0.01)
                yield i
            await self.gate.wait()  # ends only once open() ran on the same loop
            yield "after"

        async def open(self):
            self.gate.set()
            return "opened"

    a = Actor.remote()
    g = a.agen.remote(3)
    assert isinstance(g, ray.ObjectRefGenerator)
    assert [ray.get(next(g)) for _ in range(3)] == [0, 1, 2]
    assert ray.get(a.open.remote(), timeout=60) == "opened"  # the loop is free while agen waits
    assert ray.get(next(g), timeout=60) == "after"
    with pytest.raises(StopIteration):
        next(g)

    async def consume():
        return [await r async for r in a.agen.remote(2)]
    assert asyncio.run(consume()) == [0, 1, "after"]  # the gate stays open
    assert ray.get(a.agen.options(num_returns=3).remote(2)) == [0, 1, "after"]


def test_killed_actor_error_says_so_as_ray(ray):
    # the error of a call on an actor ended by kill() carries Ray's wording
    @ray.remote
    class Sleeper:
        def nap(self):
            import time
            time.sleep(600)

    a = Sleeper.remote()
    ref = a.nap.remote()
    ray.kill(a)
    with pytest.raises(ray.exceptions.RayActorError) as e:
        ray.get(ref, timeout=60)
    assert "The actor is dead because it was killed by `ray.kill`" in str(e.value)


def test_generator_error_after_some_yields(ray, tmp_path):
    # Ray's generator guide: a generator task that raises after some yields keeps what it
    # yielded; with a static num_returns the remaining returns raise the error, with "dynamic"
    # one more ref after the yielded ones holds it. A retried error (retry_exceptions) reruns
    # the whole task instead.
    @ray.remote(max_retries=0)
    def gen(n, fail):
        for i in range(n):
            yield i
        if fail:
            raise KeyError("boom")

    r0, r1, r2 = gen.options(num_returns=3).remote(1, True)
    assert ray.get(r0) == 0
    for r in (r1, r2):
        with pytest.raises(ray.exceptions.RayTaskError) as e:
            ray.get(r, timeout=60)
        assert isinstance(e.value.as_instanceof_cause(), KeyError)

    refs = list(ray.get(gen.options(num_returns="dynamic").remote(2, True)))
    assert len(refs) == 3 and ray.get(refs[:2]) == [0, 1]
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(refs[2], timeout=60)
    assert ray.get(list(ray.get(gen.options(num_returns="dynamic").remote(2, False)))) == [0, 1]

    marker = tmp_path / "ran"

    @ray.remote(max_retries=1, retry_exceptions=[KeyError])
    def flaky(path):
        yield "first"
        if not os.path.exists(path):
            open(path, "w").close()
            raise KeyError("first run")
        yield "second"

    assert ray.get(list(ray.get(flaky.options(num_returns="dynamic").remote(str(marker))))) == ["first", "second"]


def test_request_that_fits_no_bundle_is_refused(ray):
    # Ray's placement group guide: a task or actor whose resources fit none of its placement
    # group's bundles raises ValueError when submitted, naming the request and the bundles
    from shoal.util.placement_group import placement_group, remove_placement_group
    from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"CPU": 1}])
    ray.get(pg.ready(), timeout=60)
    strat = PlacementGroupSchedulingStrategy(placement_group=pg)

    @ray.remote(num_cpus=1, num_gpus=8)
    class Big:
        pass

    with pytest.raises(ValueError, match=r"resource request \{'CPU': 1, 'GPU': 8\} cannot fit into any bundles.*\[\{'CPU': 1\.0\}\]"):
        Big.options(scheduling_strategy=strat).remote()

    @ray.remote
    def two():
        return 2

    with pytest.raises(ValueError, match="cannot fit into any bundles"):
        two.options(num_cpus=2, scheduling_strategy=strat).remote()
    assert ray.get(two.options(scheduling_strategy=strat).remote(), timeout=60) == 2  # 1 CPU fits
    remove_placement_group(pg)


def test_a_call_whose_arguments_fail_to_pack_leaves_the_function_usable(ray):
    # a .remote() that raises (an argument that cannot be serialized) sends nothing; the next
    # call of the same function runs (its code is sent with it)
    import threading

    @ray.remote
    def ident(x):
        return x

    with pytest.raises(Exception):
        ident.remote(threading.Lock())
    assert ray.get(ident.remote(7), timeout=60) == 7


def test_actor_method_shadowed_by_an_attribute(ray):
    # Ray runs an actor call with the method its class defines, even when __init__ set an
    # instance attribute of the same name
    @ray.remote
    class Flag:
        def __init__(self):
            self.ready = True

        def ready(self):
            return "method"

        @staticmethod
        def static():
            return "static"

        @classmethod
        def cls_name(cls):
            return cls.__name__

    a = Flag.remote()
    assert ray.get(a.ready.remote(), timeout=60) == "method"
    assert ray.get(a.static.remote(), timeout=60) == "static"
    assert ray.get(a.cls_name.remote(), timeout=60) == "Flag"

    @ray.remote
    class AsyncFlag:
        def __init__(self):
            self.ready = False

        async def ready(self):
            return "async method"

    assert ray.get(AsyncFlag.remote().ready.remote(), timeout=60) == "async method"


def test_streaming_generator_retried_on_retry_exceptions(ray, tmp_path):
    # Ray's fault-tolerance guide: a streaming generator task that raises an exception listed in
    # retry_exceptions is retried; the caller's stream goes on past the values it already has
    marker = tmp_path / "failed_once"

    @ray.remote(retry_exceptions=[ValueError], max_retries=3)
    def gen(path):
        for i in range(4):
            if i == 2 and not os.path.exists(path):
                open(path, "w").close()
                raise ValueError("first attempt")
            yield i

    assert [ray.get(r, timeout=60) for r in gen.remote(str(marker))] == [0, 1, 2, 3]

    @ray.remote(retry_exceptions=[ValueError], max_retries=1)
    def always():
        yield "kept"
        raise ValueError("every attempt")

    g = always.remote()
    assert ray.get(next(g), timeout=60) == "kept"
    with pytest.raises(ray.exceptions.RayTaskError):  # retries spent: the error ends the stream
        ray.get(next(g), timeout=60)

    @ray.remote(max_retries=3)  # not listed: reported at once as the next item, no retry
    def unlisted(path):
        yield 0
        open(path, "a").write("x")
        raise KeyError("not retried")

    runs = tmp_path / "runs"
    g = unlisted.remote(str(runs))
    assert ray.get(next(g), timeout=60) == 0
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(next(g), timeout=60)
    assert runs.read_text() == "x"


def test_cancelled_streaming_generator_item_is_a_task_error(ray):
    # ray.cancel of a running streaming generator: the next item raises an error that is both
    # a RayTaskError and a TaskCancelledError and says "was cancelled"; the stream then ends
    import time

    @ray.remote
    def slow():
        for i in range(5):
            time.sleep(0.5 if i == 0 else 30)
            yield i

    g = slow.remote()
    assert ray.get(next(g), timeout=60) == 0
    ray.cancel(g)
    with pytest.raises(ray.exceptions.RayTaskError) as e:
        ray.get(next(g), timeout=60)
    assert isinstance(e.value, ray.exceptions.TaskCancelledError)
    assert "was cancelled" in str(e.value)
    with pytest.raises(StopIteration):
        next(g)


def test_namespace_must_be_a_non_empty_string(ray):
    # Ray checks a namespace wherever one is given: not a string -> TypeError, "" -> ValueError,
    # before anything is sent (shoal sent it, and the agent dropped the connection)
    for bad, err in ((123, TypeError), ("", ValueError)):
        with pytest.raises(err):
            ray.init(namespace=bad)
        with pytest.raises(err):
            ray.get_actor("a", namespace=bad)

    @ray.remote
    class A:
        def ping(self):
            return "pong"

    with pytest.raises(TypeError):
        A.options(namespace=123).remote()
    with pytest.raises(ValueError):
        A.options(namespace="").remote()
    a = A.options(name="in_other_ns", namespace="conformance_ns").remote()
    assert ray.get(ray.get_actor("in_other_ns", namespace="conformance_ns").ping.remote(), timeout=60) == "pong"
    ray.kill(a)


def test_job_config_namespace_and_runtime_env():
    # ray.job_config.JobConfig(ray_namespace=, runtime_env=) passed to init(job_config=) sets the
    # job's namespace and runtime environment; Java options are refused with a clear error
    from conftest import run_script
    code = (
        "import os, pytest, shoal as ray\n"
        "from shoal.job_config import JobConfig\n"
        "with pytest.raises(ValueError, match='Java'):\n"
        "    JobConfig(jvm_options=['-Xmx1g'])\n"
        "with pytest.raises(TypeError):\n"
        "    ray.init(job_config={'ray_namespace': 'x'})\n"
        "ray.init(job_config=JobConfig(ray_namespace='jc_ns', runtime_env={'env_vars': {'JC_VAR': 'set'}}))\n"
        "assert ray.get_runtime_context().namespace == 'jc_ns'\n"
        "@ray.remote\n"
        "def env():\n"
        "    return os.environ.get('JC_VAR'), ray.get_runtime_context().namespace\n"
        "print(ray.get(env.remote(), timeout=60))\n")
    r = run_script(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "('set', 'jc_ns')"
