"""pytest plugin for scripts/ray-conformance.sh: the fixtures Ray's core test files take from Ray's
own conftest (ray_start_regular, shutdown_only, ray_start_cluster ...), written here from what
they do (init with these arguments, yield, shut down), so that the same test files run on Ray and,
with `-p shoal.compat`, on shoal. Loaded on both sides, so both run under the same fixtures.

Test harness helpers the test files import (SignalActor, Semaphore, wait_for_condition) come from
the side's own test utilities where it has them; on shoal, and for the old module names Ray no
longer has (ray.test_utils), from small stand-ins below. Every other name of Ray's private
modules (ray._private.*, ray._raylet, ray.worker ...) is a stand-in that raises InternalOnly when
used: report.py counts such a test as "internal", not as a failure of the public API."""
import asyncio
import os
import sys
import time
import types

import pytest

ray = None       # imported in pytest_configure, after shoal.compat mapped `ray` to shoal (on shoal's side)
ON_SHOAL = False

# Ray's conftest defaults for its start fixtures (get_default_fixture_ray_kwargs)
DEFAULTS = {"num_cpus": 1, "object_store_memory": 150 * 1024 * 1024}


class InternalOnly(Exception):
    """A Ray-internal name (ray._private, ray._raylet ...) a test used: out of scope for shoal."""


class _InternalStub:
    def __init__(self, name):
        self._name = name

    def __call__(self, *a, **k):
        raise InternalOnly(f"{self._name}: a Ray-internal API")

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise InternalOnly(f"{self._name}.{attr}: a Ray-internal API")


def _internal_module(name, **names):
    m = types.ModuleType(name)
    m.__dict__.update(names)
    m.__getattr__ = lambda attr: (_ for _ in ()).throw(AttributeError(attr)) if attr.startswith("__") else _InternalStub(f"{name}.{attr}")
    m.__path__ = []  # a package: `from ray._private import x` and `import ray._private.x` resolve here
    return m


def wait_for_condition(condition_predictor, timeout=10, retry_interval_ms=100, raise_exceptions=False, **kwargs):
    start = time.time()
    last = None
    while time.time() - start <= timeout:
        try:
            if condition_predictor(**kwargs):
                return
        except Exception as e:
            if raise_exceptions:
                raise
            last = e
        time.sleep(retry_interval_ms / 1000.0)
    raise RuntimeError(f"the condition was not met within {timeout} s" + (f" (last error: {last!r})" if last else ""))


async def async_wait_for_condition(condition_predictor, timeout=10, retry_interval_ms=100, **kwargs):
    start = time.time()
    while time.time() - start <= timeout:
        try:
            r = condition_predictor(**kwargs)
            if asyncio.iscoroutine(r):
                r = await r
            if r:
                return
        except Exception:
            pass
        await asyncio.sleep(retry_interval_ms / 1000.0)
    raise RuntimeError(f"the condition was not met within {timeout} s")


def _helpers():
    """SignalActor and Semaphore: the side's own where it has them, else stand-ins."""
    if not ON_SHOAL:
        from ray._common import test_utils as tu
        return {"SignalActor": tu.SignalActor, "Semaphore": tu.Semaphore, "wait_for_condition": tu.wait_for_condition,
                "async_wait_for_condition": tu.async_wait_for_condition}

    @ray.remote(num_cpus=0)
    class SignalActor:
        def __init__(self):
            self.ready_event = asyncio.Event()
            self.num_waiters = 0

        def send(self, clear=False):
            self.ready_event.set()
            if clear:
                self.ready_event.clear()

        async def wait(self, should_wait=True):
            if should_wait:
                self.num_waiters += 1
                await self.ready_event.wait()
                self.num_waiters -= 1

        async def cur_num_waiters(self):
            return self.num_waiters

    @ray.remote(num_cpus=0)
    class Semaphore:
        def __init__(self, value=1):
            self._sema = asyncio.Semaphore(value=value)

        async def acquire(self):
            await self._sema.acquire()

        async def release(self):
            self._sema.release()

        async def locked(self):
            return self._sema.locked()

    return {"SignalActor": SignalActor, "Semaphore": Semaphore, "wait_for_condition": wait_for_condition,
            "async_wait_for_condition": async_wait_for_condition}


def _kill_actor_and_wait_for_failure(actor, timeout=10, retry_interval_ms=100):
    import ray  # run as a task too, where this module's `ray` was never set
    start = time.time()
    while time.time() - start <= timeout:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=1)
        except ray.exceptions.RayActorError:
            return
        except Exception:
            pass
        time.sleep(retry_interval_ms / 1000.0)
    raise RuntimeError("the actor did not die")


def _install_modules():
    h = _helpers()
    h["kill_actor_and_wait_for_failure"] = _kill_actor_and_wait_for_failure
    h["client_test_enabled"] = lambda: False
    # ray.test_utils is the old name of the helpers (Ray 1.x test files): neither side has it
    sys.modules["ray.test_utils"] = _internal_module("ray.test_utils", **h)
    if not ON_SHOAL:
        # helpers Ray moved between its test modules (SignalActor went to ray._common.test_utils)
        import ray._private.test_utils as tu
        for k, v in h.items():
            if not hasattr(tu, k):
                setattr(tu, k, v)
        return
    for name in ("ray._private", "ray._private.test_utils", "ray._common", "ray._common.test_utils",
                 "ray._private.ray_constants", "ray._private.worker", "ray._private.utils", "ray._private.state",
                 "ray._raylet", "ray.worker", "ray.state", "ray.experimental", "ray.experimental.state", "ray.experimental.state.api"):
        sys.modules[name] = _internal_module(name, **(h if name.endswith("test_utils") else {}))
    sys.modules["ray._private"].test_utils = sys.modules["ray._private.test_utils"]
    # public types that test files import from Ray's private module where they are defined
    raylet = sys.modules["ray._raylet"]
    raylet.ObjectRef, raylet.ObjectRefGenerator = ray.ObjectRef, ray.ObjectRefGenerator
    sys.modules["ray._common"].test_utils = sys.modules["ray._common.test_utils"]


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    global ray, ON_SHOAL
    import ray as _ray
    ray = _ray
    ON_SHOAL = getattr(ray, "__name__", "ray") == "shoal"
    _install_modules()


# ---------------------------------------------------------------- the fixtures

def _params(request, **base):
    kw = dict(DEFAULTS)
    kw.update(base)
    kw.update(getattr(request, "param", None) or {})
    return kw


def _init(**kw):
    kw.pop("_system_config", None) if ON_SHOAL else None
    return ray.init(**kw)


def _start(request, **base):
    ctx = _init(**_params(request, **base))
    try:
        yield ctx
    finally:
        ray.shutdown()


@pytest.fixture
def shutdown_only():
    yield None
    ray.shutdown()


@pytest.fixture
def ray_start_regular(request):
    yield from _start(request)


@pytest.fixture(scope="module")
def ray_start_regular_shared(request):
    yield from _start(request)


@pytest.fixture(scope="module")
def ray_start_regular_shared_2_cpus(request):
    yield from _start(request, num_cpus=2)


@pytest.fixture
def ray_start_2_cpus(request):
    yield from _start(request, num_cpus=2)


@pytest.fixture
def ray_start_4_cpus(request):
    yield from _start(request, num_cpus=4)


@pytest.fixture
def ray_start_10_cpus(request):
    yield from _start(request, num_cpus=10)


def _cluster(request, head):
    from ray.cluster_utils import Cluster
    param = dict(getattr(request, "param", None) or {})
    num_nodes = param.pop("num_nodes", 0)
    do_init = param.pop("do_init", False)
    if head:
        args = dict(DEFAULTS)
        args.update(param)
        cluster = Cluster(initialize_head=True, connect=True, head_node_args=args)
    else:
        cluster = Cluster()
        for i in range(num_nodes):
            cluster.add_node(**param)
            if i == 0 and do_init:
                ray.init(address=cluster.address)
        if num_nodes:
            cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def ray_start_cluster(request):
    yield from _cluster(request, head=False)


@pytest.fixture
def ray_start_cluster_head(request):
    yield from _cluster(request, head=True)


@pytest.fixture
def ray_start_cluster_enabled(request):
    yield from _cluster(request, head=False)


try:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def event_loop():
        """Old test files ask for pytest-asyncio's removed event_loop fixture: the running loop."""
        yield asyncio.get_running_loop()
except ImportError:  # pragma: no cover
    pass


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RAY_CONFORMANCE_ASYNCIO_AUTO") != "0":
        for it in items:
            if asyncio.iscoroutinefunction(getattr(it, "obj", None)) and not it.get_closest_marker("asyncio"):
                it.add_marker(pytest.mark.asyncio)
