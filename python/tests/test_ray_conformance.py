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
