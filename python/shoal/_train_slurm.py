"""shoal.train.run across Slurm allocations: the time-limit warning, preemption and requeue,
and the run's history (docs/training.md, "Across allocations").

The same Go code as `shoal train` does the Slurm and SQLite parts, through two hidden commands
of the shoal binary: `shoal train slurm-job [--requeue]` (is the job being preempted? requeue
it) and `shoal train run-state` (the history, train.StateServer, JSON lines), which the run's
controller actor keeps open so that rank 0's checkpoint report returns once it is in the
history. This module holds the driver's side (its signal handlers, the hold) and the helpers
the controller and the workers use.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from . import _api

DUE_TIME_LIMIT = "T"
DUE_PREEMPTED = "P"
DUE_GROW = "G"  # an elastic gang restarts on room that came (train.py, as train/grow.go)
# end reasons, as train/history.go records them
END_COMPLETED, END_FAILED, END_PREEMPTED, END_REQUEUED = "completed", "failed", "preempted", "requeued"
END_TIME_LIMIT, END_CANCELLED, END_LOST, END_GROWN = "time-limit", "cancelled", "lost", "grown"
_WHAT = {DUE_TIME_LIMIT: "the time-limit warning", DUE_PREEMPTED: "a preemption", DUE_GROW: "room for more workers"}


def parse_signal(name, arg="warn_signal"):
    """A signal given as 'USR1', 'SIGUSR1', a number or a signal.Signals; None or '' is none."""
    if name is None or name == "":
        return None
    if isinstance(name, int) and not isinstance(name, bool):
        try:
            sig = signal.Signals(name)
        except ValueError:
            raise ValueError(f"run({arg}={name!r}): not a signal number") from None
    elif isinstance(name, str):
        n = name.strip().upper()
        n = n if n.startswith("SIG") else "SIG" + n
        try:
            sig = signal.Signals[n]
        except KeyError:
            raise ValueError(f"run({arg}={name!r}): not a signal name; give one such as 'USR1' or 'USR2', or None") from None
    else:
        raise ValueError(f"run({arg}={name!r}): give a signal name such as 'USR1', a number, or None")
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f"run({arg}={name!r}): {sig.name} cannot be caught; give one such as 'USR1'")
    return sig


def ignore_signals(sigs):
    """In a worker (rank or controller): Slurm signals every process of the step, and a
    preemption's SIGTERM or the time-limit warning must not end it; the driver tells the ranks
    what to do instead (checkpoint_due())."""
    for s in sigs or ():
        try:
            signal.signal(s, signal.SIG_IGN)
        except (ValueError, OSError):  # not the main thread: the worker's calls run there
            pass


def notify_due(pid, fd, reason):
    """Runs in a rank's bundle, on its node: one byte on the rank's due pipe (the write end, fd
    in process pid), which shoal.train.checkpoint_due() reads there, as in a rank of `shoal
    train`."""
    try:
        w = os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False  # the worker is gone
    try:
        os.write(w, reason.encode())
        return True
    except OSError:
        return False
    finally:
        os.close(w)


def ignores(pid, sig):
    """Whether process pid ignores sig (/proc/PID/status SigIgn)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) & (1 << (int(sig) - 1)))
    except (OSError, ValueError, IndexError):
        pass
    return False


class History:
    """The controller's side of `shoal train run-state`: one request line, one answer line."""

    def __init__(self, env):
        e = dict(os.environ)
        e.update(env)
        self._p = subprocess.Popen([_api._shoal_binary(), "train", "run-state"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e, bufsize=1,
                                   start_new_session=True)  # outlives the kill of the worker's group, to record the end
        line = self._p.stdout.readline()
        if not line:
            err = self._p.stderr.read().strip()
            code = self._p.wait()
            raise RuntimeError(f"shoal.train.run: the run's history could not be opened ({err or f'shoal train run-state exited {code}'}); "
                               "give state_dir= a directory every allocation of the job can write")
        threading.Thread(target=self._relay, daemon=True).start()  # its later warnings, to the worker's log
        self.hello = json.loads(line)
        self._lock = threading.Lock()

    def _relay(self):
        for line in self._p.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()

    def call(self, op, **kw):
        with self._lock:
            if self._p.poll() is not None:
                return {"error": "the history's process has ended"}
            try:
                self._p.stdin.write(json.dumps({"op": op, **kw}, default=str) + "\n")
                self._p.stdin.flush()
                line = self._p.stdout.readline()
            except (OSError, ValueError) as e:
                return {"error": str(e)}
            return json.loads(line) if line else {"error": "the history's process has ended"}

    def close(self, reason):
        r = self.call("end", reason=reason)
        try:
            self._p.stdin.close()
            self._p.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self._p.kill()
        return r


def _job(*args):
    """`shoal train slurm-job ARGS` as a dict, or None when it failed."""
    try:
        out = subprocess.run([_api._shoal_binary(), "train", "slurm-job", *args], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip() or f"exit {out.returncode}"}
    try:
        return json.loads(out.stdout)
    except ValueError:
        return {"error": f"unreadable answer {out.stdout!r}"}


class DriverState:
    """The driver's side: its handlers for SIGTERM and the warning signal while run() runs (in
    a Slurm job, on the main thread), what they decided, and the hold."""

    def __init__(self, requeue, state_dir, warn_signal, checkpoint_timeout, verbose):
        self.job_id = os.environ.get("SLURM_JOB_ID", "")
        self.slurm = bool(self.job_id)
        self.requeue = requeue
        self.state_dir = state_dir
        self.warn = warn_signal
        self.checkpoint_timeout = checkpoint_timeout
        self.verbose = verbose
        self.due = None         # DUE_* once a handler decided a checkpoint is due
        self.due_at = 0.0
        self.holding = False
        self.hold_began = 0.0
        self.hold_ended = False
        self.cancelled = None   # the signal of a cancel seen while a handler could not act on it
        self._prev = {}
        self._busy = False
        self.handled = False

    @property
    def history_wanted(self):
        return self.slurm or bool(self.state_dir)

    def ignored(self):
        """The signals the workers ignore: in a Slurm job, SIGTERM and the warning's."""
        if not self.slurm:
            return []
        return [int(s) for s in (signal.SIGTERM, self.warn) if s is not None]

    def history_env(self):
        e = {}
        for k in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT", "SLURM_JOB_NODELIST", "SLURM_SUBMIT_DIR"):
            if k in os.environ:
                e[k] = os.environ[k]
        if self.state_dir:
            e["SHOAL_TRAIN_STATE_DIR"] = os.fspath(self.state_dir)
        return e

    def say(self, msg):
        if self.verbose:
            print(f"shoal.train: {msg}", file=sys.stderr, flush=True)

    # -- signals --------------------------------------------------------------------------

    def install(self):
        if not self.slurm:
            return
        if threading.current_thread() is not threading.main_thread():
            self.say("run() is not on the main thread: preemption and the time-limit warning are not handled "
                     "(a Python handler can only be set there)")
            return
        self.handled = True
        self._prev[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_term)
        if self.warn is not None and self.warn != signal.SIGTERM:
            self._prev[self.warn] = signal.signal(self.warn, self._on_warn)

    def restore(self):
        for s, h in self._prev.items():
            try:
                signal.signal(s, h if h is not None else signal.SIG_DFL)
            except (ValueError, TypeError):
                pass
        self._prev = {}

    def _note(self, msg):
        # from a handler: a raw write (print() may be in the middle of a write of its own)
        if self.verbose:
            try:
                os.write(2, f"shoal.train: {msg}\n".encode())
            except OSError:
                pass

    def preempted(self):
        j = _job("--requeue=false")  # (not SHOAL_TRAIN_SLURM_JOB_REQUEUE from the environment)
        if "error" in j:
            self._note(f"SIGTERM: cannot tell a preemption from a cancel ({j['error']}); taking it for a cancel")
            return False
        return bool(j.get("preempted"))

    def _on_term(self, signum, frame):
        # Slurm sends the preemption's SIGTERM to every process of the step, and `shoal launch`
        # passes its own on: two within milliseconds. Nothing of the client is touched here.
        if self._busy:
            return
        self._busy = True
        cancel = False
        try:
            if self.holding:
                # the end of the grace time, or the requeue's: but a copy of the preemption's
                # own SIGTERM (within a second of it) is not
                if self.due != DUE_PREEMPTED or time.monotonic() - self.due_at >= 1.0:
                    self.hold_ended = True
                return
            if self.due == DUE_PREEMPTED:
                return
            if self.preempted():
                self.due, self.due_at = DUE_PREEMPTED, time.monotonic()
                return
            cancel = True
        except Exception as e:  # noqa: BLE001 - a handler must not raise into the driver's code
            self._note(f"SIGTERM: {type(e).__name__}: {e}; taking it for a cancel")
            cancel = not self.holding
        finally:
            self._busy = False
        if not cancel:
            return
        # a cancel (scancel, the time limit itself): as without run()'s handler
        self._note("SIGTERM: the job is not being preempted; ending the driver")
        prev = self._prev.get(signal.SIGTERM, signal.SIG_DFL)
        self.restore()
        if callable(prev):
            prev(signum, frame)
        elif prev != signal.SIG_IGN:
            os.kill(os.getpid(), signum)

    def _on_warn(self, signum, frame):
        if not self.holding and self.due is None:
            self.due, self.due_at = DUE_TIME_LIMIT, time.monotonic()
        prev = self._prev.get(signum)
        if callable(prev):
            prev(signum, frame)

    # -- the end of an allocation -----------------------------------------------------------

    def requeue_job(self):
        j = _job("--requeue")
        if "error" in j:
            raise RuntimeError(f"scontrol requeue {self.job_id}: {j['error']}")

    def begin_hold(self):
        """From now on a SIGTERM ends the hold (but a copy of the preemption's own, within a
        second of it)."""
        self.holding, self.hold_began, self.hold_ended = True, time.monotonic(), False

    def hold(self):
        """Wait until Slurm ends the job: its SIGTERM (the end of the preemption's grace time,
        or the requeue's), or the job no longer RUNNING. A preempted job that ends within its
        grace time is recorded as done by Slurm instead of being queued again."""
        if not self.holding:
            self.begin_hold()
        last = time.monotonic()
        while not self.hold_ended:
            time.sleep(0.1)
            if time.monotonic() - last >= 2.0:
                last = time.monotonic()
                j = _job("--requeue=false")
                if "error" not in j and j.get("state") != "RUNNING":
                    break
