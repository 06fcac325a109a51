"""Actors as a Ray Core user writes them."""
import os
import time

import pytest


def test_actor_keeps_state_in_order(ray):
    @ray.remote
    class Counter:
        def __init__(self, start):
            self.n = start

        def add(self, k):
            self.n += k
            return self.n

        @ray.method(num_returns=2)
        def pair(self):
            return self.n, -self.n
    c = Counter.remote(10)
    assert ray.get([c.add.remote(1) for _ in range(20)]) == list(range(11, 31))
    a, b = c.pair.remote()
    assert ray.get([a, b]) == [30, -30]


def test_actor_handle_passed_to_task(ray):
    @ray.remote
    class Box:
        def __init__(self):
            self.v = []

        def push(self, x):
            self.v.append(x)

        def items(self):
            return self.v

    @ray.remote
    def fill(box, x):
        ray.get(box.push.remote(x))
        return True
    b = Box.remote()
    ray.get([fill.remote(b, i) for i in range(5)])
    assert sorted(ray.get(b.items.remote())) == list(range(5))


def test_named_actor_and_get_actor(ray):
    @ray.remote
    class Registry:
        def ping(self):
            return "pong"
    r = Registry.options(name="registry-1").remote()
    assert ray.get(r.ping.remote()) == "pong"
    same = ray.get_actor("registry-1")
    assert ray.get(same.ping.remote()) == "pong"
    with pytest.raises(ValueError):
        Registry.options(name="registry-1").remote()
    with pytest.raises(ValueError):
        ray.get_actor("no-such-actor")


def test_actor_method_error(ray):
    @ray.remote
    class Faulty:
        def fail(self):
            raise RuntimeError("actor says no")

        def ok(self):
            return 1
    f = Faulty.remote()
    with pytest.raises(ray.exceptions.RayTaskError) as ei:
        ray.get(f.fail.remote())
    assert "actor says no" in str(ei.value)
    assert ray.get(f.ok.remote()) == 1   # the actor survives its method's exception


def test_constructor_error_kills_actor(ray):
    @ray.remote
    class Broken:
        def __init__(self):
            raise ValueError("cannot build")

        def f(self):
            return 1
    b = Broken.remote()
    with pytest.raises(ray.exceptions.RayActorError) as ei:
        ray.get(b.f.remote())
    assert "cannot build" in str(ei.value)


def test_kill_actor(ray):
    @ray.remote
    class Sleeper:
        def pid(self):
            return os.getpid()
    s = Sleeper.remote()
    pid = ray.get(s.pid.remote())
    ray.kill(s)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(s.pid.remote())
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the killed actor's process is still running")


def test_actor_restarts_after_its_process_dies(ray):
    @ray.remote(max_restarts=1)
    class Phoenix:
        def __init__(self):
            self.calls = 0

        def pid(self):
            self.calls += 1
            return os.getpid(), self.calls

        def die(self):
            os._exit(1)
    p = Phoenix.remote()
    pid1, _ = ray.get(p.pid.remote())
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(p.die.remote())
    pid2, calls = ray.get(p.pid.remote())
    assert pid2 != pid1 and calls == 1    # a fresh instance
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(p.die.remote())
    with pytest.raises(ray.exceptions.RayActorError):   # no restarts left
        ray.get(p.pid.remote())


def test_actor_resources_are_held(ray):
    @ray.remote(num_cpus=1, resources={"slot": 1})
    class Holder:
        def ok(self):
            return True
    assert ray.cluster_resources().get("slot") is None
    h = Holder.options(resources={}).remote()
    assert ray.get(h.ok.remote())
