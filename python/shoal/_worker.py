"""A worker process: connects to its agent, runs the tasks and actor methods it is sent, and
answers with their return values (inline when small, written to the store when large)."""
import os
import signal
import sys
import traceback

import cloudpickle

from . import _actor_exec
from . import _api
from . import _client as C
from . import _conformance
from . import _generator
from . import _observe
from . import _runtime_env
from . import _serial
from . import _wire as w
from . import exceptions as exc
from . import runtime_context as _runtime_context
from ._api import _Dep

current_task = None
current_actor_id = None
current_gpus = None
_fns = {}
_actor = None


def _resolve(depv, client):
    vals = []
    for o in depv:
        vals.append(_serial.decode(*client.read_obj(o)))
    return vals


def _subst(v, vals):
    if isinstance(v, _Dep):
        x = vals[v.i]
        if isinstance(x, _serial._Raise):
            raise x.error
        return x
    return v


def _run(client, spec):
    global current_task, current_actor_id, _actor
    kind = spec["kind"]
    if spec.get("renv"):
        _runtime_env.apply(spec)  # before the code is unpickled: its modules may come from the env
    fid = spec.get("fn")
    if spec.get("fnb"):
        _fns[fid] = cloudpickle.loads(spec["fnb"])
    depv = spec.get("depv") or []
    vals = _resolve(depv, client)
    if spec.get("argobj"):
        argv = vals.pop()
        if isinstance(argv, _serial._Raise):
            raise argv.error
        args, kwargs = argv
    else:
        args, kwargs = _serial.deserialize_bundle(memoryview(spec["args"]))
    args = [_subst(a, vals) for a in args]
    kwargs = {k: _subst(v, vals) for k, v in kwargs.items()}
    current_task = spec["task"]
    _runtime_context.task_started(spec)  # get_runtime_context() in this call (runtime_context.py)
    globals()["_current_name"] = spec.get("name")
    _observe.mark_task(spec, current_actor_id)
    globals()["current_gpus"] = spec.get("gpus") or []
    if kind == w.KIND_TASK:
        fn = _fns.get(fid)
        if fn is None:
            raise exc.RaySystemError(f"the agent sent task {spec['name']} without its code")
        return fn(*args, **kwargs)
    if kind == w.KIND_ACTOR_CREATE:
        cls = _fns.get(fid)
        current_actor_id = spec["actor"]
        _actor = cls(*args, **kwargs)
        return None
    if _actor is None:
        raise exc.RaySystemError("actor method sent to a worker that holds no actor")
    return _conformance.actor_method(_actor, spec["method"])(*args, **kwargs)


def _ret(client, oid, value):
    ser = _serial.serialize(value)
    if ser.size < w.INLINE_MAX:
        return {"id": oid, "fmt": w.FMT_PYTHON, "data": ser.to_bytes(), "refs": ser.refs, "stored": False}
    client.put_serialized(oid, ser)
    return {"id": oid, "stored": True}


def _ret_local(client, oid, value):
    """_ret for a task run by this node's agent: a stored value is announced by the agent."""
    ser = _serial.serialize(value)
    if ser.size < w.INLINE_MAX:
        return {"id": oid, "fmt": w.FMT_PYTHON, "data": ser.to_bytes(), "refs": ser.refs, "stored": False}
    client.put_serialized(oid, ser, announce=False)
    return {"id": oid, "fmt": w.FMT_PYTHON, "refs": ser.refs, "stored": True, "size": ser.size}


def _lease(client, spec):
    """A lease (KIND_LEASE): this worker runs the tasks its node's agent sends it, each answer
    going back with the request for the next, until the agent ends the lease; then its DONE
    gives the worker back to the head node's agent."""
    lid = spec["task"]
    done = None
    while True:
        # what the task offered to this node's agent is settled first: the head must expect
        # those values before it reads this task's (which may refer to them)
        client._settle_local()
        body = client.store.request(w.LEASE_NEXT, {"lease": lid, "done": done})
        if body.get("end"):
            break
        done = _execute(client, body, local=True)
    client.send(w.DONE, {"task": lid, "rets": [], "err": False})


def _execute(client, spec, run=None, local=False):
    """Run spec (with run in place of _run: the actor runner's hook, _actor_exec.py) and send
    its DONE; local: a task from this node's agent, whose DONE body is returned instead."""
    ret = _ret_local if local else _ret
    out = []

    def send(body):
        if local:
            out.append(body)
        else:
            client.send(w.DONE, body)
    tid = spec["task"]
    nret = spec["nret"]
    ids = [tid[:12] + (i + 1).to_bytes(4, "big") for i in range(nret)]
    more = {"exit": True} if _generator.count_call(spec) else {}  # max_calls
    try:
        _generator.before_call(client, spec)  # a call cancelled before it ran
        result = (run or _run)(client, spec)
        values = _generator.values(client, spec, result, ret)  # generators (_generator.py)
        rets = _generator.rets(client, spec, ids, values, ret)
        send({"task": tid, "rets": rets, "err": False, **more})
    except exc.TaskCancelledError as e:
        data = _serial.error_data("cancelled", str(e) or f"{spec.get('name', '')} was cancelled", None)
        rets = [{"id": i, "fmt": w.FMT_ERROR, "data": data, "refs": [], "stored": False} for i in ids]
        send({"task": tid, "rets": rets, "err": True, **more})
    except _actor_exec.ActorExit:
        raise  # exit_actor(): no DONE; the caller sees the actor's death (_actor_exec.end)
    except BaseException as e:  # noqa: BLE001 - the user's code may raise anything
        tb = traceback.format_exc()
        # an upstream task's error propagates as it is
        err = e if isinstance(e, exc.RayTaskError) else exc.RayTaskError(spec.get("name", ""), tb, e, os.getpid())
        try:
            py = cloudpickle.dumps(err)
        except Exception:
            py = cloudpickle.dumps(exc.RayTaskError(spec.get("name", ""), tb, None, os.getpid()))
        data = _serial.error_data("task_error", f"{type(e).__name__}: {e}", py)
        rets = [{"id": i, "fmt": w.FMT_ERROR, "data": data, "refs": [], "stored": False} for i in ids]
        if _generator.retryable(spec, e):  # retry_exceptions
            more["retry"] = True
        send({"task": tid, "rets": rets, "err": True, **more})
    finally:
        globals()["current_task"] = None
    if local:
        return out[0] if out else None
    return bool(more.get("exit"))


def _interrupted(signum, frame):
    # SIGINT from the agent: cancel() of the running task (never sent while idle, but a late
    # one is ignored then)
    if _actor_exec.off_main_thread():
        return  # calls run on other threads (_actor_exec.py): the main thread only reads frames
    if globals().get("current_task") is not None:
        raise exc.TaskCancelledError(f"{_current_name or 'the task'} was cancelled")


_current_name = None


def main():
    _actor_exec.bind(sys.modules[__name__])
    signal.signal(signal.SIGINT, _interrupted)
    addr = os.environ["SHOAL_ADDRESS"]
    secret = os.environ["SHOAL_SECRET"]
    wid = os.environ["SHOAL_WORKER_ID"]
    client = C.Client(addr, secret, role="worker", worker_id=wid)
    C._client = client
    _api._namespace = os.environ.get("SHOAL_NAMESPACE", "")  # the driver's (docs/ray-actors.md)
    if os.environ.get("SHOAL_TASK_MARKERS") != "0":  # 0: no agent reads them (observability off)
        sys.stdout, sys.stderr = _observe.MarkedStream(sys.stdout), _observe.MarkedStream(sys.stderr)
    try:
        while True:
            client.pump(lambda: bool(client._execq))
            spec = client._execq.pop(0)
            if spec.get("kind") == w.KIND_LEASE:
                _lease(client, spec)
                continue
            if _actor_exec.dispatch(client, spec):
                continue  # an actor call, run by the actor's runner (_actor_exec.py)
            if _execute(client, spec):  # max_calls reached: leave, a new worker takes over
                sys.stdout.flush()
                sys.stderr.flush()
                # the agent ends this process once it has read the DONE: exiting first could
                # look like a crash while the call is still running
                client.pump(lambda: False, timeout=10)
                break
    except exc.RaySystemError:
        pass  # the agent went away: exit quietly
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
