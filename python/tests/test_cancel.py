"""ray.cancel as Ray users call it (issue 13): a queued task never runs, a running one gets
TaskCancelledError, force kills its worker, recursive reaches the tasks it submitted."""
import os
import time

import pytest


def test_queued_task_never_runs(ray, tmp_path):
    marker = tmp_path / "ran"

    @ray.remote(num_cpus=4)
    def hog(s):
        time.sleep(s)
        return "hog"

    @ray.remote(num_cpus=4)
    def touch(p):
        open(p, "w").close()
        return "ran"

    h = hog.remote(1.5)
    t = touch.remote(str(marker))
    ray.cancel(t)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(t, timeout=30)
    assert ray.get(h, timeout=30) == "hog"
    time.sleep(0.3)
    assert not marker.exists(), "a cancelled task ran"


def test_running_task_is_interrupted(ray):
    @ray.remote
    def spin():
        for _ in range(600):
            time.sleep(0.1)
        return "finished"

    r = spin.remote()
    time.sleep(1.0)  # let it start
    t0 = time.time()
    ray.cancel(r)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(r, timeout=30)
    assert time.time() - t0 < 20


def test_force_kills_a_task_that_ignores_interrupts(ray):
    @ray.remote(max_retries=3)
    def stubborn():
        while True:
            try:
                time.sleep(60)
            except BaseException:  # noqa: BLE001 - it swallows the interrupt on purpose
                pass
        return os.getpid()

    @ray.remote
    def pid():
        return os.getpid()

    r = stubborn.remote()
    time.sleep(1.0)
    ray.cancel(r, force=True)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(r, timeout=30)
    # not retried, and the cluster goes on
    assert isinstance(ray.get(pid.remote(), timeout=30), int)


def test_recursive_cancels_children(ray):
    @ray.remote
    def child():
        time.sleep(60)
        return "child"

    @ray.remote
    def parent():
        c = child.remote()
        ray.get(c)
        return "parent"

    p = parent.remote()
    time.sleep(1.5)  # parent runs and its child starts
    ray.cancel(p, force=True, recursive=True)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(p, timeout=30)


def test_cancel_of_a_finished_task_changes_nothing(ray):
    @ray.remote
    def one():
        return 1

    r = one.remote()
    assert ray.get(r) == 1
    ray.cancel(r)
    assert ray.get(r) == 1


def test_cancel_rejects_what_is_not_a_ref(ray):
    with pytest.raises(TypeError):
        ray.cancel(42)
