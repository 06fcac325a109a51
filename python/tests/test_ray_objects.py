"""Objects and waiting as Ray documents them (ray.get, ray.wait, ObjectRef.future, `await ref`):
the edge cases of Ray's API reference, on a one-node cluster started by init()."""
import asyncio
import concurrent.futures
import time
import warnings

import pytest


@pytest.fixture(scope="module")
def fns(ray):
    @ray.remote
    def sleep_for(t, v=None):
        time.sleep(t)
        return t if v is None else v

    @ray.remote
    def fail(msg):
        raise ValueError(msg)

    @ray.remote
    def awaits_inside(ref_list):
        # a worker awaiting refs it was given (nested, so not resolved before the call)
        async def main():
            vals = await asyncio.gather(*ref_list)
            one = await ref_list[0]
            return vals, one
        return asyncio.run(main())
    return sleep_for, fail, awaits_inside


# ---------------------------------------------------------------- get

def test_get_one_and_list_order(ray, fns):
    sleep_for, _, _ = fns
    refs = [sleep_for.remote(0.3 - 0.1 * i, i) for i in range(3)] + [ray.put("p")]
    assert ray.get(refs) == [0, 1, 2, "p"]
    assert ray.get(refs[3]) == "p"
    assert ray.get([]) == []


def test_get_rejects_what_ray_rejects(ray, fns):
    r = ray.put(1)
    with pytest.raises(TypeError, match="not an ObjectRef"):
        ray.get([r, 2])
    with pytest.raises(TypeError, match="not an ObjectRef"):
        ray.get([[r]])  # nested lists are not walked, as in Ray
    for bad in ((r,), {r}, 3, "x", None):
        with pytest.raises(ValueError, match="must either be an ObjectRef or a list of ObjectRefs"):
            ray.get(bad)
    with pytest.raises(ValueError, match="nonnegative"):
        ray.get(r, timeout=-1)


def test_get_does_not_resolve_refs_inside_values(ray):
    inner = ray.put(41)
    outer = ray.put([inner, {"k": inner}])
    got = ray.get(outer)
    assert isinstance(got[0], ray.ObjectRef) and got[1]["k"] == inner
    assert ray.get(got[0]) == 41


def test_get_timeout(ray, fns):
    sleep_for, _, _ = fns
    slow = sleep_for.remote(3)
    with pytest.raises(ray.exceptions.GetTimeoutError) as ei:
        ray.get(slow, timeout=0)
    assert isinstance(ei.value, TimeoutError)
    with pytest.raises(ray.exceptions.GetTimeoutError):
        ray.get([ray.put(1), slow], timeout=0.2)
    done = ray.put("ready")
    assert ray.get(done, timeout=0) == "ready"
    assert ray.get(slow) == 3  # had a get above waited for it, it would have returned this


def test_get_raises_the_task_error_as_its_cause(ray, fns):
    _, fail, _ = fns
    r = fail.remote("boom")
    with pytest.raises(ValueError, match="boom") as ei:
        ray.get([ray.put(1), r])
    assert isinstance(ei.value, ray.exceptions.RayTaskError)


# ---------------------------------------------------------------- wait

def test_wait_empty_and_errors(ray, fns):
    sleep_for, _, _ = fns
    assert ray.wait([]) == ([], [])
    assert ray.wait([], num_returns=3, timeout=0) == ([], [])
    r = ray.put(1)
    with pytest.raises(TypeError, match="single"):
        ray.wait(r)
    with pytest.raises(TypeError):
        ray.wait((r,))
    with pytest.raises(TypeError, match="list containing"):
        ray.wait([r, 1])
    with pytest.raises(ValueError, match="unique"):
        ray.wait([r, r])
    with pytest.raises(ValueError, match="greater than the number"):
        ray.wait([r], num_returns=2)
    with pytest.raises(ValueError, match="Invalid number"):
        ray.wait([r], num_returns=0)
    with pytest.raises(ValueError, match="nonnegative"):
        ray.wait([r], timeout=-0.5)


def test_wait_order_count_and_timeout(ray, fns):
    sleep_for, _, _ = fns
    slow = sleep_for.remote(3)
    done = [ray.put(i) for i in range(3)]
    refs = [done[2], slow, done[0], done[1]]
    ready, rest = ray.wait(refs, num_returns=4, timeout=0)  # had it waited, slow would be ready
    assert ready == [done[2], done[0], done[1]] and rest == [slow]  # input order kept
    ready, rest = ray.wait(refs, num_returns=2)
    assert ready == [done[2], done[0]] and rest == [slow, done[1]]  # at most num_returns
    ready, rest = ray.wait(refs, num_returns=1, timeout=0.1, fetch_local=False)
    assert ready == [done[2]] and len(rest) == 3
    ready, rest = ray.wait([slow], timeout=0.1)
    assert ready == [] and rest == [slow]
    ready, rest = ray.wait([slow, done[0]], num_returns=2)  # no timeout: waits for both
    assert ready == [slow, done[0]] and rest == []


# ---------------------------------------------------------------- futures and asyncio

def test_future(ray, fns):
    sleep_for, fail, _ = fns
    f = sleep_for.remote(0.2, "v").future()
    assert isinstance(f, concurrent.futures.Future)
    assert f.result(timeout=30) == "v"
    with pytest.raises(ValueError, match="bad"):
        fail.remote("bad").future().result(timeout=30)
    assert ray.put(7).future().result(timeout=5) == 7


def test_await_gather_wait_for(ray, fns):
    sleep_for, fail, _ = fns

    async def main():
        one = await sleep_for.remote(0.1, "a")
        many = await asyncio.gather(*[sleep_for.remote(0.2 - 0.05 * i, i) for i in range(4)])
        slow = sleep_for.remote(2.5, "late")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow, 0.2)
        with pytest.raises(ValueError, match="async boom"):
            await fail.remote("async boom")
        later = await asyncio.wait_for(slow, 30)
        put = await ray.put({"x": 1})
        fut = ray.put(3).as_future()
        assert isinstance(fut, asyncio.Future)
        # asyncio.wait takes futures (Python 3.11 refuses other awaitables): as_future() is one
        done, pending = await asyncio.wait([sleep_for.remote(0, 1).as_future(), sleep_for.remote(0, 2).as_future()])
        return one, many, later, put, await fut, sorted(t.result() for t in done), pending
    one, many, later, put, three, waited, pending = asyncio.run(main())
    assert (one, many, later, put, three, waited, pending) == ("a", [0, 1, 2, 3], "late", {"x": 1}, 3, [1, 2], set())


def test_blocking_get_in_a_coroutine(ray, fns):
    sleep_for, _, _ = fns

    async def main():
        refs = [sleep_for.remote(0, i) for i in range(3)]
        vals = ray.get(refs)  # blocks the loop, allowed; a driver's coroutine is not warned, as in Ray
        ready, _ = ray.wait(refs, num_returns=3)
        return vals, len(ready)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asyncio.run(main()) == ([0, 1, 2], 3)

    @ray.remote
    def in_worker_loop(refs):
        import logging
        import shoal
        seen = []
        handler = logging.Handler()
        handler.emit = lambda rec: seen.append(rec.getMessage())
        logging.getLogger("shoal").addHandler(handler)

        async def main():
            return shoal.get(refs), shoal.get(refs)
        vals = asyncio.run(main())
        return vals, seen
    vals, seen = ray.get(in_worker_loop.remote([sleep_for.remote(0, 5)]))  # in a list: the ref itself travels
    assert vals == ([5], [5])
    assert len(seen) == 1 and "blocks its event loop" in seen[0]  # once per process, as Ray logs it


def test_await_inside_a_worker(ray, fns):
    sleep_for, _, awaits_inside = fns
    refs = [sleep_for.remote(0.1, i) for i in range(3)]
    vals, one = ray.get(awaits_inside.remote(refs))
    assert vals == [0, 1, 2] and one == 0
