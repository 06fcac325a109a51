"""Ray's documented actor semantics, run against shoal (docs/ray-actors.md): async and threaded
actors, concurrency groups, max_task_retries, exit_actor / __ray_ready__ / __ray_terminate__ /
__ray_shutdown__, handle counting, detached actors, get_if_exists, namespaces in workers,
arguments checked at .remote(), static methods. Sources: Ray's "AsyncIO / Concurrency for
Actors", "Limiting Concurrency Per-Method with Concurrency Groups", "Terminating Actors",
"Actor Lifetimes", "Fault Tolerance: actors" and the API reference of exit_actor and kill."""
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT


def _wait_for(cond, timeout=30.0):
    """Poll cond (each poll is a round trip a user would make) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


# ---------------------------------------------------------------- async actors

def test_async_actor_runs_calls_concurrently_on_one_loop(ray):
    @ray.remote
    class AsyncActor:
        def __init__(self):
            self.loops = set()
            self.threads = set()
            self.running = 0
            self.peak = 0

        async def run(self, together):
            # returns once `together` calls run at the same time: a sequential actor would
            # never get there
            self.loops.add(id(asyncio.get_running_loop()))
            self.threads.add(threading.get_ident())
            self.running += 1
            self.peak = max(self.peak, self.running)
            for _ in range(2000):
                if self.peak >= together:
                    break
                await asyncio.sleep(0.01)
            self.running -= 1
            return self.peak

        def stats(self):  # a sync method of an async actor runs on the loop too
            return len(self.loops), len(self.threads), self.peak, threading.get_ident() in self.threads

    a = AsyncActor.remote()
    assert ray.get([a.run.remote(20) for _ in range(20)]) == [20] * 20
    loops, threads, peak, same_thread = ray.get(a.stats.remote())
    assert loops == 1 and threads == 1 and same_thread
    assert peak == 20


def test_async_actor_max_concurrency_bounds_calls(ray):
    @ray.remote(max_concurrency=2)
    class Limited:
        def __init__(self):
            self.running = 0
            self.peak = 0

        async def run(self):
            self.running += 1
            self.peak = max(self.peak, self.running)
            for _ in range(200):  # up to 2 s for a second call to join
                if self.running >= 2:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            self.running -= 1

        async def peak_seen(self):
            return self.peak

    a = Limited.remote()
    ray.get([a.run.remote() for _ in range(8)])
    assert ray.get(a.peak_seen.remote()) == 2


def test_async_actor_awaits_object_refs(ray):
    @ray.remote
    def slow(x):
        time.sleep(0.2)
        return x * 2

    @ray.remote
    class Awaiter:
        async def get(self, refs):
            return sum(await asyncio.gather(*refs))

    a = Awaiter.remote()
    assert ray.get(a.get.remote([slow.remote(i) for i in range(4)])) == 12


def test_async_method_error_is_raised_at_get(ray):
    @ray.remote
    class Bad:
        async def boom(self):
            await asyncio.sleep(0)
            raise KeyError("nope")

    with pytest.raises(KeyError):
        ray.get(Bad.remote().boom.remote())


# ---------------------------------------------------------------- threaded actors

def _join(cond, timeout=2.0):
    """Inside an actor method: wait (up to timeout) until cond() holds."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_threaded_actor_runs_calls_on_a_pool(ray):
    @ray.remote(max_concurrency=3)
    class Threaded:
        def __init__(self):
            self.lock = threading.Lock()
            self.running = 0
            self.peak = 0
            self.threads = set()

        def work(self):
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
                self.threads.add(threading.get_ident())
            _join(lambda: self.peak >= 3)
            time.sleep(0.05)
            with self.lock:
                self.running -= 1

        def stats(self):
            return self.peak, len(self.threads)

    a = Threaded.remote()
    ray.get([a.work.remote() for _ in range(9)])
    peak, nthreads = ray.get(a.stats.remote())
    assert peak == 3
    assert nthreads == 3


def test_sequential_actor_keeps_one_callers_order(ray):
    @ray.remote
    class Log:
        def __init__(self):
            self.seen = []

        def add(self, i):
            self.seen.append(i)

        def get(self):
            return self.seen

    @ray.remote
    def slow(i):
        time.sleep(0.5)
        return i

    a = Log.remote()
    # the first call waits for a slow argument; the later ones still run after it
    a.add.remote(slow.remote(0))
    for i in range(1, 6):
        a.add.remote(i)
    assert ray.get(a.get.remote()) == [0, 1, 2, 3, 4, 5]


def test_threaded_actor_runs_ready_calls_first(ray, tmp_path):
    # Ray: a threaded or async actor gives no order; a call whose argument is not ready holds
    # back no other
    gate = tmp_path / "gate"

    @ray.remote(max_concurrency=2)
    class Log:
        def __init__(self):
            self.seen = []

        def add(self, i):
            self.seen.append(i)

        def get(self):
            return list(self.seen)

    @ray.remote
    def gated(i, path):
        _join(lambda: os.path.exists(path), timeout=60)
        return i

    a = Log.remote()
    first = a.add.remote(gated.remote(0, str(gate)))
    ray.get(a.add.remote(1))
    assert ray.get(a.get.remote()) == [1]
    gate.touch()
    ray.get(first)
    assert ray.get(a.get.remote()) == [1, 0]


def test_concurrency_groups(ray):
    @ray.remote(concurrency_groups={"io": 2, "compute": 1})
    class Grouped:
        def __init__(self):
            self.lock = threading.Lock()
            self.running = {}
            self.peak = {}

        def _enter(self, g):
            with self.lock:
                self.running[g] = self.running.get(g, 0) + 1
                self.peak[g] = max(self.peak.get(g, 0), self.running[g])

        def _leave(self, g):
            with self.lock:
                self.running[g] -= 1

        @ray.method(concurrency_group="io")
        def io(self):
            self._enter("io")
            _join(lambda: self.peak["io"] >= 2)
            time.sleep(0.05)
            self._leave("io")

        @ray.method(concurrency_group="compute")
        def compute(self):
            self._enter("compute")
            time.sleep(0.1)
            self._leave("compute")

        def default(self, key="default"):
            self._enter(key)
            time.sleep(0.1)
            self._leave(key)

        def peaks(self):
            return dict(self.peak)

    a = Grouped.remote()
    refs = [a.io.remote() for _ in range(6)] + [a.compute.remote() for _ in range(3)]
    refs += [a.default.remote() for _ in range(3)]
    # a call can be put in another group per call
    refs += [a.default.options(concurrency_group="io").remote("moved") for _ in range(4)]
    ray.get(refs)
    peaks = ray.get(a.peaks.remote())
    assert peaks["io"] == 2
    assert peaks["compute"] == 1
    assert peaks["default"] == 1  # max_concurrency 1 for the default group
    assert 1 <= peaks["moved"] <= 2


def test_concurrency_options_are_checked(ray):
    class Plain:
        def f(self):
            return 1

    with pytest.raises(ValueError, match="max_concurrency"):
        ray.remote(max_concurrency=0)(Plain)
    with pytest.raises(ValueError, match="concurrency group"):
        ray.remote(concurrency_groups={"io": 0})(Plain)

    class Missing:
        @ray.method(concurrency_group="nope")
        def f(self):
            return 1
    with pytest.raises(ValueError, match="nope"):
        ray.remote(Missing).remote()
    # a group the decorator lacks may come with .options()
    ok = ray.remote(Missing).options(concurrency_groups={"nope": 1}).remote()
    assert ray.get(ok.f.remote()) == 1
    a = ray.remote(Plain).remote()
    with pytest.raises(ValueError, match="io"):
        a.f.options(concurrency_group="io")
    with pytest.raises(ValueError, match="lifetime"):
        ray.remote(lifetime="forever")(Plain)
    with pytest.raises(ValueError, match="get_if_exists"):
        ray.remote(get_if_exists=True)(Plain)


# ---------------------------------------------------------------- ending an actor

def test_ray_ready(ray):
    @ray.remote
    class Slow:
        def __init__(self):
            time.sleep(0.3)

    a = Slow.remote()
    ray.get(a.__ray_ready__.remote())  # resolves once the constructor ran
    ready, _ = ray.wait([a.__ray_ready__.remote()], timeout=10)
    assert len(ready) == 1


def test_exit_actor(ray, tmp_path):
    marker = tmp_path / "atexit"

    @ray.remote(max_restarts=2)
    class Quitter:
        def __init__(self, path):
            import atexit
            atexit.register(lambda: open(path, "w").write("ran"))

        def ping(self):
            return "pong"

        def quit(self):
            ray.actor.exit_actor()

    a = Quitter.remote(str(marker))
    assert ray.get(a.ping.remote()) == "pong"
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(a.quit.remote())
    # not restarted, though max_restarts allows it: later calls fail
    with pytest.raises(ray.exceptions.ActorDiedError):
        ray.get(a.ping.remote())
    assert marker.read_text() == "ran"  # atexit handlers run


def test_exit_actor_lets_running_calls_finish(ray):
    # Ray: "For concurrent and async actors, tasks currently executing will run to completion
    # before the actor exits"
    @ray.remote(max_concurrency=2)
    class Threaded:
        def slow(self):
            time.sleep(0.5)
            return "finished"

        def quit(self):
            time.sleep(0.1)
            ray.actor.exit_actor()

    @ray.remote
    class Async:
        async def slow(self):
            await asyncio.sleep(0.5)
            return "finished"

        async def quit(self):
            await asyncio.sleep(0.1)
            ray.actor.exit_actor()

        async def ping(self):
            return "pong"

    for cls in (Threaded, Async):
        a = cls.remote()
        running = a.slow.remote()
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(a.quit.remote())
        assert ray.get(running) == "finished"
        with pytest.raises(ray.exceptions.ActorDiedError):
            ray.get(a.slow.remote())


def test_exit_actor_outside_an_actor(ray):
    with pytest.raises(TypeError):
        ray.actor.exit_actor()

    @ray.remote
    def task():
        try:
            ray.actor.exit_actor()
        except TypeError:
            return "refused"
    assert ray.get(task.remote()) == "refused"


def test_ray_terminate_lets_queued_calls_finish(ray, tmp_path):
    marker = tmp_path / "shutdown"

    @ray.remote
    class Worker:
        def __init__(self, path):
            self.path = path
            self.n = 0

        def step(self):
            time.sleep(0.05)
            self.n += 1
            return self.n

        def __ray_shutdown__(self):
            with open(self.path, "w") as f:
                f.write(str(self.n))

    a = Worker.remote(str(marker))
    refs = [a.step.remote() for _ in range(5)]
    term = a.__ray_terminate__.remote()
    assert ray.get(refs) == [1, 2, 3, 4, 5]
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(term)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(a.step.remote())
    assert _wait_for(marker.exists)
    assert marker.read_text() == "5"


class _Marked:
    """An actor class whose graceful end (__ray_shutdown__) leaves a file behind: the tests of
    how actors end make it remote with ray.remote(_Marked) and look for the file."""

    def __init__(self, path):
        self.path = path
        self.n = 0

    def ping(self):
        return 1

    def pid(self):
        return os.getpid()

    def add(self):
        self.n += 1
        return self.n

    def __ray_shutdown__(self):
        with open(self.path, "w") as f:
            f.write("bye")


def test_kill_does_not_call_ray_shutdown(ray, tmp_path):
    marker = tmp_path / "shutdown"

    A = ray.remote(_Marked)

    a = A.remote(str(marker))
    ray.get(a.ping.remote())
    ray.kill(a)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(a.ping.remote())
    time.sleep(0.3)
    assert not marker.exists()


# ---------------------------------------------------------------- handle counting

def test_actor_ends_with_its_last_handle(ray, tmp_path):
    marker = tmp_path / "gone"

    A = ray.remote(_Marked)

    a = A.remote(str(marker))
    pid = ray.get(a.pid.remote())
    del a
    assert _wait_for(marker.exists)
    assert _wait_for(lambda: not _alive(pid))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_handle_passed_to_a_task_keeps_the_actor(ray, tmp_path):
    marker = tmp_path / "gone"

    A = ray.remote(_Marked)

    @ray.remote
    class Holder:
        def __init__(self):
            self.h = None

        def keep(self, h):
            self.h = h

        def use(self):
            return ray.get(self.h.add.remote())

        def drop(self):
            self.h = None

    holder = Holder.remote()
    a = A.remote(str(marker))
    ray.get(holder.keep.remote(a))
    del a  # the holder's borrowed handle keeps it alive
    time.sleep(0.5)
    assert not marker.exists()
    assert ray.get(holder.use.remote()) == 1
    ray.get(holder.drop.remote())
    assert _wait_for(marker.exists)


def test_handles_through_tasks(ray, tmp_path):
    A = ray.remote(_Marked)

    @ray.remote
    def use(h):
        time.sleep(0.3)
        return ray.get(h.add.remote())

    @ray.remote
    def make(path):
        return A.remote(path)

    # a task's argument keeps the actor while the task runs, though the driver dropped it
    gone1 = tmp_path / "one"
    a = A.remote(str(gone1))
    ref = use.remote(a)
    del a
    assert ray.get(ref) == 1
    assert _wait_for(gone1.exists)

    # an actor made in a task and returned lives on through the driver's handle
    gone2 = tmp_path / "two"
    h = ray.get(make.remote(str(gone2)))
    time.sleep(0.3)
    assert ray.get(h.add.remote()) == 1
    assert not gone2.exists()
    del h
    assert _wait_for(gone2.exists)


def test_named_actor_outlives_its_handles(ray):
    @ray.remote
    class A:
        def ping(self):
            return "pong"

    a = A.options(name="kept-by-name").remote()
    ray.get(a.ping.remote())
    del a
    time.sleep(0.3)
    assert ray.get(ray.get_actor("kept-by-name").ping.remote()) == "pong"
    ray.kill(ray.get_actor("kept-by-name"))


def test_get_if_exists(ray):
    @ray.remote
    class C:
        def __init__(self, v):
            self.v = v

        def get(self):
            return self.v

    a = C.options(name="gie", get_if_exists=True).remote(1)
    b = C.options(name="gie", get_if_exists=True).remote(2)
    assert ray.get(b.get.remote()) == 1
    assert a == b
    ray.kill(a)


# ---------------------------------------------------------------- restarts and retries

def test_max_task_retries_resends_calls_in_flight(ray, tmp_path):
    @ray.remote(max_restarts=1, max_task_retries=1)
    class Fragile:
        def crash_once(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)  # the process dies while running this call
            return "done on the restarted actor"

    a = Fragile.remote()
    assert ray.get(a.crash_once.remote(str(tmp_path / "a"))) == "done on the restarted actor"


def test_without_task_retries_calls_in_flight_fail(ray, tmp_path):
    @ray.remote(max_restarts=2)
    class Fragile:
        def crash_once(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "second"

        def ping(self):
            return "pong"

    a = Fragile.remote()
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(a.crash_once.remote(str(tmp_path / "b")))
    assert ray.get(a.ping.remote()) == "pong"  # restarted
    # per call: .options(max_task_retries=) and @method(max_task_retries=)
    assert ray.get(a.crash_once.options(max_task_retries=1).remote(str(tmp_path / "c"))) == "second"


def test_max_task_retries_per_method(ray, tmp_path):
    @ray.remote(max_restarts=-1)
    class Fragile:
        @ray.method(max_task_retries=2)
        def crash_twice(self, d):
            n = len(os.listdir(d))
            if n < 2:
                open(os.path.join(d, str(n)), "w").close()
                os._exit(1)
            return n

    d = tmp_path / "d"
    d.mkdir()
    assert ray.get(Fragile.remote().crash_twice.remote(str(d))) == 2
    with pytest.raises(ValueError, match="max_task_retries"):
        ray.method(max_task_retries=-2)


# ---------------------------------------------------------------- arguments and members

def test_remote_binds_arguments_at_the_call_site(ray):
    @ray.remote
    def f(x, y=1):
        return x + y

    with pytest.raises(TypeError):
        f.remote()
    with pytest.raises(TypeError):
        f.remote(1, 2, 3)
    with pytest.raises(TypeError):
        f.remote(1, z=2)
    assert ray.get(f.remote(1, y=2)) == 3

    @ray.remote
    class A:
        def __init__(self, a, *, b):
            self.v = a + b

        def get(self, k=0):
            return self.v + k

    with pytest.raises(TypeError):
        A.remote(1)
    with pytest.raises(TypeError):
        A.options(name=None).remote(1, 2)
    a = A.remote(1, b=2)
    with pytest.raises(TypeError):
        a.get.remote(1, 2)
    assert ray.get(a.get.remote(k=1)) == 4


def test_static_and_class_methods_and_class_names(ray):
    @ray.remote
    class Tools:
        scale = 10

        @staticmethod
        def double(x):
            return 2 * x

        @classmethod
        def scaled(cls, x):
            return cls.scale * x

        def plain(self):
            return Tools.__name__ if False else "plain"

    assert Tools.__name__ == "Tools"
    t = Tools.options(num_cpus=0).remote()
    assert ray.get(t.double.remote(21)) == 42
    assert ray.get(t.scaled.remote(3)) == 30
    with pytest.raises(TypeError):
        t.double.remote(1, 2)
    with pytest.raises(AttributeError):
        t.nothing  # noqa: B018
    with pytest.raises(TypeError):
        Tools()


# ---------------------------------------------------------------- lifetimes and namespaces

DRIVER1 = """
import shoal as ray
ray.init(namespace="team")

@ray.remote
class Keeper:
    def __init__(self):
        self.v = 0
    def add(self, k):
        self.v += k
        return self.v

d = Keeper.options(name="keeper", lifetime="detached").remote()
n = Keeper.options(name="plain").remote()
assert ray.get(d.add.remote(5)) == 5
assert ray.get(n.add.remote(1)) == 1
print("driver1 done", flush=True)
"""

DRIVER2 = """
import json
import shoal as ray
ray.init(namespace="team")

@ray.remote
def lookup():
    # the job's namespace reaches its workers: no namespace= needed here
    return ray.get(ray.get_actor("keeper").add.remote(1))

out = {"detached": ray.get(ray.get_actor("keeper").add.remote(10)), "from_task": ray.get(lookup.remote())}
try:
    ray.get_actor("plain")
    out["plain"] = "found"
except ValueError:
    out["plain"] = "gone"
try:
    ray.get_actor("keeper", namespace="other")
    out["other_ns"] = "found"
except ValueError:
    out["other_ns"] = "gone"
ray.kill(ray.get_actor("keeper"))
try:
    ray.get_actor("keeper")
    out["after_kill"] = "found"
except ValueError:
    out["after_kill"] = "gone"
print(json.dumps(out), flush=True)
"""


def test_detached_actor_outlives_its_driver_and_namespaces_reach_workers(tmp_path):
    from conftest import shoal_bin
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_") or k in ("SHOAL_TMPDIR", "SHOAL_LOG_LEVEL")}
    serve = subprocess.Popen([shoal_bin(), "serve", "--watch-stdin", "--num-cpus", "2"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
    try:
        info = json.loads(serve.stdout.readline())
        env.update(SHOAL_ADDRESS=info["address"], SHOAL_SECRET=info["secret"],
                   PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", ""))
        r1 = subprocess.run([sys.executable, "-c", DRIVER1], capture_output=True, text=True, timeout=120, env=env)
        assert r1.returncode == 0, r1.stderr
        r2 = subprocess.run([sys.executable, "-c", DRIVER2], capture_output=True, text=True, timeout=120, env=env)
        assert r2.returncode == 0, r2.stderr
        out = json.loads(r2.stdout.strip().splitlines()[-1])
        assert out == {"detached": 15, "from_task": 16, "plain": "gone", "other_ns": "gone", "after_kill": "gone"}
    finally:
        serve.stdin.close()
        try:
            serve.wait(timeout=20)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
