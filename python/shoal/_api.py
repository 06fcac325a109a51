"""The Ray-Core-compatible API: init, remote, get, put, wait, actors, cluster information."""
import atexit
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import threading

import cloudpickle

from . import _client as C
from . import _observe
from . import _serial
from . import _wire as w
from . import exceptions as exc

_local_cluster = None  # the `shoal serve` process started by init()
_lock = threading.RLock()
_namespace = ""



def _shoal_binary():
    cand = os.environ.get("SHOAL_BIN")
    if cand:
        return cand
    here = os.path.join(os.path.dirname(__file__), "bin", "shoal")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("shoal")
    if found:
        return found
    raise RuntimeError("cannot start a local shoal cluster: no `shoal` binary found; put it on PATH or set SHOAL_BIN")


def is_initialized():
    return C._client is not None


def init(address=None, *, num_cpus=None, num_gpus=None, resources=None, object_store_memory=None,
         namespace=None, ignore_reinit_error=False, log_to_driver=True, runtime_env=None, **kwargs):
    """Connect to the cluster in SHOAL_ADDRESS (or `address`), or start a local one-node cluster
    that lives as long as this process (or until shutdown())."""
    global _local_cluster, _namespace
    with _lock:
        if C._client is not None:
            if ignore_reinit_error or C._client.role == "worker":
                return _context()
            raise RuntimeError("Maybe you called shoal.init twice by accident? Pass ignore_reinit_error=True to allow it.")
        if namespace is not None:
            _namespace = namespace
        if address in (None, "auto", "local"):
            env_addr = os.environ.get("SHOAL_ADDRESS")
            if address == "auto" and not env_addr:
                raise ConnectionError("init(address='auto') but SHOAL_ADDRESS is not set: run inside `shoal run`, `shoal launch` or after `eval $(shoal up)`")
            address = env_addr if address != "local" else None
        secret = os.environ.get("SHOAL_SECRET", "")
        if address is None:
            args = [_shoal_binary(), "serve", "--watch-stdin"]
            if num_cpus is not None:
                args += ["--num-cpus", str(num_cpus)]
            if num_gpus is not None:
                args += ["--num-gpus", str(num_gpus)]
            if object_store_memory is not None:
                args += ["--object-store-memory", str(int(object_store_memory))]
            if resources:
                args += ["--resources", json.dumps(resources)]
            env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_") or k in ("SHOAL_TMPDIR", "SHOAL_LOG_LEVEL", "SHOAL_STATE_DIR")}
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                raise RuntimeError(f"the local shoal cluster did not start (exit code {proc.returncode}); see its error above")
            info = json.loads(line)
            _local_cluster = proc
            address, secret = info["address"], info["secret"]
        elif not secret:
            raise ConnectionError(f"cannot connect to {address}: SHOAL_SECRET is not set (it is in the session directory's `secret` file)")
        C._client = C.Client(address, secret, role="driver")
        _observe.register_driver(C._client, secret, log_to_driver)
        atexit.register(shutdown)
        return _context()


def _context():
    cl = C._client
    return {"address": cl.address, "node_id": cl.node_id, "cluster_id": cl.cluster_id}


def shutdown():
    """Disconnect; stop the local cluster if init() started one."""
    global _local_cluster
    with _lock:
        cl = C._client
        if cl is not None and cl.role != "worker":
            _observe.stop_printing()
            C._client = None
            cl.close()
        proc = _local_cluster
        _local_cluster = None
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


def _auto_init():
    if C._client is None:
        init()
    return C._client


# ---------------------------------------------------------------- objects

def put(value, *, _owner=None):
    if isinstance(value, C.ObjectRef):
        raise TypeError("Calling 'put' on an ObjectRef is not allowed. If you really want to do this, you can wrap the ObjectRef in a list and call 'put' on it.")
    cl = _auto_init()
    oid = cl.next_id(b"\xff\xff\xff\xff")
    ser = _serial.serialize(value)
    cl.put_serialized(oid, ser)
    return C.ObjectRef(oid, cl, _owned=True)


def get(object_refs, *, timeout=None):
    cl = _auto_init()
    if isinstance(object_refs, C.ObjectRef):
        return cl.get([object_refs], timeout)[0]
    if isinstance(object_refs, (list, tuple)):
        for r in object_refs:
            if not isinstance(r, C.ObjectRef):
                raise TypeError(f"get() expects ObjectRefs, got {type(r).__name__} in the list")
        return cl.get(list(object_refs), timeout)
    raise TypeError(f"get() expects an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}")


def wait(object_refs, *, num_returns=1, timeout=None, fetch_local=True):
    cl = _auto_init()
    if isinstance(object_refs, C.ObjectRef):
        raise TypeError("wait() expected a list of ObjectRefs, got a single ObjectRef")
    refs = list(object_refs)
    if len(set(refs)) != len(refs):
        raise ValueError("Wait requires a list of unique object refs.")
    if num_returns <= 0 or num_returns > len(refs):
        raise ValueError("Invalid number of objects to return %d (must be between 1 and the number of refs)" % num_returns)
    return cl.wait(refs, num_returns, timeout)


# ---------------------------------------------------------------- options

_TASK_OPTS = {"num_cpus", "num_gpus", "resources", "memory", "num_returns", "max_retries", "retry_exceptions",
              "scheduling_strategy", "placement_group", "placement_group_bundle_index",
              "placement_group_capture_child_tasks", "name", "runtime_env", "accelerator_type"}
_ACTOR_OPTS = {"num_cpus", "num_gpus", "resources", "memory", "max_restarts", "max_task_retries", "name",
               "namespace", "lifetime", "scheduling_strategy", "placement_group", "placement_group_bundle_index",
               "placement_group_capture_child_tasks", "max_concurrency", "get_if_exists", "runtime_env",
               "concurrency_groups", "accelerator_type"}


def _check_opts(opts, allowed, what):
    for k in opts:
        if k not in allowed:
            raise ValueError(f"Invalid option keyword {k} for {what}. Valid ones are {sorted(allowed)}")


def _resources(opts, default_cpu):
    res = {}
    cpu = opts.get("num_cpus")
    res["CPU"] = float(default_cpu if cpu is None else cpu)
    if opts.get("num_gpus"):
        res["GPU"] = float(opts["num_gpus"])
    if opts.get("memory"):
        res["memory"] = float(opts["memory"])
    for k, v in (opts.get("resources") or {}).items():
        if k in ("CPU", "GPU"):
            raise ValueError(f"Use the 'num_cpus' and 'num_gpus' keyword instead of 'resources' for {k}")
        res[k] = float(v)
    for k, v in res.items():
        if v < 0:
            raise ValueError(f"resource {k} must not be negative, got {v}")
    return {k: v for k, v in res.items() if v}


def _pg_of(opts):
    strat = opts.get("scheduling_strategy")
    pg = opts.get("placement_group")
    idx = opts.get("placement_group_bundle_index", -1)
    from .util.scheduling_strategies import PlacementGroupSchedulingStrategy
    if isinstance(strat, PlacementGroupSchedulingStrategy):
        pg, idx = strat.placement_group, strat.placement_group_bundle_index
    if pg is None or pg == "default":
        return None, -1
    return pg.id, (-1 if idx is None else idx)


class _Dep:
    """Stands for a top-level ObjectRef argument; the worker puts the value in its place."""

    __slots__ = ("i",)

    def __init__(self, i):
        self.i = i

    def __reduce__(self):
        return (_Dep, (self.i,))


def _pack_args(cl, args, kwargs):
    deps = []

    def sub(v):
        if isinstance(v, C.ObjectRef):
            deps.append(v._id)
            return _Dep(len(deps) - 1)
        return v
    a = tuple(sub(v) for v in args)
    k = {key: sub(v) for key, v in kwargs.items()}
    ser = _serial.serialize((a, k))
    argobj = None
    if ser.size >= w.INLINE_MAX:
        argobj = cl.next_id(b"\xff\xff\xff\xff")
        cl.put_serialized(argobj, ser)
        return None, argobj, deps, ser.refs
    return ser.to_bytes(), None, deps, ser.refs


def _fn_code(cl, holder, obj):
    if holder._fnb is None:
        holder._fnb = cloudpickle.dumps(obj)
        holder._fid = hashlib.sha1(holder._fnb).digest()[:16]
    if holder._fid in cl._fns_sent:
        return holder._fid, None
    cl._fns_sent.add(holder._fid)
    return holder._fid, holder._fnb


# ---------------------------------------------------------------- tasks

class RemoteFunction:
    def __init__(self, fn, opts):
        _check_opts(opts, _TASK_OPTS, "remote functions")
        self._function = fn
        self._opts = opts
        self._fnb = None
        self._fid = None
        self._name = getattr(fn, "__qualname__", getattr(fn, "__name__", "task"))
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "task")

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Remote functions cannot be called directly. Instead of running '{self.__name__}()', try '{self.__name__}.remote()'.")

    def options(self, **opts):
        _check_opts(opts, _TASK_OPTS, "remote functions")
        rf = RemoteFunction.__new__(RemoteFunction)
        rf.__dict__.update(self.__dict__)
        rf._opts = {**self._opts, **opts}
        parent = self

        class _Bound:
            def remote(_s, *a, **k):
                return rf._submit(a, k, parent)

            def bind(_s, *a, **k):
                raise NotImplementedError("DAG bind is not supported")
        return _Bound()

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self)

    def _submit(self, args, kwargs, code_holder):
        cl = _auto_init()
        opts = self._opts
        nret = opts.get("num_returns", 1)
        if nret == "dynamic" or nret == "streaming":
            raise NotImplementedError("num_returns='dynamic'/'streaming' is not supported yet")
        nret = int(nret)
        fid, fnb = _fn_code(cl, code_holder, self._function)
        data, argobj, deps, refs = _pack_args(cl, args, kwargs)
        pg, bundle = _pg_of(opts)
        retries = opts.get("max_retries", 3)
        spec = {"task": cl.next_id(b"\0\0\0\0"), "kind": w.KIND_TASK, "fn": fid, "name": self._name,
                "lang": "python", "args": data, "argobj": argobj, "deps": deps, "refs": refs,
                "nret": max(nret, 1) if nret else 1, "res": _resources(opts, 1), "retries": retries,
                "pg": pg, "bundle": bundle}
        if fnb is not None:
            spec["fnb"] = fnb
        refs_out = cl.submit(spec, spec["nret"])
        if argobj is not None:
            cl._decref.add(argobj)
        if nret == 0:
            return None
        return refs_out[0] if nret == 1 else refs_out


# ---------------------------------------------------------------- actors

def method(*, num_returns=1, concurrency_group=None, max_task_retries=None, retry_exceptions=None):
    def deco(f):
        f.__shoal_num_returns__ = num_returns
        return f
    return deco


class ActorClass:
    def __init__(self, cls, opts):
        _check_opts(opts, _ACTOR_OPTS, "actors")
        self._cls = cls
        self._opts = opts
        self._fnb = None
        self._fid = None
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def __call__(self, *a, **k):
        raise TypeError(f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use '{self.__name__}.remote()'.")

    def options(self, **opts):
        _check_opts(opts, _ACTOR_OPTS, "actors")
        ac = ActorClass.__new__(ActorClass)
        ac.__dict__.update(self.__dict__)
        ac._opts = {**self._opts, **opts}
        parent = self

        class _Bound:
            def remote(_s, *a, **k):
                return ac._create(a, k, parent)
        return _Bound()

    def remote(self, *args, **kwargs):
        return self._create(args, kwargs, self)

    def _methods(self):
        out = {}
        for name, m in inspect.getmembers(self._cls, predicate=lambda x: inspect.isfunction(x) or inspect.ismethod(x)):
            out[name] = getattr(m, "__shoal_num_returns__", 1)
        return out

    def _create(self, args, kwargs, holder):
        cl = _auto_init()
        opts = self._opts
        name = opts.get("name") or ""
        ns = opts.get("namespace") or _namespace
        if name and opts.get("get_if_exists"):
            try:
                return get_actor(name, namespace=ns)
            except ValueError:
                pass
        meta = cloudpickle.dumps({"class": self._cls.__name__, "methods": self._methods()})
        fid, fnb = _fn_code(cl, holder, self._cls)
        data, argobj, deps, refs = _pack_args(cl, args, kwargs)
        pg, bundle = _pg_of(opts)
        aid = cl.next_id(b"\xff\xff\xff\xfe")
        restarts = opts.get("max_restarts", 0)
        spec = {"task": cl.next_id(b"\0\0\0\0"), "kind": w.KIND_ACTOR_CREATE, "fn": fid, "name": self._cls.__name__,
                "lang": "python", "args": data, "argobj": argobj, "deps": deps, "refs": refs, "nret": 1,
                "res": _resources(opts, 0), "retries": 0, "actor": aid, "restarts": -1 if restarts == -1 else int(restarts),
                "aname": name, "ns": ns, "meta": meta, "pg": pg, "bundle": bundle}
        if fnb is not None:
            spec["fnb"] = fnb
        spec["task_retries"] = int(opts.get("max_task_retries") or 0)  # calls sent again after a restart
        try:
            (ready,) = cl.submit(spec, 1, wait_ok=bool(name))
        except ValueError:
            raise
        if argobj is not None:
            cl._decref.add(argobj)
        return ActorHandle(aid, meta, ready)


class ActorHandle:
    def __init__(self, aid, meta, ready=None):
        self._actor_id = aid
        self._meta = meta
        info = cloudpickle.loads(meta)
        self._class_name = info["class"]
        self._method_returns = info["methods"]
        self._ready = ready

    def __getattr__(self, name):
        if name.startswith("__") or name not in self.__dict__.get("_method_returns", {}):
            raise AttributeError(f"'{self.__dict__.get('_class_name', 'Actor')}' actor has no method '{name}'")
        return ActorMethod(self, name, self._method_returns[name])

    def __repr__(self):
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __reduce__(self):
        return (ActorHandle, (self._actor_id, self._meta))

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self):
        return hash(self._actor_id)


class ActorMethod:
    def __init__(self, handle, name, num_returns):
        self._h = handle
        self._name = name
        self._nret = num_returns

    def __call__(self, *a, **k):
        raise TypeError(f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', try 'object.{self._name}.remote()'.")

    def options(self, **opts):
        m = ActorMethod(self._h, self._name, opts.get("num_returns", self._nret))
        return m

    def remote(self, *args, **kwargs):
        cl = _auto_init()
        data, argobj, deps, refs = _pack_args(cl, args, kwargs)
        nret = int(self._nret)
        spec = {"task": cl.next_id(b"\0\0\0\0"), "kind": w.KIND_ACTOR_METHOD, "fn": None,
                "name": f"{self._h._class_name}.{self._name}", "lang": "python", "args": data, "argobj": argobj,
                "deps": deps, "refs": refs, "nret": max(nret, 1), "res": {}, "retries": 0,
                "actor": self._h._actor_id, "method": self._name}
        out = cl.submit(spec, max(nret, 1))
        if argobj is not None:
            cl._decref.add(argobj)
        if nret == 0:
            return None
        return out[0] if nret == 1 else out


def remote(*args, **kwargs):
    """@remote or @remote(num_cpus=..., ...) on a function or a class."""
    def make(obj, opts):
        if inspect.isclass(obj):
            return ActorClass(obj, opts)
        if callable(obj):
            return RemoteFunction(obj, opts)
        raise TypeError("The @remote decorator must be applied to either a function or a class.")
    if len(args) == 1 and not kwargs and callable(args[0]):
        return make(args[0], {})
    if args:
        raise TypeError("The @remote decorator takes keyword arguments only, e.g. @remote(num_cpus=2)")
    return lambda obj: make(obj, kwargs)


def kill(actor, *, no_restart=True):
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"kill() only supports actors; got {type(actor).__name__}")
    _auto_init().request(w.KILL, {"actor": actor._actor_id, "no_restart": bool(no_restart)})


def cancel(object_ref, *, force=False, recursive=True):
    """Cancel the task that returns object_ref, as ray.cancel does: a task that has not started
    never runs; a running one gets TaskCancelledError raised inside it (force=True kills its
    worker instead); recursive=True also cancels the tasks it submitted. get() on its result
    then raises TaskCancelledError. A finished task is left as it is."""
    if not isinstance(object_ref, C.ObjectRef):
        raise TypeError(f"cancel() takes an ObjectRef returned by a task; got {type(object_ref).__name__}")
    _auto_init().request(w.CANCEL, {"object": object_ref._id, "force": bool(force), "recursive": bool(recursive)})


def get_actor(name, namespace=None):
    cl = _auto_init()
    if not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    reply = cl.request(w.GET_ACTOR, {"name": name, "ns": _namespace if namespace is None else namespace})
    return ActorHandle(reply["actor"], reply["meta"])


# ---------------------------------------------------------------- cluster

def _info():
    return _auto_init().request(w.INFO, {})


def cluster_resources():
    return dict(_info()["total"])


def available_resources():
    return {k: v for k, v in _info()["available"].items() if v > 0}


def nodes():
    out = []
    for n in _info()["nodes"]:
        addr = n["addr"] or "127.0.0.1"
        if addr.startswith("tcp:"):
            addr = addr[4:].rsplit(":", 1)[0]
        out.append({"NodeID": n["id"], "Alive": n["alive"], "NodeManagerAddress": addr,
                    "NodeManagerHostname": n["id"], "Resources": dict(n["total"]), "alive": n["alive"]})
    return out


class RuntimeContext:
    def get_node_id(self):
        return _auto_init().node_id

    def get_job_id(self):
        return os.environ.get("SHOAL_JOB_ID", "")

    def get_task_id(self):
        from . import _worker
        t = _worker.current_task
        return t.hex() if t else None

    def get_actor_id(self):
        from . import _worker
        a = _worker.current_actor_id
        return a.hex() if a else None

    @property
    def namespace(self):
        return _namespace

    def get_worker_id(self):
        return os.environ.get("SHOAL_WORKER_ID", "")


def get_runtime_context():
    return RuntimeContext()


def get_gpu_ids():
    """The GPUs (indices, as in CUDA_VISIBLE_DEVICES) given to the current task or actor."""
    from . import _worker
    if _worker.current_gpus is not None:
        return list(_worker.current_gpus)
    ids = os.environ.get("SHOAL_GPU_IDS", "")
    return [int(x) for x in ids.split(",") if x]
