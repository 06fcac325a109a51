"""An actor inside its worker process (docs/ray-actors.md): how its method calls run and how it
ends.

- A sequential actor (sync methods, max_concurrency 1, no concurrency groups) runs its calls on
  the worker's main thread, one at a time, in the order they arrive (the agent sends them in
  submission order).
- A threaded actor (sync methods, max_concurrency > 1 or concurrency groups) runs them on one
  thread pool per concurrency group, the default group's of max_concurrency threads.
- An async actor (any `async def` method) runs them on one asyncio event loop, in a thread of
  its own; max_concurrency (default 1000) and each group's size bound the calls in flight
  through one semaphore per group. Its sync methods run on the loop too, as in Ray.

The main thread keeps reading the agent's frames while calls run elsewhere, so several calls
are in flight at once. An actor ends on purpose through exit_actor(), __ray_terminate__ or the
agent's TERMINATE (its last handle is gone): calls that started finish, calls that did not are
dropped (the agent fails them with ActorDiedError when the process exits), __ray_shutdown__
and the atexit handlers run, and the worker tells the agent (ACTOR_EXIT) so that the actor is
not restarted.
"""
import asyncio
import atexit
import concurrent.futures
import inspect
import os
import sys
import threading
import traceback

from . import _wire as w
from . import exceptions as exc

DEFAULT_GROUP = "_ray_system_default"  # never a user's group name (Ray reserves it too)
ASYNC_DEFAULT_CONCURRENCY = 1000       # Ray's default max_concurrency for async actors


class ActorExit(SystemExit):
    """Raised by exit_actor() inside an actor method; the actor then ends."""


def actor_config(cls, opts, method_groups, check_methods=True):
    """The concurrency of actor class cls under its options: a dict that travels in the actor's
    metadata to its worker. Raises ValueError/TypeError on a bad option, at the call site; a
    method's group is checked only with check_methods (at creation: .options() may still add
    the group)."""
    is_async = any(inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
                   for _, m in inspect.getmembers(cls, predicate=inspect.isfunction))
    mc = opts.get("max_concurrency")
    if mc is None:
        mc = ASYNC_DEFAULT_CONCURRENCY if is_async else 1
    if isinstance(mc, bool) or not isinstance(mc, int) or mc < 1:
        raise ValueError(f"max_concurrency must be an integer >= 1, got {mc!r}")
    groups = opts.get("concurrency_groups") or {}
    if isinstance(groups, (list, tuple)):
        raise TypeError("concurrency_groups takes a dict of group name to max concurrency, e.g. {'io': 2}")
    if not isinstance(groups, dict):
        raise TypeError(f"concurrency_groups must be a dict of group name to max concurrency, got {type(groups).__name__}")
    for g, n in groups.items():
        if not isinstance(g, str) or not g or g == DEFAULT_GROUP:
            raise ValueError(f"concurrency group name {g!r} is not allowed: use a non-empty string")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"concurrency group {g!r} has max concurrency {n!r}; it must be an integer >= 1")
    for m, g in method_groups.items():
        if check_methods and g is not None and g not in groups:
            raise ValueError(f"method {m} is in concurrency group {g!r}, which the actor does not define; "
                             f"add it to concurrency_groups (defined: {sorted(groups)})")
    conc = mc + sum(groups.values())
    return {"async": is_async, "mc": mc, "groups": dict(groups),
            "method_groups": {m: g for m, g in method_groups.items() if g}, "conc": conc}


# ---------------------------------------------------------------- in the worker

_runner = None        # the actor's runner (_Threaded or _Async); None for a sequential actor
_exiting = False      # no call starts any more (exit_actor)
_closed = False       # no call is taken any more (every way of ending)
_ending = False
_end_lock = threading.Lock()


_W = None  # the running worker module (`python -m shoal._worker` runs it as __main__)


def bind(worker_module):
    """Called by the worker's main(): the module whose globals hold the actor."""
    global _W
    _W = worker_module


def _worker():
    return _W


def off_main_thread():
    """Whether this worker's actor runs its calls off the main thread (threaded or async)."""
    return _runner is not None


def in_actor():
    """Whether this process runs an actor (its constructor succeeded)."""
    return _W is not None and _W._actor is not None


def dispatch(client, spec):
    """Run spec if it concerns the actor of this worker; False when it is the worker's own
    business (a task). Called by the worker's main loop for every EXEC (and TERMINATE)."""
    kind = spec.get("kind")
    W = _worker()
    if kind == "terminate":
        end(client, "the actor's last handle went out of scope", finish_queued=True)
        return True
    if kind == w.KIND_ACTOR_CREATE:
        W._execute(client, spec)
        if W._actor is not None:
            _setup(spec)
        return True
    if kind != w.KIND_ACTOR_METHOD:
        return False
    if _closed:
        return True  # the actor is ending: the agent fails this call when the process exits
    name = spec.get("method")
    if name == "__ray_ready__":
        W._execute(client, spec, run=lambda c, s: True)
        return True
    if name == "__ray_terminate__":
        end(client, "__ray_terminate__ was called", finish_queued=True)
        return True
    if _runner is not None:
        _runner.submit(client, spec)
        return True
    try:
        W._execute(client, spec)
    except ActorExit as e:
        end(client, _exit_why(e))
    return True


def _exit_why(e):
    return str(e.code) if e.code else "exit_actor() was called"


def _setup(spec):
    global _runner
    import cloudpickle
    meta = cloudpickle.loads(spec["meta"]) if spec.get("meta") else {}
    cfg = meta.get("conc")
    if not cfg:
        return
    if cfg["async"]:
        _runner = _Async(cfg)
    elif cfg["mc"] > 1 or cfg["groups"]:
        _runner = _Threaded(cfg)


def _group_of(cfg, spec):
    return spec.get("cg") or cfg["method_groups"].get(spec.get("method")) or DEFAULT_GROUP


def _end_in_thread(client, why):
    threading.Thread(target=end, args=(client, why), name="shoal-actor-exit", daemon=True).start()


def end(client, why, finish_queued=False):
    """End the actor on purpose: calls already running finish, and with finish_queued (the
    graceful ends: __ray_terminate__, TERMINATE) so do those received and not yet started,
    which exit_actor() drops; then __ray_shutdown__ and the atexit handlers run, and
    ACTOR_EXIT tells the agent."""
    global _exiting, _ending, _closed
    with _end_lock:
        if _ending:
            return
        _ending = True
    _closed = True
    if not finish_queued:
        _exiting = True
    if _runner is not None:
        _runner.drain()
    _shutdown_hook()
    try:
        atexit._run_exitfuncs()
    except Exception:  # noqa: BLE001 - the user's handlers may raise; we exit all the same
        traceback.print_exc()
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:  # noqa: BLE001
            pass
    try:
        client.send(w.ACTOR_EXIT, {"why": why})
        client.flush()
    finally:
        os._exit(0)


def _shutdown_hook():
    inst = _worker()._actor
    fn = getattr(inst, "__ray_shutdown__", None)
    if fn is None:
        return
    try:
        r = fn()
        if inspect.isawaitable(r):
            if isinstance(_runner, _Async):
                asyncio.run_coroutine_threadsafe(_awaited(r), _runner.loop).result()
            else:
                asyncio.run(_awaited(r))
    except Exception:  # noqa: BLE001 - a failing hook is printed; the actor ends anyway
        print("__ray_shutdown__ raised:", file=sys.stderr)
        traceback.print_exc()


async def _awaited(r):
    return await r


class _Threaded:
    """Calls run on one thread pool per concurrency group."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.pools = {DEFAULT_GROUP: _pool(cfg["mc"], "default")}
        for g, n in cfg["groups"].items():
            self.pools[g] = _pool(n, g)
        self.active = 0
        self.cv = threading.Condition()

    def submit(self, client, spec):
        pool = self.pools.get(_group_of(self.cfg, spec), self.pools[DEFAULT_GROUP])
        with self.cv:
            self.active += 1
        pool.submit(self._run, client, spec)

    def _run(self, client, spec):
        try:
            if not _exiting:
                _worker()._execute(client, spec)
        except ActorExit as e:
            _end_in_thread(client, _exit_why(e))
        finally:
            with self.cv:
                self.active -= 1
                self.cv.notify_all()

    def drain(self):
        with self.cv:
            self.cv.wait_for(lambda: self.active == 0)


class _Async:
    """Calls run as coroutines on one event loop, bounded by a semaphore per group."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.sems = {}
        self.active = 0
        self.cv = threading.Condition()
        self.tasks = {}  # task id -> its asyncio task, for ray.cancel (TASK_CANCEL)
        from . import _generator
        _generator._on_cancel.append(self._cancel)
        _generator.actor_loop = self.loop  # async generator methods step on this loop
        t = threading.Thread(target=self._main, name="shoal-actor-loop", daemon=True)
        t.start()

    def _main(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _sem(self, group):
        s = self.sems.get(group)
        if s is None:
            n = self.cfg["groups"].get(group, self.cfg["mc"]) if group != DEFAULT_GROUP else self.cfg["mc"]
            s = self.sems[group] = asyncio.Semaphore(n)
        return s

    def submit(self, client, spec):
        with self.cv:
            self.active += 1
        self.loop.call_soon_threadsafe(self._start, client, spec)

    def _start(self, client, spec):
        self.tasks[spec["task"]] = self.loop.create_task(self._call(client, spec))

    def _cancel(self, task_id):
        """ray.cancel() of a call of this actor (called on the frame-reading thread): its
        coroutine is cancelled on the loop, and its result is TaskCancelledError."""
        def cancel():
            t = self.tasks.get(task_id)
            if t is not None:
                t.cancel()
        self.loop.call_soon_threadsafe(cancel)

    async def _call(self, client, spec):
        W = _worker()
        try:
            group = _group_of(self.cfg, spec)
            if group not in self.cfg["groups"]:
                group = DEFAULT_GROUP
            async with self._sem(group):
                if _exiting:
                    return
                value, err = None, None
                try:
                    value = W._run(client, spec)
                    if inspect.isawaitable(value):
                        value = await value
                except ActorExit:
                    raise
                except BaseException as e:  # noqa: BLE001 - the user's code may raise anything
                    err = e

                def result(_c, _s):
                    if err is not None:
                        raise err
                    return value
                if isinstance(err, asyncio.CancelledError):
                    err = exc.TaskCancelledError(f"{spec.get('name') or 'the call'} was cancelled")
                if inspect.isasyncgen(value):
                    # an async generator method: its yields are reported from a thread while
                    # each __anext__ runs here, on the actor's loop (_generator._items)
                    await asyncio.get_running_loop().run_in_executor(None, lambda: W._execute(client, spec, run=result))
                else:
                    W._execute(client, spec, run=result)
        except asyncio.CancelledError:  # cancelled before it ran (waiting for its group's turn)
            def cancelled(_c, _s):
                raise exc.TaskCancelledError(f"{spec.get('name') or 'the call'} was cancelled")
            W._execute(client, spec, run=cancelled)
        except ActorExit as e:
            _end_in_thread(client, _exit_why(e))
        finally:
            self.tasks.pop(spec["task"], None)
            with self.cv:
                self.active -= 1
                self.cv.notify_all()

    def drain(self):
        with self.cv:
            self.cv.wait_for(lambda: self.active == 0)


def _pool(n, name):
    return concurrent.futures.ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"shoal-actor-{name}")
