"""What the head node's agent recorded (docs/observability.md): the timeline of tasks and actor
calls, the end-of-job report so far, and the workers' lines printed in the driver (log_to_driver),
asked for with OBSERVE; and the markers a worker writes so that its lines are known by task."""
import json
import os
import sys
import threading
import time

from . import _wire as w


def _observe(what):
    from ._api import _auto_init
    reply = _auto_init().request(w.OBSERVE, {"what": what})
    return json.loads(bytes(reply["data"]))


def timeline(filename=None):
    """Every task and actor call of the cluster as Chrome trace events (open them in Perfetto or
    chrome://tracing), as ``ray.timeline`` gives them: written to ``filename`` as a JSON array of
    events (the trace format's "JSON Array Format", as Ray writes it) when it is given, else
    returned as that list of event dicts. (`shoal timeline -o FILE` writes the object format,
    with the trace's metadata.) Each complete event ("ph": "X") is one task's
    last attempt, on a process per node and a thread per worker; its ``args`` hold the task id,
    function, state, node, worker, attempt and the times in seconds since the cluster started.

    Raises RaySystemError when the cluster records nothing (``--observability=off``)."""
    trace = _observe("timeline")
    if filename is None:
        return trace["traceEvents"]
    with open(filename, "w") as f:
        json.dump(trace["traceEvents"], f)
    return None


def job_report():
    """The end-of-job report so far, as a dict (the JSON of ``shoal run --report``)."""
    return _observe("report")


# ---------------------------------------------------------------- log_to_driver

class _LogPrinter:
    """Prints the lines this driver's workers write, prefixed as Ray does ("(square pid=12,
    node=n1) text"): a thread polls the head node's agent (OBSERVE driver_logs: the lines
    waiting there for this driver) on a connection of its own every POLL seconds, so the
    driver's own connection carries nothing more."""
    POLL = 0.2

    def __init__(self, address, secret, job):
        self.address, self.secret, self.job = address, secret, job
        self.since = 0
        self.conn = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="shoal-log-to-driver", daemon=True)
        self.thread.start()

    def _poll(self):
        with self.lock:
            if self.conn is None:
                self.conn, _, _ = w.connect(self.address, self.secret, "cli")
            self.conn.send(w.encode(w.OBSERVE, 1, {"what": "driver_logs", "job": self.job, "since": self.since}))
            while True:
                t, seq, body = self.conn.recv()
                if seq == 1:
                    break
            if t != w.OK:
                return
            r = json.loads(bytes(body["data"]))
            for line in r["lines"]:
                out = sys.stderr if line["stream"] == "stderr" else sys.stdout
                name = line["name"] or line["worker"]
                try:
                    out.write(f"({name} pid={line['pid']}, node={line['node']}) {line['text']}\n")
                except (OSError, ValueError):
                    pass
            self.since = r["next"]
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def _loop(self):
        while not self.stop.wait(self.POLL):
            try:
                self._poll()
            except Exception:  # noqa: BLE001 - the cluster went away: stop printing
                return

    def close(self, drain=0.3):
        """Print what is left (lines of the last tasks may still be on their way: wait drain
        seconds for them) and stop."""
        self.stop.set()
        self.thread.join(1)
        try:
            if drain:
                time.sleep(drain)
            self._poll()
        except Exception:  # noqa: BLE001
            pass
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


_printer = None


def register_driver(client, secret, log_to_driver):
    """Tell the agent this driver's job reads (log_to_driver=True) or ignores its workers' lines,
    and start printing them. A cluster with observability off keeps the old way (lines on the
    cluster's own stdout)."""
    global _printer
    from . import exceptions as exc
    try:
        r = client.request(w.OBSERVE, {"what": "driver", "log_to_driver": bool(log_to_driver)})
    except exc.RaySystemError:
        return
    job = json.loads(bytes(r["data"]))["job"]
    if log_to_driver:
        _printer = _LogPrinter(client.address, secret, job)


def stop_printing():
    global _printer
    p, _printer = _printer, None
    if p is not None:
        p.close()


# ---------------------------------------------------------------- in a worker

_mark = None  # (task id, actor id or None, name) of the task the worker runs; None: none yet


class MarkedStream:
    """A worker's stdout or stderr: before the first write of each task it writes a marker line
    that tells its agent which task (and actor) the lines that follow belong to
    (nodeagent/obs/logs.go). The marker is made at that first write, not when the task starts,
    so that a task that prints nothing costs one tuple (this is on the path of every task)."""

    def __init__(self, stream):
        self._stream = stream
        self._marked = None

    def write(self, data):
        m = _mark
        if m is not self._marked:
            self._marked = m
            if m is not None:
                self._stream.write(_marker_line(m))
        return self._stream.write(data)

    def __getattr__(self, k):
        return getattr(self._stream, k)


def _marker_line(m):
    task, actor, name = m
    return "\x1eshoal-task %d %s %s %s\n" % (os.getpid(), bytes(task).hex(),
                                             bytes(actor).hex() if actor else "-", name or "-")


def mark_task(spec, actor_id):
    """Called by the worker before it runs spec."""
    global _mark
    _mark = (spec["task"], actor_id or spec.get("actor"), spec.get("name"))
