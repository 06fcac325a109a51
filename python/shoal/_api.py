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

from . import _actor_exec
from . import _client as C
from . import _conformance
from . import _generator
from . import _observe
from . import _runtime_env
from . import _serial
from . import _wire as w
from . import exceptions as exc
from .runtime_context import RuntimeContext, get_runtime_context  # noqa: F401 (runtime_context.py)

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
         namespace=None, ignore_reinit_error=False, log_to_driver=True, runtime_env=None, labels=None, **kwargs):
    """Connect to the cluster in SHOAL_ADDRESS (or `address`), or start a local one-node cluster
    that lives as long as this process (or until shutdown())."""
    global _local_cluster, _namespace
    namespace, runtime_env = _conformance.apply_job_config(kwargs.pop("job_config", None), namespace, runtime_env)
    _conformance.check_namespace(namespace, "init()")  # None or a non-empty str, as Ray, before all else
    extra_args, extra_env, joining_only_ok = _init_extras(kwargs)
    with _lock:
        if C._client is not None:
            if ignore_reinit_error or C._client.role == "worker":
                return _context()
            raise RuntimeError("Maybe you called shoal.init twice by accident? Pass ignore_reinit_error=True to allow it.")
        if namespace is not None:
            _namespace = namespace
        from . import _connect, _runtime_env
        address, secret = _connect.resolve(address, _shoal_binary)  # _connect.py
        if address is not None:
            # Ray: "When connecting to an existing cluster, num_cpus and num_gpus must not be
            # provided" (and the same for resources, object_store_memory, labels): the cluster
            # was sized where it started, and a value given here would be ignored
            sized = [k for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus), ("resources", resources),
                                    ("object_store_memory", object_store_memory), ("labels", labels)) if v is not None]
            if sized:
                raise ValueError(f"init({', '.join(f'{k}=' for k in sized)}...): this driver joins the running "
                                 f"cluster at {address}, whose nodes were sized where it started; give these to "
                                 "`shoal run`/`shoal launch`/`shoal serve` (--num-cpus, --num-gpus, --resources, "
                                 "--object-store-memory, --labels), or run the script without SHOAL_ADDRESS and "
                                 "address= for a local cluster of that size")
        if address is not None and not joining_only_ok:
            raise ValueError(f"init({', '.join(sorted(k for k in kwargs if k in _INIT_AT_START))}=...) sets up a cluster "
                             f"init() starts; this driver joins the running one at {address}, which was set up where "
                             "it started (shoal run/launch/up/serve flags); leave them out here")
        if address is None:
            args = [_shoal_binary(), "serve", "--watch-stdin", *extra_args]
            if num_cpus is not None:
                args += ["--num-cpus", str(num_cpus)]
            if num_gpus is not None:
                args += ["--num-gpus", str(num_gpus)]
            if object_store_memory is not None:
                args += ["--object-store-memory", str(int(object_store_memory))]
            if resources:
                args += ["--resources", json.dumps(resources)]
            if labels:
                args += ["--labels", json.dumps(labels)]  # node labels for label_selector
            env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_") or k in ("SHOAL_TMPDIR", "SHOAL_LOG_LEVEL", "SHOAL_STATE_DIR")}
            env.update(extra_env)
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                raise RuntimeError(f"the local shoal cluster did not start (exit code {proc.returncode}); see its error above")
            info = json.loads(line)
            _local_cluster = proc
            proc._drain = _connect.drain(proc.stdout)  # a full pipe would block the cluster
            address, secret = info["address"], info["secret"]
        C._client = C.Client(address, secret, role="driver", namespace=_namespace)
        _observe.register_driver(C._client, secret, log_to_driver)
        atexit.register(shutdown)
        try:
            _runtime_env.set_job(runtime_env)  # _runtime_env.py: packs and ships working_dir, py_modules
        except BaseException:
            shutdown()
            raise
        return _context()


# Ray's other init() keywords: those that set up the cluster init() starts (applied to it;
# refused when this driver joins a running cluster, whose set-up was made where it started),
# those for this process, and values shoal refuses. Any other keyword is a TypeError, as a
# misspelt one is in Ray: none is accepted and ignored.
_INIT_AT_START = {"include_dashboard", "dashboard_host", "dashboard_port", "_temp_dir"}
_LOG_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "WARN": "warn", "ERROR": "error", "CRITICAL": "error"}


def _init_extras(kw):
    """(serve args, env, joining ok) for init()'s keywords beyond shoal's own (docs/ray-conformance.md)."""
    import logging
    known = _INIT_AT_START | {"local_mode", "logging_level", "configure_logging", "_system_config"}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise TypeError(f"init() got an unexpected keyword argument {unknown[0]!r} (Ray's init() keywords that "
                        "shoal knows are listed by `shoal compat`)")
    if kw.get("local_mode"):
        raise ValueError("init(local_mode=True) is not supported: tasks always run in worker processes "
                         "(Ray deprecated local_mode too); debug a task by calling its function directly")
    if kw.get("_system_config"):
        raise ValueError("init(_system_config=...) is not supported: shoal's settings are the flags of shoal "
                         "run/launch/serve and /etc/shoal/shoal.toml (`shoal config show`)")
    args, env = [], {}
    if kw.get("include_dashboard") is False:
        args.append("--dashboard=false")
    if kw.get("dashboard_host") is not None:
        args += ["--dashboard-host", str(kw["dashboard_host"])]
    if kw.get("dashboard_port") is not None:
        args += ["--dashboard-port", str(int(kw["dashboard_port"]))]
    if kw.get("_temp_dir") is not None:
        env["SHOAL_TMPDIR"] = str(kw["_temp_dir"])
    level = kw.get("logging_level", logging.INFO)
    name = logging.getLevelName(level) if isinstance(level, int) else str(level).upper()
    if name not in _LOG_LEVELS:
        raise ValueError(f"init(logging_level={level!r}): use a logging level (logging.INFO, 'debug', ...)")
    if "logging_level" in kw:
        env["SHOAL_LOG_LEVEL"] = _LOG_LEVELS[name]  # the cluster's agents, when init() starts it
    if kw.get("configure_logging", True):
        logging.getLogger("shoal").setLevel(name)  # this process's shoal logger, as Ray sets ray's
    joining_ok = not any(kw.get(k) is not None and not (k == "include_dashboard" and kw[k]) for k in _INIT_AT_START)
    return args, env, joining_ok


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
            if getattr(proc, "_drain", None) is not None:
                proc._drain.join(5)
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
    """The value of one ObjectRef, or the values of a list of them in its order, as ray.get:
    a list must hold only ObjectRefs (a nested list or a plain value raises TypeError, a tuple
    or other container ValueError); timeout=0 returns what is ready or raises GetTimeoutError."""
    cl = _auto_init()
    _warn_blocking_in_async("get")
    if timeout is not None and timeout < 0:
        raise ValueError(f"The 'timeout' argument of get() must be nonnegative or None. Received {timeout}")
    if isinstance(object_refs, C.ObjectRef):
        return cl.get([object_refs], timeout)[0]
    if isinstance(object_refs, _generator.ObjectRefGenerator):
        return object_refs  # as Ray does: the generator itself (iterate it for its values)
    if not isinstance(object_refs, list):
        raise ValueError(f"Invalid type of object refs, {type(object_refs)}, is given. "
                         "'object_refs' must either be an ObjectRef or a list of ObjectRefs (as in Ray; "
                         "pass list(...) for another container).")
    for r in object_refs:
        if not isinstance(r, C.ObjectRef):
            raise TypeError(f"Attempting to call `get` on the value {r!r}, which is not an ObjectRef.")
    if not object_refs:
        return []
    return cl.get(object_refs, timeout)


def wait(object_refs, *, num_returns=1, timeout=None, fetch_local=True):
    """(ready, not_ready) as ray.wait: both in the input's order, at most num_returns ready;
    wait([]) is ([], []). fetch_local is accepted; a ready object is sealed somewhere in the
    cluster and get() pulls it then (docs/ray-util.md)."""
    cl = _auto_init()
    if isinstance(object_refs, C.ObjectRef):
        raise TypeError("wait() expected a list of ObjectRef, got a single ObjectRef")
    if not isinstance(object_refs, list):
        raise TypeError(f"wait() expected a list of ObjectRef, got {type(object_refs)} (pass list(...), as Ray wants)")
    if timeout is not None and timeout < 0:
        raise ValueError(f"The 'timeout' argument must be nonnegative. Received {timeout}")
    for r in object_refs:
        if not isinstance(r, (C.ObjectRef, _generator.ObjectRefGenerator)):
            raise TypeError(f"wait() expected a list of ObjectRef, got list containing {type(r)}")
    if not object_refs:
        return [], []
    if len(set(object_refs)) != len(object_refs):
        raise ValueError("Wait requires a list of unique object refs.")
    if num_returns <= 0:
        raise ValueError("Invalid number of objects to return %d." % num_returns)
    if num_returns > len(object_refs):
        raise ValueError("num_returns cannot be greater than the number of objects provided to wait "
                         f"({num_returns} > {len(object_refs)}).")
    if any(isinstance(r, _generator.ObjectRefGenerator) for r in object_refs):
        return _generator.wait(cl, list(object_refs), num_returns, timeout)  # ready: its next ref is, or it ended
    return cl.wait(list(object_refs), num_returns, timeout)


_async_warned = set()


def _warn_blocking_in_async(what):
    """Log once, as Ray does, when a blocking get/wait runs in a worker (an async actor) on a
    thread with a running asyncio event loop: it blocks the loop, `await ref` does not. A
    driver's coroutine is left alone, as in Ray."""
    aio = sys.modules.get("asyncio")
    if aio is None or what in _async_warned or aio._get_running_loop() is None:
        return
    if C._client is None or C._client.role != "worker":
        return
    _async_warned.add(what)
    import logging
    logging.getLogger("shoal").warning(
        "Using blocking shoal.%s() inside an async actor blocks its event loop. Use `await ref` (or "
        "`await asyncio.gather(*refs)`) to yield to the loop instead.", what)


# ---------------------------------------------------------------- options

_TASK_OPTS = {"num_cpus", "num_gpus", "resources", "memory", "num_returns", "max_retries", "retry_exceptions",
              "scheduling_strategy", "placement_group", "placement_group_bundle_index",
              "placement_group_capture_child_tasks", "name", "runtime_env", "accelerator_type", "max_calls", "label_selector"}
_ACTOR_OPTS = {"num_cpus", "num_gpus", "resources", "memory", "max_restarts", "max_task_retries", "name",
               "namespace", "lifetime", "scheduling_strategy", "placement_group", "placement_group_bundle_index",
               "placement_group_capture_child_tasks", "max_concurrency", "get_if_exists", "runtime_env",
               "concurrency_groups", "accelerator_type", "label_selector"}


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


def _task_placement(opts):
    """The spec's scheduling fields (util/scheduling_strategies.py); options that would change
    placement in a way shoal does not follow are refused rather than ignored."""
    from .util.scheduling_strategies import PlacementGroupSchedulingStrategy, strategy_fields
    strat = opts.get("scheduling_strategy")
    if opts.get("placement_group_capture_child_tasks") or (
            isinstance(strat, PlacementGroupSchedulingStrategy) and strat.placement_group_capture_child_tasks):
        raise ValueError("placement_group_capture_child_tasks=True is not supported by shoal: child tasks do not "
                         "inherit the placement group; pass it to them explicitly with scheduling_strategy")
    return strategy_fields(opts)


def _task_resources(opts, default_cpu):
    """_resources plus accelerator_type, which asks (as in Ray) for a sliver of the custom
    resource accelerator_type:<type> that nodes of that type offer."""
    res = _resources(opts, default_cpu)
    acc = opts.get("accelerator_type")
    if acc:
        res[f"accelerator_type:{acc}"] = 0.001
    return res


# ---------------------------------------------------------------- tasks

class RemoteFunction:
    def __init__(self, fn, opts):
        _check_opts(opts, _TASK_OPTS, "remote functions")
        _conformance.check_task_function(fn)  # async def is refused, as Ray does
        _generator.task_fields(opts, fn)  # num_returns and retry options checked as Ray does, at decoration
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
        _generator.task_fields(rf._opts, rf._function)
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
        _bind_fn(self, args, kwargs)  # docs/ray-actors.md: arguments checked at the call site
        cl = _auto_init()
        opts = self._opts
        nret, mode, extra = _generator.task_fields(opts, self._function)  # generators, retries, max_calls
        _conformance.check_pg_fit(opts, self._name, 1)  # fits a bundle, or ValueError as Ray (before the code is sent)
        extra.update(_task_placement(opts))
        renv = _runtime_env.resolve(opts.get("runtime_env"))  # _runtime_env.py; raises before anything is sent
        data, argobj, deps, refs = _pack_args(cl, args, kwargs)  # first: arguments that fail to pack send nothing
        fid, fnb = _fn_code(cl, code_holder, self._function)  # the code counts as sent from here
        pg, bundle = _pg_of(opts)
        retries = opts.get("max_retries", 3)
        spec = {"task": cl.next_id(b"\0\0\0\0"), "kind": w.KIND_TASK, "fn": fid, "name": opts.get("name") or self._name,
                "lang": "python", "args": data, "argobj": argobj, "deps": deps, "refs": refs,
                "nret": max(nret, 1) if nret else 1, "res": _task_resources(opts, 1), "retries": retries,
                "pg": pg, "bundle": bundle, **extra}
        if fnb is not None:
            spec["fnb"] = fnb
        _runtime_env.attach(spec, renv)
        refs_out = cl.submit(spec, spec["nret"], code=code_holder._fnb)
        if argobj is not None:
            cl._decref.add(argobj)
        return _generator.wrap(cl, mode, nret, refs_out)


# ---------------------------------------------------------------- actors
# docs/ray-actors.md: concurrency (_actor_exec.py runs the calls), handle counting, lifetimes.

_LIFETIMES = (None, "non_detached", "detached")


def _signature(fn, drop_self):
    """fn's signature for checking .remote()'s arguments (None when it has none to check)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if drop_self and params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        params = params[1:]
    # annotations play no part in binding, and may name what does not pickle (the actor class)
    return sig.replace(parameters=[p.replace(annotation=p.empty) for p in params], return_annotation=sig.empty)


def _bind(sig, args, kwargs, what):
    """Raise TypeError at the call site when args do not fit sig, as Ray's .remote() does."""
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{what}: {e}") from None


def _check_retries(v, what):
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < -1:
        raise ValueError(f"{what} must be an integer >= -1 (-1: retry forever), got {v!r}")


def method(*, num_returns=1, concurrency_group=None, max_task_retries=None, retry_exceptions=None, **unknown):
    """@method(...) on an actor method, as Ray's @ray.method: its number of return values, its
    concurrency group and its max_task_retries."""
    if unknown:
        raise ValueError(f"Invalid option keyword(s) {sorted(unknown)} for @method; valid ones are "
                         "['concurrency_group', 'max_task_retries', 'num_returns']")
    if retry_exceptions not in (None, False):
        raise ValueError("retry_exceptions is not supported on actor methods in shoal: an actor method that raises "
                         "is not retried (max_task_retries retries calls whose actor process died)")
    _check_retries(max_task_retries, "max_task_retries")

    def deco(f):
        f.__shoal_num_returns__ = num_returns
        f.__shoal_concurrency_group__ = concurrency_group
        f.__shoal_max_task_retries__ = max_task_retries
        return f
    return deco


def _bind_fn(rf, args, kwargs):
    """A remote function's arguments checked against its signature (cached on it)."""
    sig = rf.__dict__.get("_sig", False)
    if sig is False:
        sig = rf.__dict__["_sig"] = _signature(rf._function, False)
    _bind(sig, args, kwargs, f"{rf.__name__}.remote()")


def _check_actor_opts(opts):
    _check_opts(opts, _ACTOR_OPTS, "actors")
    lt = opts.get("lifetime")
    if lt not in _LIFETIMES:
        raise ValueError(f"actor lifetime must be None, 'non_detached' or 'detached', got {lt!r}")
    _check_retries(opts.get("max_task_retries"), "max_task_retries")
    _check_retries(opts.get("max_restarts"), "max_restarts")
    if opts.get("get_if_exists") and not opts.get("name"):
        raise ValueError("get_if_exists=True needs a name: the actor must be created with name=...")


class ActorClass:
    def __init__(self, cls, opts):
        _check_actor_opts(opts)
        self._cls = cls
        self._opts = opts
        self._fnb = None
        self._fid = None
        self.__name__ = cls.__name__
        self.__qualname__ = getattr(cls, "__qualname__", cls.__name__)
        self.__module__ = getattr(cls, "__module__", None)
        self.__doc__ = cls.__doc__
        self._meta_info = None
        self._init_sig = _signature(cls, False)
        self._conc = _actor_exec.actor_config(cls, opts, self._method_groups(), check_methods=False)

    def __call__(self, *a, **k):
        raise TypeError(f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use '{self.__name__}.remote()'.")

    def options(self, **opts):
        merged = {**self._opts, **opts}
        _check_actor_opts(merged)
        ac = ActorClass.__new__(ActorClass)
        ac.__dict__.update(self.__dict__)
        ac._opts = merged
        ac._conc = _actor_exec.actor_config(self._cls, merged, self._method_groups(), check_methods=False)
        ac._meta_info = None
        parent = self

        class _Bound:
            def remote(_s, *a, **k):
                return ac._create(a, k, parent)

            def bind(_s, *a, **k):
                raise NotImplementedError("DAG bind is not supported")
        return _Bound()

    def remote(self, *args, **kwargs):
        return self._create(args, kwargs, self)

    def _members(self):
        return inspect.getmembers(self._cls, predicate=lambda x: inspect.isfunction(x) or inspect.ismethod(x))

    def _method_groups(self):
        return {name: getattr(m, "__shoal_concurrency_group__", None) for name, m in self._members()}

    def _methods(self):
        out = {}
        for name, m in self._members():
            gen = inspect.isgeneratorfunction(m) or inspect.isasyncgenfunction(m)
            out[name] = getattr(m, "__shoal_num_returns__", "streaming" if gen else 1)
        return out

    def _meta(self):
        """What every handle of the actor knows (it travels with the handle and through the
        head's actor table): methods, their signatures and options, the actor's concurrency."""
        if self._meta_info is None:
            sigs, mtr = {}, {}
            for name, m in self._members():
                static = isinstance(inspect.getattr_static(self._cls, name, None), staticmethod)
                sigs[name] = _signature(m, drop_self=not static and not inspect.ismethod(m))
                if getattr(m, "__shoal_max_task_retries__", None) is not None:
                    mtr[name] = m.__shoal_max_task_retries__
            info = {"class": self._cls.__name__, "methods": self._methods(), "conc": self._conc,
                    "mtr": self._opts.get("max_task_retries") or 0, "method_mtr": mtr,
                    "groups": self._method_groups()}
            try:
                self._meta_info = cloudpickle.dumps({**info, "sigs": sigs})
            except Exception:  # noqa: BLE001 - a default value that does not pickle: no call-site check then
                self._meta_info = cloudpickle.dumps(info)
        return self._meta_info

    def _create(self, args, kwargs, holder):
        _bind(self._init_sig, args, kwargs, f"{self.__name__}.remote()")
        _actor_exec.actor_config(self._cls, self._opts, self._method_groups())  # a method's group exists
        cl = _auto_init()
        opts = self._opts
        name = opts.get("name") or ""
        ns = opts.get("namespace")
        _conformance.check_namespace(ns, f"{self._cls.__name__}.options()")  # None or a non-empty str, as Ray
        ns = _namespace if ns is None else ns
        if opts.get("lifetime") == "detached":
            from . import _connect
            _connect.detached_actor(_local_cluster is not None)  # _connect.py
        if name and opts.get("get_if_exists"):
            try:
                return get_actor(name, namespace=ns or None)
            except ValueError:
                pass
        _conformance.check_pg_fit(opts, self._cls.__qualname__, 0)  # fits a bundle, or ValueError as Ray (before the code is sent)
        meta = self._meta()
        renv = _runtime_env.resolve(opts.get("runtime_env"))  # _runtime_env.py; raises before anything is sent
        data, argobj, deps, refs = _pack_args(cl, args, kwargs)  # first: arguments that fail to pack send nothing
        fid, fnb = _fn_code(cl, holder, self._cls)  # the code counts as sent from here
        pg, bundle = _pg_of(opts)
        aid = cl.next_id(b"\xff\xff\xff\xfe")
        restarts = opts.get("max_restarts") or 0
        spec = {"task": cl.next_id(b"\0\0\0\0"), "kind": w.KIND_ACTOR_CREATE, "fn": fid, "name": self._cls.__name__,
                "lang": "python", "args": data, "argobj": argobj, "deps": deps, "refs": refs, "nret": 1,
                "res": _task_resources(opts, 0), "retries": 0, "actor": aid, "restarts": -1 if restarts == -1 else int(restarts),
                "aname": name, "ns": ns, "meta": meta, "pg": pg, "bundle": bundle, "conc": self._conc["conc"],
                "detached": opts.get("lifetime") == "detached", **_task_placement(opts)}
        if fnb is not None:
            spec["fnb"] = fnb
        _runtime_env.attach(spec, renv)
        try:
            (ready,) = cl.submit(spec, 1, wait_ok=bool(name))
        except ValueError:
            if name and opts.get("get_if_exists"):
                return get_actor(name, namespace=ns or None)  # another caller created it meanwhile
            raise
        if argobj is not None:
            cl._decref.add(argobj)
        return ActorHandle(aid, meta, ready)


_SPECIAL_METHODS = {"__ray_ready__": 1, "__ray_terminate__": 1}


class ActorHandle:
    """A handle to an actor. Every handle holds a reference to the object its creation returns
    (the `ready` ref): handles are counted as objects are, in this process and wherever a
    handle is passed, and when the last is gone an actor without a name that is not detached
    ends (docs/ray-actors.md "Handle counting")."""

    def __init__(self, aid, meta, ready=None):
        self._actor_id = aid
        self._meta = meta
        info = cloudpickle.loads(meta)
        self._class_name = info["class"]
        self._method_returns = info["methods"]
        self._info = info
        self._ready = ready

    def __getattr__(self, name):
        d = self.__dict__
        if name in _SPECIAL_METHODS:
            return ActorMethod(self, name, _SPECIAL_METHODS[name])
        if name.startswith("__") or name not in d.get("_method_returns", {}):
            raise AttributeError(f"'{d.get('_class_name', 'Actor')}' actor has no method '{name}'")
        return ActorMethod(self, name, self._method_returns[name])

    def __repr__(self):
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __reduce__(self):
        return (ActorHandle, (self._actor_id, self._meta, self._ready))

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self):
        return hash(self._actor_id)

    def __del__(self):
        ready = self.__dict__.get("_ready")
        if ready is None:
            return
        cl = ready._cl
        self._ready = None
        del ready  # the handle's reference, queued as a DECREF: send it now so that the actor ends soon
        try:
            if cl is not None and not cl._closed and cl._send_lock.acquire(blocking=False):
                try:
                    cl._flush_locked()
                finally:
                    cl._send_lock.release()
        except Exception:  # noqa: BLE001 - at interpreter exit, or a closed connection
            pass


class ActorMethod:
    def __init__(self, handle, name, num_returns, opts=None):
        self._h = handle
        self._name = name
        self._nret = num_returns
        self._opts = opts or {}

    def __call__(self, *a, **k):
        raise TypeError(f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', try 'object.{self._name}.remote()'.")

    _OPTS = {"num_returns", "max_task_retries", "concurrency_group", "name", "retry_exceptions"}

    def options(self, **opts):
        _check_opts(opts, self._OPTS, "actor methods")
        if opts.get("retry_exceptions") not in (None, False):
            raise ValueError("retry_exceptions is not supported on actor methods in shoal: an actor method that raises "
                             "is not retried (max_task_retries retries calls whose actor process died)")
        _check_retries(opts.get("max_task_retries"), "max_task_retries")
        g = opts.get("concurrency_group")
        if g is not None and g not in self._h._info.get("conc", {}).get("groups", {}):
            raise ValueError(f"concurrency group {g!r} is not defined by actor {self._h._class_name}; "
                             "add it to the class's concurrency_groups")
        return ActorMethod(self._h, self._name, opts.get("num_returns", self._nret), {**self._opts, **opts})

    def remote(self, *args, **kwargs):
        info = self._h._info
        sig = (info.get("sigs") or {}).get(self._name)
        _bind(sig, args, kwargs, f"{self._h._class_name}.{self._name}.remote()")
        cl = _auto_init()
        nret, mode, extra = _generator.task_fields({"num_returns": self._nret}, None, is_actor_method=True)
        data, argobj, deps, refs = _pack_args(cl, args, kwargs)
        retries = self._opts.get("max_task_retries")
        if retries is None:
            retries = (info.get("method_mtr") or {}).get(self._name, info.get("mtr", 0))
        spec = {"task": cl.next_id(b"\0\0\0\0"), "kind": w.KIND_ACTOR_METHOD, "fn": None,
                "name": self._opts.get("name") or f"{self._h._class_name}.{self._name}", "lang": "python", "args": data,
                "argobj": argobj, "deps": deps, "refs": refs, "nret": max(nret, 1), "res": {}, "retries": int(retries),
                "actor": self._h._actor_id, "method": self._name, **extra}
        if self._opts.get("concurrency_group"):
            spec["cg"] = self._opts["concurrency_group"]
        out = cl.submit(spec, max(nret, 1))
        if argobj is not None:
            cl._decref.add(argobj)
        return _generator.wrap(cl, mode, nret, out)


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
    if isinstance(object_ref, _generator.ObjectRefGenerator):
        object_ref = object_ref._end  # a streaming generator: its task
    if not isinstance(object_ref, C.ObjectRef):
        raise TypeError(f"cancel() takes an ObjectRef returned by a task; got {type(object_ref).__name__}")
    cl = _auto_init()
    if cl._local_ids and cl.cancel_local(object_ref._id, force, recursive):
        return  # a task its node's agent runs (docs/architecture.md "Member-local scheduling")
    try:
        cl.request(w.CANCEL, {"object": object_ref._id, "force": bool(force), "recursive": bool(recursive)})
    except ValueError as e:  # force=True on an actor call
        raise _generator.CancelArgumentError(str(e)) from None


def get_actor(name, namespace=None):
    _conformance.check_namespace(namespace, "get_actor()")  # None or a non-empty str, as Ray
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
        addr = n.get("ip") or "127.0.0.1"  # the node's own address, a member's as the head's
        out.append({"NodeID": n["id"], "Alive": n["alive"], "NodeManagerAddress": addr,
                    "NodeManagerHostname": n["id"], "Resources": dict(n["total"]), "alive": n["alive"],
                    "Labels": dict(n.get("labels") or {})})
    return out


def get_gpu_ids():
    """The GPUs (indices, as in CUDA_VISIBLE_DEVICES) given to the current task or actor."""
    from . import _worker
    if _worker.current_gpus is not None:
        return list(_worker.current_gpus)
    ids = os.environ.get("SHOAL_GPU_IDS", "")
    return [int(x) for x in ids.split(",") if x]
