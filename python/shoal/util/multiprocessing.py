"""multiprocessing.Pool on a shoal cluster, as ray.util.multiprocessing.Pool.

The pool's processes are actors (one CPU each, spread over the cluster's nodes); map and its
kin cut the input into chunks and send each chunk to one actor as one call, so a cluster of many
nodes runs a program written for multiprocessing.Pool without changes:

    from shoal.util.multiprocessing import Pool

    with Pool(processes=8) as pool:
        print(pool.map(pow2, range(100)))

An exception raised by the function is raised again, as itself, by get()/map() in the caller
(as multiprocessing does); callbacks run on a thread of the caller's process.
"""
import collections
import itertools
import os
import threading
from multiprocessing import TimeoutError  # noqa: A004 - the name multiprocessing users catch

from .. import _api

__all__ = ["Pool", "AsyncResult", "IMapIterator", "TimeoutError"]


class _Failure:
    """An exception of the user's function, carried back as a value (so that a chunk's other
    results survive and the caller raises the exception itself, not a wrapper)."""

    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc

    def __reduce__(self):
        return (_Failure, (self.exc,))


class _PoolActor:
    def __init__(self, initializer=None, initargs=None):
        if initializer is not None:
            initializer(*(initargs or ()))

    def ping(self):
        return True

    def run_batch(self, func, batch, star):
        out = []
        for args in batch:
            try:
                out.append(func(*args) if star else func(args))
            except Exception as e:  # noqa: BLE001 - the user's function may raise anything
                out.append(_Failure(e))
        return out

    def apply(self, func, args, kwds):
        try:
            return func(*args, **kwds)
        except Exception as e:  # noqa: BLE001
            return _Failure(e)


def _unwrap(v):
    if isinstance(v, _Failure):
        raise v.exc
    return v


class AsyncResult:
    """The result of apply_async / map_async / starmap_async, as multiprocessing.pool.AsyncResult."""

    def __init__(self, refs, single, callback=None, error_callback=None):
        self._refs = refs            # one ref per chunk (or the one ref of apply_async)
        self._single = single
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._value = None
        self._error = None
        self._callback = callback
        self._error_callback = error_callback
        if callback is not None or error_callback is not None:
            threading.Thread(target=self._finish, daemon=True, name="shoal-pool-result").start()

    def _finish(self, timeout=None):
        with self._lock:
            if self._done.is_set():
                return True
            try:
                chunks = _api.get(self._refs, timeout=timeout)
            except _api.exc.GetTimeoutError:
                return False
            except Exception as e:  # noqa: BLE001 - e.g. the actor died
                self._error = e
            else:
                try:
                    if self._single:
                        self._value = _unwrap(chunks[0])
                    else:
                        self._value = [_unwrap(v) for chunk in chunks for v in chunk]
                except Exception as e:  # noqa: BLE001 - the user's function raised
                    self._error = e
            self._done.set()
        if self._error is None and self._callback is not None:
            self._callback(self._value)
        if self._error is not None and self._error_callback is not None:
            self._error_callback(self._error)
        return True

    def ready(self):
        """Whether the call has finished."""
        if self._done.is_set():
            return True
        ready, _ = _api.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        return len(ready) == len(self._refs)

    def successful(self):
        """Whether the call finished without raising; ValueError while it has not finished."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        self._finish()
        return self._error is None

    def wait(self, timeout=None):
        """Wait until the result is ready or timeout seconds have passed."""
        if self._callback is not None or self._error_callback is not None:
            self._done.wait(timeout)
            return
        _api.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)

    def get(self, timeout=None):
        """The result; raises the function's exception, or multiprocessing.TimeoutError when
        timeout seconds pass first."""
        if self._callback is not None or self._error_callback is not None:
            if not self._done.wait(timeout):
                raise TimeoutError
        elif not self._finish(timeout):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


class IMapIterator:
    """The iterator of imap / imap_unordered; next(timeout=) as multiprocessing's. The input is
    read lazily, as in Ray: two chunks per process are in flight, and the next ones are sent as
    results are taken, so an endless iterator works. An element whose call raised comes out as
    its exception object, as Ray's imap gives it (multiprocessing's raises it)."""

    def __init__(self, pool, func, iterable, chunksize, ordered, star=False):
        self._pool = pool
        self._func = func
        self._star = star
        self._it = iter(iterable)
        self._chunksize = chunksize
        self._exhausted = False
        self._refs = collections.deque()   # chunks sent, results not yet taken
        self._ordered = ordered
        self._buffer = collections.deque()
        self._fill()

    def _fill(self):
        while not self._exhausted and len(self._refs) < 2 * self._pool._processes:
            batch = list(itertools.islice(self._it, self._chunksize))
            if len(batch) < self._chunksize:
                self._exhausted = True
            if batch:
                self._refs.append(self._pool._submit_batch(self._func, batch, self._star))

    def __iter__(self):
        return self

    def next(self, timeout=None):
        while not self._buffer:
            self._fill()
            if not self._refs:
                raise StopIteration
            if self._ordered:
                ready, _ = _api.wait([self._refs[0]], timeout=timeout)
            else:
                ready, _ = _api.wait(list(self._refs), num_returns=1, timeout=timeout)
            if not ready:
                raise TimeoutError
            self._refs.remove(ready[0])
            self._buffer.extend(_api.get(ready[0]))
            self._fill()
        v = self._buffer.popleft()
        # as Ray's imap: a call that raised yields its exception (multiprocessing's raises it)
        return v.exc if isinstance(v, _Failure) else v

    __next__ = next


def _chunks(iterable, chunksize):
    it = iter(iterable)
    while True:
        batch = list(itertools.islice(it, chunksize))
        if not batch:
            return
        yield batch


class Pool:
    """A pool of worker processes (actors), as multiprocessing.Pool and ray.util.multiprocessing.Pool.

    Args:
        processes: the number of actors; default the cluster's CPUs. More than the cluster's
            CPUs raises ValueError.
        initializer, initargs: initializer(*initargs) runs once in each actor as it starts.
        maxtasksperchild: after this many calls (a chunk is one call) an actor is replaced by a
            new one; default None, never.
        context: accepted for multiprocessing's signature (each actor is its own process, so the
            start method does not apply), as in Ray.
        ray_address: the cluster to connect to when not connected yet (shoal.init(address));
            without one, and outside `shoal run`, a local cluster of `processes` CPUs is started,
            as Ray does.
        ray_remote_args: options for the actors, as for ActorClass.options(...). Default: one
            CPU per actor in a driver (so the actors spread over the nodes), none inside a task or
            actor (as Ray's always do: a pool made by a pool's function never waits for the CPUs
            its parent holds).
    """

    def __init__(self, processes=None, initializer=None, initargs=None, maxtasksperchild=None, context=None,
                 ray_address=None, ray_remote_args=None):
        if not _api.is_initialized():
            local = ray_address in (None, "local") and (ray_address == "local" or not os.environ.get("SHOAL_ADDRESS"))
            if local and isinstance(processes, int) and processes >= 1:
                _api.init(address=ray_address, num_cpus=processes)
            else:
                _api.init(address=ray_address)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int) or maxtasksperchild < 1):
            raise ValueError(f"maxtasksperchild must be a positive integer or None, got {maxtasksperchild!r}")
        cpus = int(_api.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = max(1, cpus)
        if not isinstance(processes, int) or processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if processes > cpus:
            raise ValueError(f"Tried to start a pool with {processes} processes on a cluster with only {cpus} CPUs; "
                             "ask for fewer processes or start the cluster with more (shoal.init(num_cpus=...))")
        self._processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasks = maxtasksperchild
        in_worker = _api.C._client is not None and _api.C._client.role == "worker"
        self._remote_args = {"num_cpus": 0 if in_worker else 1, **(ray_remote_args or {})}
        self._cls = _api.remote(_PoolActor).options(**self._remote_args)
        self._actors = [self._new_actor() for _ in range(processes)]
        self._calls = [0] * processes
        self._next = 0
        self._outstanding = []   # refs not known to be finished, for join()
        self._state = "running"
        # an actor that cannot start (the initializer raised) fails the pool here, as
        # multiprocessing would keep failing; Ray raises on first use
        try:
            _api.get([a.ping.remote() for a in self._actors])
        except BaseException:
            self.terminate()  # the actors that did start are not left behind
            raise

    def _new_actor(self):
        return self._cls.remote(self._initializer, self._initargs)

    def __repr__(self):
        return f"<shoal.util.multiprocessing.Pool state={self._state} pool_size={self._processes}>"

    # ---- lifecycle

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc_info):
        self.terminate()

    def _check_running(self):
        if self._state != "running":
            raise ValueError("Pool not running")

    def close(self):
        """No more work may be submitted; join() then waits for what was."""
        if self._state == "running":
            self._state = "closed"

    def terminate(self):
        """Stop the actors at once; work not finished is lost."""
        if self._state == "terminated":
            return
        self._state = "terminated"
        for a in self._actors:
            try:
                _api.kill(a)
            except Exception:  # noqa: BLE001 - a dead actor or a closed connection
                pass
        self._actors = []
        self._outstanding = []

    def join(self):
        """Wait for the submitted work to finish and stop the actors; close() or terminate()
        first (ValueError otherwise)."""
        if self._state == "running":
            raise ValueError("Pool is still running")
        if self._outstanding:
            _api.wait(self._outstanding, num_returns=len(self._outstanding))
        self.terminate()

    # ---- submission

    def _pick(self):
        i = self._next
        self._next = (self._next + 1) % self._processes
        if self._maxtasks is not None and self._calls[i] >= self._maxtasks:
            old = self._actors[i]
            self._actors[i] = self._new_actor()
            self._calls[i] = 0
            # the old actor finishes the calls it has, then goes
            _Retire(old).start()
        self._calls[i] += 1
        return self._actors[i]

    def _track(self, ref):
        if len(self._outstanding) >= 256:
            _, self._outstanding = _api.wait(self._outstanding, num_returns=len(self._outstanding), timeout=0)
        self._outstanding.append(ref)
        return ref

    def _submit_batch(self, func, batch, star):
        if self._state == "terminated":
            raise ValueError("Pool not running")
        return self._track(self._pick().run_batch.remote(func, batch, star))

    def _chunksize(self, n, chunksize):
        if chunksize is None:
            chunksize, extra = divmod(n, self._processes * 4)
            if extra:
                chunksize += 1
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        return chunksize

    def _map_async(self, func, iterable, chunksize, star, callback=None, error_callback=None):
        self._check_running()
        items = list(iterable)
        size = self._chunksize(len(items), chunksize) if items else 1
        refs = [self._submit_batch(func, batch, star) for batch in _chunks(items, size)]
        return AsyncResult(refs, single=False, callback=callback, error_callback=error_callback)

    def apply(self, func, args=(), kwds=None):
        """func(*args, **kwds) on one of the actors; its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        """func(*args, **kwds) on one of the actors; an AsyncResult."""
        self._check_running()
        ref = self._track(self._pick().apply.remote(func, tuple(args), dict(kwds or {})))
        return AsyncResult([ref], single=True, callback=callback, error_callback=error_callback)

    def map(self, func, iterable, chunksize=None):
        """[func(x) for x in iterable], run in chunks across the actors."""
        return self._map_async(func, iterable, chunksize, False).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        """[func(*args) for args in iterable], run in chunks across the actors."""
        return self._map_async(func, iterable, chunksize, True).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func, iterable, chunksize=1):
        """An iterator of func(x) in the order of iterable, each result as soon as it and those
        before it are done."""
        self._check_running()
        return IMapIterator(self, func, iterable, self._chunksize(0, chunksize), ordered=True)

    def imap_unordered(self, func, iterable, chunksize=1):
        """An iterator of func(x) in the order they finish."""
        self._check_running()
        return IMapIterator(self, func, iterable, self._chunksize(0, chunksize), ordered=False)


class _Retire(threading.Thread):
    """Kill an actor once the calls sent to it have finished (maxtasksperchild)."""

    def __init__(self, actor):
        super().__init__(daemon=True, name="shoal-pool-retire")
        self._actor = actor
        self._last = actor.ping.remote()  # actors run calls in order: this one comes last

    def run(self):
        try:
            _api.wait([self._last])
            _api.kill(self._actor)
        except Exception:  # noqa: BLE001 - the cluster went away meanwhile
            pass
