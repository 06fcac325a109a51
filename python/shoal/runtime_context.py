"""The runtime context, as ray.runtime_context has it: who and where the calling code is (its
job, node, worker, task, actor, resources, GPUs, placement group, namespace), always
describing the process that asks (docs/ray-introspection.md).

In a worker, the task being run is recorded by the worker loop (``task_started``) in a
context variable, so threads and asyncio tasks of one actor each see their own call; code
outside any call (a thread the user started) sees the last call this process began."""
import contextvars
import os
import sys
import warnings

from . import _conformance

_current = contextvars.ContextVar("shoal_current_task", default=None)
_last = None         # the last task this process began (threads that do not share the context)
_actor_spec = None   # the creation of the actor this worker holds, once it was created


# the accelerator kinds Ray 2.60's get_accelerator_ids() names
_ACCELERATORS = ("GPU", "TPU", "NPU", "HPU", "neuron_cores", "FURIOSA", "MBLT", "RBLN", "TTNPU")


def task_started(spec):
    """Called by the worker before it runs spec: keeps what the context reports of it (not its
    arguments)."""
    global _last, _actor_spec
    info = {k: spec.get(k) for k in ("task", "kind", "name", "fn", "method", "res", "pg", "bundle", "gpus", "attempt",
                                     "actor", "aname", "ns", "meta")}
    if spec.get("kind") == 1:  # KIND_ACTOR_CREATE: named Class.__init__ (name:Class.__init__), as Ray names it
        _actor_spec = dict(info)
        info["name"] = (f"{info['aname']}:" if info.get("aname") else "") + f"{info.get('name')}.__init__"
    _current.set(info)
    _last = info


def _worker_module():
    """The worker loop's module: it runs as __main__ (python -m shoal._worker), which is not the
    module `import shoal._worker` would give."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == "shoal._worker":
        return main
    from . import _worker
    return _worker


def _task():
    return _current.get() or _last


def _client():
    from . import _api
    return _api._auto_init()


class _ID:
    """An id as Ray's deprecated properties return it (JobID, NodeID ...): hex() and binary()."""

    __slots__ = ("_hex",)

    def __init__(self, h):
        self._hex = h

    def hex(self):
        return self._hex

    def binary(self):
        try:
            return bytes.fromhex(self._hex)
        except ValueError:
            return self._hex.encode()

    def is_nil(self):
        return not self._hex

    def __str__(self):
        return self._hex

    def __repr__(self):
        return f"{type(self).__name__}({self._hex})"

    def __eq__(self, other):
        return isinstance(other, _ID) and other._hex == self._hex

    def __hash__(self):
        return hash(self._hex)


class RuntimeContext:
    """What ray.get_runtime_context() returns; every answer describes the calling process."""

    def __init__(self, client):
        self._cl = client

    # ---- who asks
    def _who(self):
        cl = self._cl
        ctx = getattr(cl, "_runtime_who", None)
        if ctx is None:
            from . import _wire as w
            if cl.role == "worker":
                ctx = {"job": os.environ.get("SHOAL_JOB_ID", ""), "node": cl.node_id,
                       "worker": os.environ.get("SHOAL_WORKER_ID", "")}
            else:
                ctx = dict(cl.request(w.CONTEXT, {}))
            cl._runtime_who = ctx
        return ctx

    def _in_worker(self):
        return self._cl.role == "worker"

    def get(self):
        """A dict of the job id, node id and namespace (and the task and actor ids in a worker)."""
        warnings.warn("RuntimeContext.get() is deprecated. Use get_xxx_id() methods to get relevant ids instead.",
                      DeprecationWarning, stacklevel=2)
        d = {"job_id": _ID(self.get_job_id()), "node_id": _ID(self.get_node_id()), "namespace": self.namespace}
        if self._in_worker():
            if self.get_task_id():
                d["task_id"] = _ID(self.get_task_id())
            if self.get_actor_id():
                d["actor_id"] = _ID(self.get_actor_id())
        return d

    def get_job_id(self):
        """The current job's id (a string)."""
        return self._who()["job"]

    def get_node_id(self):
        """The id of the node this process runs on: a worker's own node, on a member node too."""
        return self._who()["node"] or self._cl.node_id

    def get_worker_id(self):
        """This worker's (or driver's) id."""
        return self._who()["worker"]

    def is_canceled(self):
        """Whether ray.cancel() was called on the running actor call (a sync call runs on and
        its result becomes TaskCancelledError; docs/ray-tasks.md)."""
        from . import _generator
        return _generator.current_cancelled()

    def get_task_id(self):
        """The hex id of the task (or actor call) running; None in a driver."""
        if not self._in_worker():
            return None
        t = _task()
        return bytes(t["task"]).hex() if t and t.get("task") else None

    def get_task_name(self):
        """The running task's name (the function, or Class.method); None in a driver."""
        if not self._in_worker():
            return None
        t = _task()
        return t.get("name") if t else None

    def get_task_function_name(self):
        """The running task's function as module.qualname (module.Class.method in an actor); None
        in a driver."""
        if not self._in_worker():
            return None
        t = _task()
        if not t:
            return None
        _worker = _worker_module()
        if t.get("kind") == 0:
            fn = _worker._fns.get(t.get("fn"))
            if fn is not None:
                return _conformance.task_function_name(fn)  # module.name, as Ray
            return t.get("name")
        cls = _worker._fns.get(_actor_spec.get("fn")) if _actor_spec else None
        if cls is None:
            return t.get("name")
        method = "__init__" if t.get("kind") == 1 else t.get("method")
        return _conformance.actor_function_name(cls, method)

    def get_dashboard_url(self):
        """The address of the cluster's dashboard (host:port), or "" when the cluster records
        nothing (--observability=off). Opening it needs the token `shoal dashboard` prints."""
        from . import _observe
        from . import exceptions as exc
        try:
            url = _observe._observe("dashboard").get("url") or ""
        except exc.RaySystemError:
            return ""
        return url.split("://", 1)[-1].rstrip("/")

    def get_actor_id(self):
        """The hex id of the actor this process holds; None outside an actor."""
        if not self._in_worker() or _actor_spec is None:
            return None
        return bytes(_actor_spec["actor"]).hex()

    def get_actor_name(self):
        """The actor's name ("" for an unnamed actor); None outside an actor."""
        if not self._in_worker() or _actor_spec is None:
            return None
        return _actor_spec.get("aname") or ""

    def get_node_labels(self):
        """The labels of this node: shoal has none yet ({})."""
        return {}

    def get_session_name(self):
        """The cluster's id (Ray's session name)."""
        return getattr(self._cl, "cluster_id", "")

    @property
    def current_actor(self):
        """A handle to the actor this code runs in. Raises RuntimeError outside an actor."""
        if not self._in_worker() or _actor_spec is None:
            raise RuntimeError("This method is only available in an actor.")
        from ._api import ActorHandle
        return ActorHandle(bytes(_actor_spec["actor"]), _actor_spec["meta"])

    @property
    def was_current_actor_reconstructed(self):
        """Whether this actor was restarted (after its process died) rather than created."""
        assert self.get_actor_id() is not None, "This method should't be called inside Ray tasks."
        return bool(_actor_spec.get("attempt"))

    def get_assigned_resources(self):
        """The resources given to the running task, or to the actor in an actor: {name: amount}.
        In a driver it fails an assertion, as Ray's does."""
        assert self._in_worker(), "This method is only available when the process is a worker."
        t = _actor_spec if _actor_spec is not None else _task()
        if t is None:
            return {}
        return {k: float(v) for k, v in (t.get("res") or {}).items() if v}

    def get_accelerator_ids(self):
        """The accelerators given to the running task or actor, as strings: {"GPU": ["0"], ...}.
        shoal places NVIDIA GPUs only: Ray's other accelerator kinds are listed, always empty."""
        ids = {k: [] for k in _ACCELERATORS}
        if self._in_worker():
            t = _actor_spec if _actor_spec is not None else _task()
            ids["GPU"] = [str(g) for g in ((t or {}).get("gpus") or [])]
        return ids

    def get_resource_ids(self):
        """The older spelling of get_accelerator_ids: {"GPU": [(id, 1.0)]}."""
        return {k: [(i, 1.0) for i in v] for k, v in self.get_accelerator_ids().items()}

    def get_placement_group_id(self):
        """The hex id of the placement group the task or actor runs in; None outside one."""
        if not self._in_worker():
            return None
        t = _actor_spec if _actor_spec is not None else _task()
        pg = (t or {}).get("pg")
        return bytes(pg).hex() if pg and any(pg) else None

    @property
    def namespace(self):
        """The namespace of this job (or the one given to init())."""
        from . import _api
        return _api._namespace

    @property
    def gcs_address(self):
        """The cluster's address (shoal has no GCS: the head node's agent)."""
        return self._cl.address

    @property
    def runtime_env(self):
        return {}

    def get_runtime_env_string(self):
        return "{}"

    @property
    def should_capture_child_tasks_in_placement_group(self):
        return False

    # Ray's deprecated properties (ids as objects with hex()), with Ray's warnings
    @property
    def job_id(self):
        _deprecated("get_job_id")
        return _ID(self.get_job_id())

    @property
    def node_id(self):
        _deprecated("get_node_id")
        return _ID(self.get_node_id())

    @property
    def task_id(self):
        _deprecated("get_task_id")
        t = self.get_task_id()
        return _ID(t) if t else None

    @property
    def actor_id(self):
        _deprecated("get_actor_id")
        a = self.get_actor_id()
        return _ID(a) if a else None

    @property
    def current_placement_group_id(self):
        _deprecated("get_placement_group_id")
        p = self.get_placement_group_id()
        return _ID(p) if p else None


def _deprecated(instead):
    warnings.warn(f"This API is deprecated. Use {instead}() instead.", DeprecationWarning, stacklevel=3)


def get_runtime_context():
    """The runtime context of this process; connects (init()) first when nothing has, as Ray
    does."""
    return RuntimeContext(_client())
