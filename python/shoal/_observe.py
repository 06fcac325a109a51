"""What the head node's agent recorded (docs/observability.md): the timeline of tasks and actor
calls, and the end-of-job report so far, asked for with OBSERVE."""
import json

from . import _wire as w


def _observe(what):
    from ._api import _auto_init
    reply = _auto_init().request(w.OBSERVE, {"what": what})
    return json.loads(bytes(reply["data"]))


def timeline(filename=None):
    """Every task and actor call of the cluster as Chrome trace events (open them in Perfetto or
    chrome://tracing), as ``ray.timeline`` gives them: written to ``filename`` as JSON when it is
    given, else returned as a list of event dicts. Each complete event ("ph": "X") is one task's
    last attempt, on a process per node and a thread per worker; its ``args`` hold the task id,
    function, state, node, worker, attempt and the times in seconds since the cluster started.

    Raises RaySystemError when the cluster records nothing (``--observability=off``)."""
    trace = _observe("timeline")
    if filename is None:
        return trace["traceEvents"]
    with open(filename, "w") as f:
        json.dump(trace, f)
    return None


def job_report():
    """The end-of-job report so far, as a dict (the JSON of ``shoal run --report``)."""
    return _observe("report")
