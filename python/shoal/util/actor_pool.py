"""ActorPool: spread calls over a fixed set of actors, as ray.util.ActorPool does.

A call goes to an idle actor at once, or waits in the pool (in submission order) until one is
returned; results come back in submission order (get_next, map) or as they finish
(get_next_unordered, map_unordered). Everything runs in the caller's process; the actors are the
user's, the pool only lends them out.
"""
from .. import _api


class ActorPool:
    """Utility class to operate on a fixed pool of actors.

    Arguments:
        actors: the actor handles to use (the pool takes them as they are; it does not create
            or kill actors).

    Examples:
        >>> pool = ActorPool([Worker.remote() for _ in range(2)])
        >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4]))
        [2, 4, 6, 8]
    """

    def __init__(self, actors):
        self._idle_actors = list(actors)
        self._future_to_actor = {}   # ref (or tuple of refs) -> (index, actor)
        self._index_to_future = {}   # submission index -> ref (or list of refs)
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits = []   # (fn, value) waiting for an idle actor

    # ---- bulk

    def map(self, fn, values):
        """Apply fn(actor, value) to every value; returns an iterator of the results in the
        order of values. fn must return an ObjectRef (of a call on the actor). Results of earlier
        submissions not yet taken are dropped first, as Ray does."""
        self._drop_outstanding()
        for v in values:
            self.submit(fn, v)

        def results():
            while self.has_next():
                yield self.get_next()
        return results()

    def map_unordered(self, fn, values):
        """As map, but the results come back as they finish."""
        self._drop_outstanding()
        for v in values:
            self.submit(fn, v)

        def results():
            while self.has_next():
                yield self.get_next_unordered()
        return results()

    def _drop_outstanding(self):
        while self.has_next():
            try:
                self.get_next_unordered(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass

    # ---- one at a time

    def submit(self, fn, value):
        """Schedule fn(actor, value) on an idle actor, or queue it until one is free."""
        if self._idle_actors:
            actor = self._idle_actors.pop()
            future = fn(actor, value)
            key = tuple(future) if isinstance(future, list) else future
            self._future_to_actor[key] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = future
            self._next_task_index += 1
        else:
            self._pending_submits.append((fn, value))

    def has_next(self):
        """Whether a result is still to be taken."""
        return bool(self._future_to_actor)

    def get_next(self, timeout=None, ignore_if_timedout=False):
        """The next result in submission order. Raises StopIteration when there is none,
        TimeoutError when timeout passes first (with ignore_if_timedout=True the pending task is
        dropped and its actor returned to the pool), and ValueError after get_next_unordered."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            ready, _ = _api.wait(_refs(future), num_returns=len(_refs(future)), timeout=timeout)
            if len(ready) < len(_refs(future)):
                if not ignore_if_timedout:
                    raise TimeoutError("Timed out waiting for result")
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        key = tuple(future) if isinstance(future, list) else future
        _, actor = self._future_to_actor.pop(key)
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"Timed out waiting for result. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        """Any next result, whichever finishes first. Raises StopIteration when there is none and
        TimeoutError when timeout passes first (with ignore_if_timedout=True one pending task is
        dropped and its actor returned to the pool). After it, get_next raises ValueError."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        keys = list(self._future_to_actor)
        heads = [k[0] if isinstance(k, tuple) else k for k in keys]
        ready, _ = _api.wait(heads, num_returns=1, timeout=timeout)
        if ready:
            key = keys[heads.index(ready[0])]
        elif not ignore_if_timedout:
            raise TimeoutError("Timed out waiting for result")
        else:
            key = keys[0]
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        if not ready:
            self._return_actor(actor)
            raise TimeoutError(f"Timed out waiting for result. The task {future} has been ignored.")
        return self._get_result(future, actor)

    # ---- the actors

    def _get_result(self, future, actor):
        """The result; the actor goes back to the pool after it, unless it died (as Ray 2.60:
        a dead actor leaves the pool)."""
        alive = True
        try:
            return _api.get(future)
        except _api.exc.ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive)

    def _return_actor(self, actor, alive=True):
        if alive:
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.pop(0))

    def has_free(self):
        """Whether an actor is idle (and no queued call waits for one)."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self):
        """Take an idle actor out of the pool, or None when none is free."""
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor):
        """Add an actor to the pool (it starts a queued call, if any). ValueError when the actor
        is in the pool already."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)


def _refs(future):
    return list(future) if isinstance(future, list) else [future]
