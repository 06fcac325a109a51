"""Generator tasks, retry_exceptions and max_calls (docs/ray-tasks.md).

num_returns, as Ray spells it:
- an int N (static): the task returns N values; a generator function's first N yields are
  them (further ones are dropped with an error logged, missing ones raise ValueError, as Ray);
- "dynamic": one ObjectRef whose value is a DynamicObjectRefGenerator of the yields' refs;
- "streaming" (the default of a generator function): `.remote()` returns an ObjectRefGenerator
  at once, and `next()` gives each yield's ref as soon as the worker has yielded it.

A streaming task has one return value (index 1, the stream's end: the number of yields, or the
error that ended the task); its yields are the ids of index 2, 3, ... The worker reports each
in GEN_ITEM; the agent stores it and pushes it to the submitter (READY). An exception in the
generator becomes the next yield (its get raises it), and the stream ends after it.
"""
import asyncio
import inspect
import os
import pickle
import struct
import sys
import threading
import time
import traceback

import cloudpickle

from . import _client as C
from . import _serial
from . import _wire as w
from . import exceptions as exc

GEN_NONE, GEN_STREAMING, GEN_DYNAMIC = 0, 1, 2
_idx = struct.Struct(">I")


def gen_id(task_id, i):
    """The id of a streaming generator's yield number i (from 0)."""
    return task_id[:12] + _idx.pack(i + 2)


# ---------------------------------------------------------------- options (the submitter)

def _check_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"The keyword '{name}' only accepts an integer >= {lo}, got {v!r}")


def task_fields(opts, fn, is_actor_method=False):
    """Validate a task's num_returns, max_retries, retry_exceptions and max_calls as Ray does;
    returns (nret for the spec, generator mode, extra spec fields)."""
    nret = opts.get("num_returns")
    if nret is None:
        nret = "streaming" if fn is not None and (inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)) else 1
    fields = {}
    if nret in ("streaming", "dynamic") and fn is not None and not (
            inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)):
        raise ValueError(f"num_returns={nret!r} can only be used with generator functions (functions that use "
                         f"'yield'). The decorated function is not a generator function.")
    if nret == "streaming":
        mode, spec_nret = GEN_STREAMING, 1
    elif nret == "dynamic":
        mode, spec_nret = GEN_DYNAMIC, 1
    else:
        _check_int("num_returns", nret, 0)
        mode, spec_nret = GEN_NONE, nret
    if mode:
        fields["gen"] = mode
    if is_actor_method:
        return spec_nret, mode, fields
    if "max_retries" in opts:
        _check_int("max_retries", opts["max_retries"], -1)
    rexc = opts.get("retry_exceptions", False)
    if isinstance(rexc, bool):
        if rexc:
            fields["rexc"] = True
    elif isinstance(rexc, (list, tuple)) and rexc and all(inspect.isclass(c) and issubclass(c, BaseException) for c in rexc):
        fields["rexc"] = True
        fields["rexc_on"] = cloudpickle.dumps(tuple(rexc))
    else:
        raise ValueError("retry_exceptions must be either a boolean or a list of exceptions")
    mc = opts.get("max_calls")
    if mc is not None:
        _check_int("max_calls", mc, 0)
        if mc:
            fields["max_calls"] = mc
    return spec_nret, mode, fields


def wrap(cl, mode, nret, refs):
    """What `.remote()` returns for a task of this mode."""
    if mode == GEN_STREAMING:
        return ObjectRefGenerator(refs[0], cl)
    if nret == 0:
        return None
    return refs[0] if nret == 1 else refs


# ---------------------------------------------------------------- the submitter's side

class ObjectRefGenerator:
    """The refs a streaming generator task yields, in order, each as soon as it is yielded.
    Iterate it (`next`, `for`, `async for`); ray.cancel(gen) cancels the task."""

    def __init__(self, end_ref, cl):
        self._end = end_ref
        self._cl = cl
        self._tid = end_ref._id[:12] + b"\0\0\0\0"
        self._next = 0
        self._count = None  # yields the task made, once it ended
        self._done = False

    def __iter__(self):
        return self

    def __next__(self):
        ref = self._next_ref(None)
        if ref is None:
            raise StopIteration
        return ref

    def __aiter__(self):
        return self

    async def __anext__(self):
        loop = asyncio.get_running_loop()
        ref = await loop.run_in_executor(None, self._next_ref, None)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def next_ready(self, timeout_s=0):
        """Whether next() would return at once (within timeout_s)."""
        if self._done:
            return True
        return self._wait_either(gen_id(self._tid, self._next), timeout_s)

    def completed(self):
        """An ObjectRef that is ready when the task has ended."""
        return self._end

    def is_finished(self):
        return self._done

    def task_id(self):
        return self._tid

    def _ready(self, oid):
        return oid in self._cl._ready

    def _wait_either(self, item, timeout):
        """Wait until item or the end is ready; False on time-out."""
        cl, end = self._cl, self._end._id
        if cl.role != "worker":
            return cl.pump(lambda: item in cl._ready or end in cl._ready, timeout)
        tms = -1 if timeout is None else int(timeout * 1000)
        reply = cl.request(w.WAIT, {"ids": [item, end], "num": 1, "timeout_ms": tms})
        ready = reply.get("ready") or []
        if 0 in ready:
            cl._ready.setdefault(item, (w.FMT_PYTHON, None))
        if 1 in ready:
            cl._ready.setdefault(end, (w.FMT_PYTHON, None))
        return bool(ready)

    def _next_ref(self, timeout):
        if self._done:
            return None
        item = gen_id(self._tid, self._next)
        if self._count is None:
            if not self._wait_either(item, timeout):
                raise exc.GetTimeoutError(f"no value from the generator within {timeout}s")
            if self._end._id in self._cl._ready:
                # the task ended: its end says how many yields there were (the id past the
                # last one reads as ready too, freed, when a worker asks the agent)
                try:
                    self._count = C.current().get([self._end], None)[0]
                except BaseException:  # noqa: BLE001 - the task's error is the next yield's value
                    self._done = True
                    return C.ObjectRef(self._end._id, self._cl)
        if self._count is not None and self._next >= self._count:
            self._done = True
            return None
        self._next += 1
        return C.ObjectRef(item, self._cl, _owned=True)

    def __del__(self):
        # yields reported and never taken: give back the references the agent made for us
        cl = getattr(self, "_cl", None)
        if cl is None or self._count is None:
            return
        try:
            for i in range(self._next, self._count):
                cl._decref.add(gen_id(self._tid, i))
        except Exception:
            pass

    def __repr__(self):
        return f"ObjectRefGenerator({self._tid.hex()})"

    def __reduce__(self):
        raise TypeError("an ObjectRefGenerator cannot be passed to another task or stored; iterate it where it was made")


def wait(cl, refs, num_returns, timeout):
    """ray.wait over refs some of which are ObjectRefGenerators, as Ray does: a generator is
    ready when next() would not block (its next yield is there, or it ended). Polls in short
    waits, each of which reads what the agent pushed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    step = 0.005
    while True:
        ready = set()
        plain = [r for r in refs if not isinstance(r, ObjectRefGenerator)]
        # short waits, each returning early when its refs are ready and reading what the agent
        # pushed meanwhile
        if plain:
            got, _ = cl.wait(plain, len(plain), step)
            ready |= {id(r) for r in got}
        for r in refs:
            if isinstance(r, ObjectRefGenerator) and (r._done or r.next_ready(step)):
                ready.add(id(r))
        left = None if deadline is None else deadline - time.monotonic()
        if len(ready) >= num_returns or (left is not None and left <= 0):
            r_, nr = [], []
            for r in refs:
                (r_ if id(r) in ready and len(r_) < num_returns else nr).append(r)
            return r_, nr
        step = min(0.05, step * 2)


class DynamicObjectRefGenerator:
    """The value of a num_returns="dynamic" task: the refs of what it yielded, in order."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self):
        return len(self._refs)

    def __repr__(self):
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


class CancelArgumentError(ValueError, TypeError):
    """ray.cancel(force=True) of an actor call: Ray raises ValueError (older versions
    TypeError), so this is both."""


# ---------------------------------------------------------------- the worker's side

_cancelled = set()  # task ids of actor calls cancelled while they run (TASK_CANCEL)
_on_cancel = []  # callbacks (task id) for TASK_CANCEL, e.g. an async actor's loop
_calls = {}  # function id -> calls run by this worker (max_calls)
# the task id of the call running in this thread (a threaded actor runs several at once; the
# worker runs as __main__, so _worker's globals are not the ones an import of shoal._worker sees)
_tls = threading.local()


def on_cancel(task_id):
    """TASK_CANCEL from the agent: the actor call task_id was cancelled while it ran."""
    _cancelled.add(task_id)
    for cb in list(_on_cancel):
        try:
            cb(task_id)
        except Exception:
            pass


def is_cancelled(task_id):
    return task_id in _cancelled


def current_cancelled():
    """RuntimeContext.is_canceled(): whether ray.cancel reached the running task or actor call
    (a sync actor call is not interrupted; it may poll this and stop early, as in Ray)."""
    tid = getattr(_tls, "current", None)
    if tid is None or C._client is None or C._client.role != "worker":
        raise RuntimeError("is_canceled() can only be called inside a task or an actor method")
    C._client._drain_nowait()  # a TASK_CANCEL that arrived while the call ran
    return tid in _cancelled


def _error_ret(oid, spec, e, tb=None):
    if isinstance(e, exc.TaskCancelledError):
        data = _serial.error_data("cancelled", str(e) or f"{spec.get('name', '')} was cancelled", None)
    else:
        tb = tb or traceback.format_exc()
        err = e if isinstance(e, exc.RayTaskError) else exc.RayTaskError(spec.get("name", ""), tb, e, os.getpid())
        try:
            py = cloudpickle.dumps(err)
        except Exception:
            py = cloudpickle.dumps(exc.RayTaskError(spec.get("name", ""), tb, None, os.getpid()))
        data = _serial.error_data("task_error", f"{type(e).__name__}: {e}", py)
    return {"id": oid, "fmt": w.FMT_ERROR, "data": data, "refs": [], "stored": False}


actor_loop = None  # an async actor's event loop (_actor_exec._Async), where its async generators step


def _on_loop(loop):
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _items(result):
    """A sync iterator over a generator's yields (an async generator is driven here, or on the
    async actor's loop when it runs in another thread)."""
    if inspect.isasyncgen(result) and actor_loop is not None and actor_loop.is_running() and not _on_loop(actor_loop):
        while True:
            try:
                yield asyncio.run_coroutine_threadsafe(result.__anext__(), actor_loop).result()
            except StopAsyncIteration:
                return
    if inspect.isasyncgen(result):
        loop = asyncio.new_event_loop()
        try:
            while True:
                try:
                    yield loop.run_until_complete(result.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.close()
    else:
        yield from result


def values(client, spec, result, ret):
    """The values of a finished call for its DONE (ret(client, oid, value) -> a DONE ret)."""
    mode = spec.get("gen") or GEN_NONE
    nret = spec["nret"]
    is_gen = inspect.isgenerator(result) or inspect.isasyncgen(result)
    if mode == GEN_STREAMING:
        if not is_gen:
            raise TypeError(f"{spec.get('name')} has num_returns='streaming' but returned a {type(result).__name__}, "
                            "not a generator; use yield, or a static num_returns")
        return [_stream(client, spec, result, ret)]
    if mode == GEN_DYNAMIC:
        if not is_gen:
            raise TypeError(f"{spec.get('name')} has num_returns='dynamic' but returned a {type(result).__name__}, "
                            "not a generator; use yield, or a static num_returns")
        from ._api import put
        refs = []
        try:
            for v in _items(result):
                refs.append(put(v))
        except BaseException as e:  # noqa: BLE001 - the user's generator raised after some yields
            if _whole_task_fails(spec, e):
                raise
            # as Ray: the values yielded so far stay, and one more ref holds the error
            refs.append(put(_RaiseOnGet(exc.RayTaskError(spec.get("name", ""), traceback.format_exc(), e, os.getpid()))))
        return [DynamicObjectRefGenerator(refs)]
    if is_gen:
        return _static(spec, result, nret)
    if spec["kind"] == w.KIND_ACTOR_CREATE or nret == 1:
        return [result]
    vals = list(result) if result is not None else [None] * nret
    if len(vals) != nret:
        raise ValueError(f"Task returned {len(vals)} objects, but num_returns={nret}.")
    return vals


class Failed:
    """A return value that is an error (a static generator that yielded too few values)."""

    def __init__(self, error):
        self.error = error


def _static(spec, result, nret):
    """A generator with a static num_returns, as Ray runs it: its first nret yields are the
    return values; past them, Ray logs an error and keeps them; short of them, the missing ones
    raise ValueError."""
    vals = []
    it = _items(result)
    try:
        for v in it:
            if len(vals) == nret:
                print(f"{spec.get('name', 'task')}: Task returned more than num_returns={nret} objects; "
                      "the values past them are dropped", file=sys.stderr)
                break
            vals.append(v)
    except BaseException as e:  # noqa: BLE001 - the user's generator raised after some yields
        if _whole_task_fails(spec, e) or not vals:
            raise
        # as Ray: the values yielded before the error are returned; the rest hold the error
        vals += [Failed((e, traceback.format_exc()))] * (nret - len(vals))
        return vals
    if len(vals) < nret:
        try:
            raise ValueError(f"Task returned {len(vals)} objects, but num_returns={nret}.")
        except ValueError as e:
            vals += [Failed((e, traceback.format_exc()))] * (nret - len(vals))
    return vals


def _whole_task_fails(spec, e):
    """An error mid-generator that fails the whole call rather than its remaining values: a
    retried one (retry_exceptions), a cancel, an exit."""
    return retryable(spec, e) or isinstance(e, (exc.TaskCancelledError, KeyboardInterrupt, SystemExit))


def _raise(e):
    raise e


class _RaiseOnGet:
    """The error at the end of a dynamic generator's refs: stored as a value whose loading
    raises it, so get() of that ref raises the task's error, as in Ray."""

    def __init__(self, error):
        self.error = error

    def __reduce__(self):
        return (_raise, (self.error,))


def rets(client, spec, ids, vals, ret):
    """DONE's rets for the values of a call (a Failed one becomes an error object)."""
    out = []
    for oid, v in zip(ids, vals):
        if isinstance(v, Failed):
            e, tb = v.error
            out.append(_error_ret(oid, spec, e, tb))
        else:
            out.append(ret(client, oid, v))
    return out


def _stream(client, spec, result, ret):
    """Report each yield as it is made; returns how many there were (the end's value)."""
    tid = spec["task"]
    n = 0
    it = _items(result)
    while True:
        try:
            if tid in _cancelled:
                raise exc.TaskCancelledError(f"{spec.get('name', 'the generator')} was cancelled")
            v = next(it)
        except StopIteration:
            return n
        except exc.TaskCancelledError as e:
            # as Ray: the stream's next item raises the cancel, as a RayTaskError that is also a
            # TaskCancelledError (as_instanceof_cause), and the stream ends after it
            err = exc.RayTaskError(spec.get("name", ""), str(e), e, os.getpid())
            client.send(w.GEN_ITEM, {"task": tid, "index": n, "ret": _error_ret(gen_id(tid, n), spec, err)})
            return n + 1
        except BaseException as e:  # noqa: BLE001 - the user's generator raised: its next yield
            if retryable(spec, e):
                raise  # retry_exceptions: the call is retried; the agent skips the yields it has (genItem)
            client.send(w.GEN_ITEM, {"task": tid, "index": n, "ret": _error_ret(gen_id(tid, n), spec, e)})
            return n + 1
        client.send(w.GEN_ITEM, {"task": tid, "index": n, "ret": ret(client, gen_id(tid, n), v)})
        n += 1
        if spec["kind"] == w.KIND_ACTOR_METHOD:
            client._drain_nowait()  # a TASK_CANCEL for this call


def before_call(client, spec):
    """Before an actor call runs: one the agent cancelled while it waited in this worker (the
    agent sends calls ahead) never runs, as Ray does for a call not yet executing."""
    if spec["kind"] != w.KIND_ACTOR_METHOD:
        return
    client._drain_nowait()  # a TASK_CANCEL that came after its EXEC
    if spec["task"] in _cancelled:
        raise exc.TaskCancelledError(f"{spec.get('name', 'the call')} was cancelled before it ran")


def retryable(spec, e):
    """Whether exception e of this call may be retried (retry_exceptions)."""
    if not spec.get("rexc") or isinstance(e, (exc.TaskCancelledError, KeyboardInterrupt, SystemExit)):
        return False
    on = spec.get("rexc_on")
    if not on:
        return True
    try:
        classes = pickle.loads(on)
    except Exception:
        return False
    cause = e.cause if isinstance(e, exc.RayTaskError) and getattr(e, "cause", None) is not None else e
    return isinstance(cause, classes) or isinstance(e, classes)


def count_call(spec):
    """Count a call of spec's function, which the worker starts now; True when the worker must
    exit after it (max_calls)."""
    _tls.current = spec["task"]
    mc = spec.get("max_calls")
    if not mc or spec["kind"] != w.KIND_TASK:
        return False
    fid = spec.get("fn")
    _calls[fid] = _calls.get(fid, 0) + 1
    return _calls[fid] >= mc
