"""A first-in, first-out queue held by an actor, as ray.util.queue.Queue.

Any task, actor or driver that has the Queue object (it pickles as a handle to the same actor)
puts and gets. put/get block (optionally up to a timeout), the *_nowait forms raise Full/Empty at
once, the batch forms move several items in one call, put_async/get_async/peek_async are
coroutines, and peek/clear are the newest Ray's.

The actor answers every call at once and never blocks: a blocking put or get asks again, after
waits growing from 1 ms to 50 ms, until it succeeds or its timeout passes (docs/ray-util.md). So
one queue actor serves any number of blocked callers without async actors or threads in it, and a
caller that gives up leaves nothing behind in the actor.
"""
import asyncio
import collections.abc
import queue as _stdqueue
import time
from collections import deque

from .. import _api

__all__ = ["Queue", "Empty", "Full"]

_POLL_FIRST, _POLL_MAX = 0.001, 0.05


class Empty(_stdqueue.Empty):
    """get on an empty queue, without blocking or after its timeout."""


class Full(_stdqueue.Full):
    """put on a full queue, without blocking or after its timeout."""


class _QueueActor:
    def __init__(self, maxsize):
        self.maxsize = maxsize
        self.items = deque()

    def qsize(self):
        return len(self.items)

    def empty(self):
        return not self.items

    def full(self):
        return 0 < self.maxsize <= len(self.items)

    def put_nowait(self, item):
        if self.full():
            return False
        self.items.append(item)
        return True

    def put_nowait_batch(self, items):
        if self.maxsize > 0 and len(items) + len(self.items) > self.maxsize:
            return f"Cannot add {len(items)} items to queue of size {len(self.items)} and maxsize {self.maxsize}."
        self.items.extend(items)
        return None

    def get_nowait(self):
        if not self.items:
            return False, None
        return True, self.items.popleft()

    def peek(self):
        if not self.items:
            return False, None
        return True, self.items[0]

    def clear(self):
        self.items.clear()

    def get_nowait_batch(self, num_items):
        if num_items > len(self.items):
            return False, f"Cannot get {num_items} items from queue of size {len(self.items)}."
        return True, [self.items.popleft() for _ in range(num_items)]


def _check_timeout(timeout):
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    """A first-in, first-out queue on an actor, as ray.util.queue.Queue.

    Args:
        maxsize: the most items the queue holds; 0 (the default) is unbounded; less raises
            ValueError (as Ray's latest).
        actor_options: options for the queue's actor, as for ActorClass.options(...) (e.g.
            {"num_cpus": 1}, a name, a scheduling strategy).

    Examples:
        >>> q = Queue(maxsize=100)
        >>> q.put(1); q.put_nowait_batch([2, 3])
        >>> q.get(), q.get_nowait_batch(2)
        (1, [2, 3])
    """

    def __init__(self, maxsize=0, actor_options=None):
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"Queue(maxsize={maxsize!r}): maxsize must be an integer (0 is unbounded)")
        if maxsize < 0:
            raise ValueError(f"Queue(maxsize={maxsize}): maxsize must be >= 0 (0 is unbounded)")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(f"Queue(actor_options=...) must be a dict of actor options, got {type(actor_options).__name__}")
        self.maxsize = maxsize
        self.actor = _api.remote(_QueueActor).options(**(actor_options or {})).remote(maxsize)

    def _handle(self):
        if self.actor is None:
            raise RuntimeError("this Queue was shut down (Queue.shutdown()); make a new Queue")
        return self.actor

    def __len__(self):
        return self.size()

    def size(self):
        """The number of items in the queue."""
        return _api.get(self._handle().qsize.remote())

    def qsize(self):
        """The number of items in the queue."""
        return self.size()

    def empty(self):
        return _api.get(self._handle().empty.remote())

    def full(self):
        return _api.get(self._handle().full.remote())

    # ---- put

    def put(self, item, block=True, timeout=None):
        """Add item. With block=True and a full queue, wait until there is room or timeout
        passes. Raises Full (full and not blocking, or timed out) and ValueError (timeout < 0)."""
        if not block:
            if not _api.get(self._handle().put_nowait.remote(item)):
                raise Full
            return
        _check_timeout(timeout)
        if _api.get(self._handle().put_nowait.remote(item)):
            return
        stored = _Stored(_api.put(item))  # copied once, however many times the actor is asked
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST / 2
        while True:
            pause = _pause(deadline, pause, Full)
            time.sleep(pause)
            if _api.get(self._handle().put_nowait.remote(stored)):
                return

    async def put_async(self, item, block=True, timeout=None):
        """put as a coroutine: the event loop runs meanwhile."""
        if not block:
            if not await self._handle().put_nowait.remote(item):
                raise Full
            return
        _check_timeout(timeout)
        if await self._handle().put_nowait.remote(item):
            return
        stored = _Stored(_api.put(item))
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST / 2
        while True:
            pause = _pause(deadline, pause, Full)
            await asyncio.sleep(pause)
            if await self._handle().put_nowait.remote(stored):
                return

    def put_nowait(self, item):
        """put(item, block=False)."""
        return self.put(item, block=False)

    def put_nowait_batch(self, items):
        """Add every item of an iterable in order, or none of them (Full when they do not fit)."""
        if not isinstance(items, collections.abc.Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        err = _api.get(self._handle().put_nowait_batch.remote(list(items)))
        if err:
            raise Full(err)

    # ---- get

    def get(self, block=True, timeout=None):
        """Remove and return the first item. With block=True and an empty queue, wait until an
        item comes or timeout passes. Raises Empty (empty and not blocking, or timed out) and
        ValueError (timeout < 0)."""
        if not block:
            ok, item = _api.get(self._handle().get_nowait.remote())
            if not ok:
                raise Empty
            return _value(item)
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST / 2
        while True:
            ok, item = _api.get(self._handle().get_nowait.remote())
            if ok:
                return _value(item)
            pause = _pause(deadline, pause, Empty)
            time.sleep(pause)

    async def get_async(self, block=True, timeout=None):
        """get as a coroutine: the event loop runs meanwhile."""
        if not block:
            ok, item = await self._handle().get_nowait.remote()
            if not ok:
                raise Empty
            return await _value_async(item)
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST / 2
        while True:
            ok, item = await self._handle().get_nowait.remote()
            if ok:
                return await _value_async(item)
            pause = _pause(deadline, pause, Empty)
            await asyncio.sleep(pause)

    def get_nowait(self):
        """get(block=False)."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items):
        """Remove and return num_items items in order, or none (Empty when fewer are there)."""
        if not isinstance(num_items, int) or isinstance(num_items, bool):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        ok, out = _api.get(self._handle().get_nowait_batch.remote(num_items))
        if not ok:
            raise Empty(out)
        return [_value(v) for v in out]

    def peek(self):
        """The first item, left in the queue; Empty when there is none."""
        ok, item = _api.get(self._handle().peek.remote())
        if not ok:
            raise Empty
        return _value(item)

    async def peek_async(self):
        """peek as a coroutine."""
        ok, item = await self._handle().peek.remote()
        if not ok:
            raise Empty
        return await _value_async(item)

    def clear(self):
        """Drop every item."""
        _api.get(self._handle().clear.remote())

    def shutdown(self, force=False, grace_period_s=5):
        """Stop the queue's actor (its items are dropped). force is accepted for Ray's signature:
        the actor holds no work to finish, so it is always stopped at once. Later calls on this
        Queue raise RuntimeError."""
        if self.actor is not None:
            _api.kill(self.actor, no_restart=True)
        self.actor = None


class _Stored:
    """An item that a blocking put found no room for and stored in the object store, so that
    asking the actor again costs no copy of it; get returns its value."""

    __slots__ = ("ref",)

    def __init__(self, ref):
        self.ref = ref

    def __reduce__(self):
        return (_Stored, (self.ref,))


def _value(item):
    return _api.get(item.ref) if isinstance(item, _Stored) else item


async def _value_async(item):
    return (await item.ref) if isinstance(item, _Stored) else item


def _pause(deadline, pause, error):
    """How long a blocking call waits before asking again: the last wait doubled, at most
    _POLL_MAX and never past the deadline; raises error once the deadline has passed."""
    pause = min(pause * 2, _POLL_MAX)
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise error
        pause = min(pause, left)
    return pause
