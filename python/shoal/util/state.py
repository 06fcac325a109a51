"""The state API, as ray.util.state spells it: list_actors, list_tasks, list_nodes,
list_objects, list_placement_groups, list_workers, list_jobs, get_actor, get_task, get_node,
get_worker, get_placement_group, summarize_tasks, summarize_actors and summarize_objects.

Every list is one table of the head node's agent (STATE_LIST, docs/ray-introspection.md),
built from the scheduling core's tables; rows carry Ray's field names (actor_id, class_name,
state, node_id, pid, name, ray_namespace ...). ``filters`` are (column, "=" or "!=", value)
triples compared as strings, case-insensitively, as Ray compares them; ``limit`` (default 100)
bounds the rows; ``detail=False`` leaves out the columns that only detail shows. ``address`` may
name only the cluster this process is connected to (ValueError otherwise); ``timeout`` and
``raise_on_missing_output`` are accepted for Ray's signature: the answer comes from the head
node's memory at once, and nothing is missing from it but what ``limit`` cuts (with a warning)."""
import json
import warnings

from .. import _wire as w
from .. import exceptions as exc

DEFAULT_LIMIT = 100


class RayStateApiException(exc.RayError):
    """A state API call failed: the table, a filter or the cluster was wrong."""


class StateRecord(dict):
    """One row: a dict with Ray's field names that also reads as attributes (``a.state`` and
    ``a["state"]``), as Ray's state dataclasses do."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {k!r}; it has {sorted(self)}") from None


class ActorState(StateRecord):
    pass


class TaskState(StateRecord):
    pass


class NodeState(StateRecord):
    pass


class ObjectState(StateRecord):
    pass


class PlacementGroupState(StateRecord):
    pass


class WorkerState(StateRecord):
    pass


class JobState(StateRecord):
    pass


# Ray's fields of each record (ray.util.state.common, Ray 2.60): every record carries all of
# them, None where shoal lacks the fact or where only detail=True fills it, as Ray's
# dataclasses do; shoal's own extra fields (a placement group's strategy, a node's
# resources_available ...) come with detail=True.
_FIELDS = {
    "actors": ("actor_id", "class_name", "state", "job_id", "name", "node_id", "pid", "ray_namespace",
               "serialized_runtime_env", "required_resources", "death_cause", "is_detached", "placement_group_id",
               "repr_name", "num_restarts", "num_restarts_due_to_lineage_reconstruction",
               "num_restarts_due_to_node_preemption", "call_site", "label_selector", "fallback_strategy"),
    "tasks": ("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type", "func_or_class_name",
              "parent_task_id", "node_id", "worker_id", "worker_pid", "error_type", "language", "required_resources",
              "runtime_env_info", "placement_group_id", "events", "profiling_data", "creation_time_ms", "start_time_ms",
              "end_time_ms", "task_log_info", "error_message", "is_debugger_paused", "call_site", "label_selector",
              "fallback_strategy"),
    "nodes": ("node_id", "node_ip", "is_head_node", "state", "state_message", "node_name", "resources_total", "labels",
              "start_time_ms", "end_time_ms"),
    "objects": ("object_id", "object_size", "task_status", "attempt_number", "reference_type", "call_site", "type", "pid",
                "ip"),
    "placement_groups": ("placement_group_id", "name", "creator_job_id", "state", "bundles", "is_detached", "stats"),
    "workers": ("worker_id", "is_alive", "worker_type", "exit_type", "node_id", "ip", "pid", "exit_detail",
                "worker_launch_time_ms", "worker_launched_time_ms", "start_time_ms", "end_time_ms", "debugger_port",
                "num_paused_threads"),
    "jobs": (),
}

_KINDS = {"actors": ActorState, "tasks": TaskState, "nodes": NodeState, "objects": ObjectState,
          "placement_groups": PlacementGroupState, "workers": WorkerState, "jobs": JobState}


def _filters(filters):
    out = []
    for f in filters or []:
        if not isinstance(f, (list, tuple)) or len(f) != 3:
            raise ValueError(f"a filter is a (column, predicate, value) tuple, e.g. ('state', '=', 'ALIVE'); got {f!r}")
        k, op, v = f
        if isinstance(v, bool):
            v = "true" if v else "false"
        out.append([str(k), str(op), str(v)])
    return out


def _check_address(cl, address):
    if address in (None, "auto") or address == cl.address:
        return
    raise ValueError(f"state API address={address!r}: shoal answers for the cluster this process is connected to "
                     f"({cl.address}); connect to the other one with init(address=...) instead")


def _list(kind, filters=None, limit=DEFAULT_LIMIT, detail=False, address=None):
    from .._api import _auto_init
    cl = _auto_init()
    _check_address(cl, address)
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    try:
        reply = cl.request(w.STATE_LIST, {"kind": kind, "filters": _filters(filters), "limit": int(limit or 0)})
    except exc.RaySystemError as e:
        if str(e).startswith(("bad_request:", "no_head:")):
            raise RayStateApiException(str(e).split(": ", 1)[1]) from None
        raise
    data = json.loads(bytes(reply["data"]))
    cols = data["columns"]
    rows = data["rows"]
    if data["total"] > len(rows):
        warnings.warn(f"{data['total'] - len(rows)} ({data['total']} total) {kind} are not shown because of the limit "
                      f"{limit}; pass a higher limit= to see them", stacklevel=3)
    cls = _KINDS[kind]
    fields = _FIELDS[kind]
    out = []
    for r in rows:
        rec = {f: None for f in fields}
        rec.update({k: v for k, v in r.items() if detail or k in cols})
        out.append(cls(rec))
    return out


def list_actors(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=30, detail=False,
                raise_on_missing_output=True, _explain=False):
    """The cluster's actors (ActorState: actor_id, class_name, state, job_id, name, node_id, pid,
    ray_namespace ...); states PENDING_CREATION, ALIVE, RESTARTING, DEAD."""
    return _list("actors", filters, limit, detail, address)


def list_tasks(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=30, detail=False,
               raise_on_missing_output=True, _explain=False):
    """The cluster's tasks and actor calls (TaskState): the live ones, then the ended ones the
    cluster's recorder keeps (none with --observability=off)."""
    return _list("tasks", filters, limit, detail, address)


def list_nodes(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=30, detail=False,
               raise_on_missing_output=True, _explain=False):
    """The cluster's nodes (NodeState: node_id, node_ip, is_head_node, state, resources_total ...)."""
    return _list("nodes", filters, limit, detail, address)


def list_objects(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=30, detail=False,
                 raise_on_missing_output=True, _explain=False):
    """The objects of the head node's store directory (ObjectState: object_id, object_size,
    reference_type, node_id, pid ...)."""
    return _list("objects", filters, limit, detail, address)


def list_placement_groups(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=30, detail=False,
                          raise_on_missing_output=True, _explain=False):
    """The placement groups (PlacementGroupState: placement_group_id, name, state, bundles ...)."""
    return _list("placement_groups", filters, limit, detail, address)


def list_workers(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=30, detail=False,
                 raise_on_missing_output=True, _explain=False):
    """The drivers and worker processes (WorkerState: worker_id, worker_type, is_alive, node_id, pid ...)."""
    return _list("workers", filters, limit, detail, address)


def list_jobs(address=None, filters=None, limit=DEFAULT_LIMIT, timeout=30, detail=False,
              raise_on_missing_output=True, _explain=False):
    """The cluster's jobs (one per driver): job_id, status, driver_pid."""
    return _list("jobs", filters, limit, detail, address)


def _one(kind, column, id, address=None):
    rows = _list(kind, [(column, "=", id)], limit=0, detail=True, address=address)
    return rows[-1] if rows else None


def get_actor(id, address=None, timeout=30, _explain=False):
    """The actor with this hex id (ActorState, every field), or None."""
    return _one("actors", "actor_id", id, address)


def get_task(id, address=None, timeout=30, _explain=False):
    """The task with this hex id, or of this ObjectRef (TaskState of its latest attempt), or None."""
    from .._client import ObjectRef
    if isinstance(id, ObjectRef):
        id = id.task_id().hex()
    return _one("tasks", "task_id", id, address)


def get_node(id, address=None, timeout=30, _explain=False):
    """The node with this id (NodeState), or None."""
    return _one("nodes", "node_id", id, address)


def get_worker(id, address=None, timeout=30, _explain=False):
    """The worker (or driver) with this id (WorkerState), or None."""
    return _one("workers", "worker_id", id, address)


def get_placement_group(id, address=None, timeout=30, _explain=False):
    """The placement group with this hex id (PlacementGroupState), or None."""
    return _one("placement_groups", "placement_group_id", id, address)


def summarize_tasks(address=None, timeout=30, raise_on_missing_output=True, _explain=False):
    """Tasks counted by function (or Class.method) and state, as Ray's TaskSummaries:
    {"cluster": {"summary": {name: {"func_or_class_name", "type", "state_counts"}},
    "total_tasks", "total_actor_tasks", "total_actor_scheduled", "summary_by": "func_name"}}."""
    summary = {}
    totals = {"NORMAL_TASK": 0, "ACTOR_TASK": 0, "ACTOR_CREATION_TASK": 0}
    for t in _list("tasks", limit=0, detail=False, address=address):
        name = t["name"] or t["func_or_class_name"]
        s = summary.setdefault(name, {"func_or_class_name": name, "type": t["type"], "state_counts": {}})
        s["state_counts"][t["state"]] = s["state_counts"].get(t["state"], 0) + 1
        totals[t["type"]] = totals.get(t["type"], 0) + 1
    return {"cluster": {"summary": summary, "total_tasks": totals["NORMAL_TASK"], "total_actor_tasks": totals["ACTOR_TASK"],
                        "total_actor_scheduled": totals["ACTOR_CREATION_TASK"], "summary_by": "func_name"}}


def summarize_actors(address=None, timeout=30, raise_on_missing_output=True, _explain=False):
    """Actors counted by class and state: {"cluster": {"summary": {class: {"class_name",
    "state_counts"}}, "total_actors"}}."""
    summary = {}
    actors = _list("actors", limit=0, address=address)
    for a in actors:
        s = summary.setdefault(a["class_name"], {"class_name": a["class_name"], "state_counts": {}})
        s["state_counts"][a["state"]] = s["state_counts"].get(a["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(actors)}}


def summarize_objects(address=None, timeout=30, raise_on_missing_output=True, _explain=False):
    """Objects counted and sized: {"cluster": {"total_objects", "total_size_mb"}}."""
    objs = _list("objects", limit=0, address=address)
    size = sum(o["object_size"] or 0 for o in objs)
    return {"cluster": {"summary": {}, "total_objects": len(objs), "total_size_mb": size / (1 << 20)}}


__all__ = ["list_actors", "list_tasks", "list_nodes", "list_objects", "list_placement_groups", "list_workers", "list_jobs",
           "get_actor", "get_task", "get_node", "get_worker", "get_placement_group", "summarize_tasks",
           "summarize_actors", "summarize_objects", "ActorState", "TaskState", "NodeState", "ObjectState",
           "PlacementGroupState", "WorkerState", "JobState", "RayStateApiException", "StateRecord"]
