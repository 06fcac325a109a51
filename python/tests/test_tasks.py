"""Tasks as a Ray Core user writes them."""
import os
import time

import pytest


def test_fanout_and_gather(ray):
    @ray.remote
    def square(x):
        return x * x
    assert ray.get([square.remote(i) for i in range(50)]) == [i * i for i in range(50)]


def test_kwargs_and_multiple_returns(ray):
    @ray.remote(num_returns=3)
    def split(a, b=10, *, c):
        return a, b, c
    r1, r2, r3 = split.remote(1, c=3)
    assert ray.get([r1, r2, r3]) == [1, 10, 3]


def test_refs_as_arguments_are_resolved(ray):
    @ray.remote
    def add(a, b):
        return a + b
    x = ray.put(40)
    y = add.remote(1, 1)
    assert ray.get(add.remote(x, y)) == 42


def test_nested_refs_are_passed_as_refs(ray):
    @ray.remote
    def inner(lst):
        assert isinstance(lst[0], ray.ObjectRef)
        return ray.get(lst[0]) + 1
    r = ray.put(41)
    assert ray.get(inner.remote([r])) == 42


def test_tasks_that_submit_tasks_do_not_deadlock(ray):
    # more waiting parents than CPUs: each parent gives its CPU back while it waits
    @ray.remote
    def leaf(i):
        return i

    @ray.remote
    def parent(i):
        return sum(ray.get([leaf.remote(i), leaf.remote(i)]))
    assert ray.get([parent.remote(i) for i in range(8)]) == [2 * i for i in range(8)]


def test_large_arguments_and_results(ray):
    @ray.remote
    def echo_len(b):
        return len(b), b[:3] + b[-3:], b"x" * (3 << 20)
    data = os.urandom(1 << 20)
    n, ends, big = ray.get(echo_len.remote(data))
    assert n == len(data) and ends == data[:3] + data[-3:]
    assert big == b"x" * (3 << 20)


def test_task_error_carries_remote_traceback(ray):
    @ray.remote
    def boom(x):
        raise ValueError(f"bad value {x}")
    with pytest.raises(ray.exceptions.RayTaskError) as ei:
        ray.get(boom.remote(7))
    assert isinstance(ei.value, ValueError)   # as in Ray: catchable as the original class too
    assert "bad value 7" in str(ei.value)
    assert "boom" in str(ei.value) and "Traceback" in str(ei.value)


def test_error_propagates_through_dependent_tasks(ray):
    @ray.remote
    def boom():
        raise KeyError("first")

    @ray.remote
    def plus_one(x):
        return x + 1
    with pytest.raises(ray.exceptions.RayTaskError) as ei:
        ray.get(plus_one.remote(boom.remote()))
    assert "first" in str(ei.value)


def test_get_timeout(ray):
    @ray.remote
    def slow():
        time.sleep(3)
        return 1
    r = slow.remote()
    with pytest.raises(ray.exceptions.GetTimeoutError):
        ray.get(r, timeout=0.2)
    assert ray.get(r) == 1


def test_wait(ray):
    @ray.remote
    def sleep_for(t):
        time.sleep(t)
        return t
    fast, slow = sleep_for.remote(0), sleep_for.remote(2.5)
    ready, not_ready = ray.wait([slow, fast], num_returns=1, timeout=10)
    assert ready == [fast] and not_ready == [slow]
    ready, not_ready = ray.wait([slow], num_returns=1, timeout=0.1)
    assert ready == [] and not_ready == [slow]
    with pytest.raises(ValueError):
        ray.wait([fast], num_returns=2)


def test_worker_killed_is_retried(ray, tmp_path):
    marker = tmp_path / "attempt"

    @ray.remote(max_retries=2)
    def die_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return "second attempt"
    assert ray.get(die_once.remote(str(marker))) == "second attempt"


def test_worker_killed_without_retries_raises(ray):
    @ray.remote(max_retries=0)
    def die():
        os._exit(1)
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(die.remote())

    @ray.remote
    def ok():
        return "still serving"
    assert ray.get(ok.remote()) == "still serving"


def test_resources_queue_and_custom(ray):
    @ray.remote(num_cpus=2)
    def two(i):
        time.sleep(0.05)
        return i
    assert sorted(ray.get([two.remote(i) for i in range(6)])) == list(range(6))

    @ray.remote(resources={"unicorn": 1})
    def needs_unicorn():
        return 1
    with pytest.raises(ray.exceptions.TaskUnschedulableError) as ei:
        ray.get(needs_unicorn.remote())
    assert "unicorn" in str(ei.value)

    @ray.remote(num_cpus=64)
    def too_big():
        return 1
    with pytest.raises(ray.exceptions.TaskUnschedulableError):
        ray.get(too_big.remote())


def test_remote_function_called_directly_is_an_error(ray):
    @ray.remote
    def f():
        return 1
    with pytest.raises(TypeError):
        f()
