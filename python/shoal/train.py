"""Gang-scheduled training on a shoal cluster, in Python.

In a driver::

    import shoal.train

    def train_fn(config):
        ctx = shoal.train.get_context()          # world rank, local rank, world size
        start = shoal.train.get_checkpoint()     # None, or the last checkpoint reported
        ...
        shoal.train.report({"loss": loss}, checkpoint=ckpt_dir)
        return loss

    losses = shoal.train.run(train_fn, num_workers=8, resources_per_worker={"GPU": 1, "CPU": 8},
                             max_failures=3, config={"lr": 0.1})

Each worker is an actor placed in one placement group of ``num_workers`` bundles, so the gang
is placed all at once or not at all. Inside it the environment torch.distributed reads is set
(MASTER_ADDR, MASTER_PORT bound on rank 0's node, RANK, LOCAL_RANK, WORLD_SIZE, ...), so
``torch.distributed.init_process_group("gloo")`` just works. When a worker fails, every worker
is stopped and the gang runs again from the last checkpoint rank 0 reported, up to
``max_failures`` times.

The same ``report``, ``get_checkpoint`` and ``get_context`` work in a script run by
``shoal train -- python script.py``: there reports go to ``shoal train`` through the pipe it
gives every rank (SHOAL_TRAIN_REPORT_FD).
"""
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from . import _api
from . import exceptions as exc

__all__ = ["run", "report", "get_checkpoint", "checkpoint_due", "get_context", "init_collective", "TrainContext",
           "TrainingFailedError"]

# variables a rank must not inherit (the same list as train.Scrubbed in Go)
_SCRUBBED = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NTASKS", "SLURM_NPROCS",
             "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NODELIST",
             "SLURM_STEP_NUM_NODES", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASK_PID",
             "SLURM_GTIDS", "SLURM_ARRAY_TASK_ID", "PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_RANK",
             "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "TORCHELASTIC_USE_AGENT_STORE", "GROUP_WORLD_SIZE")


class TrainingFailedError(exc.RayError):
    """A worker failed and no restarts were left; ``__cause__`` is the worker's error."""

    def __init__(self, msg, rank=None, attempts=None):
        super().__init__(msg)
        self.rank = rank
        self.attempts = attempts


class TrainContext:
    """Where this worker is in the gang."""

    def __init__(self, env=None):
        e = os.environ if env is None else env
        self._world_rank = int(e.get("RANK", 0))
        self._local_rank = int(e.get("LOCAL_RANK", 0))
        self._world_size = int(e.get("WORLD_SIZE", 1))
        self._local_world_size = int(e.get("LOCAL_WORLD_SIZE", 1))
        self._node_rank = int(e.get("NODE_RANK", 0))
        self._attempt = int(e.get("TORCHELASTIC_RESTART_COUNT", 0))

    def get_world_rank(self):
        return self._world_rank

    def get_local_rank(self):
        return self._local_rank

    def get_world_size(self):
        return self._world_size

    def get_local_world_size(self):
        return self._local_world_size

    def get_node_rank(self):
        return self._node_rank

    def get_attempt(self):
        """0 on the first run of the gang, n after its n-th restart."""
        return self._attempt

    world_rank = property(get_world_rank)
    local_rank = property(get_local_rank)
    world_size = property(get_world_size)
    local_world_size = property(get_local_world_size)
    node_rank = property(get_node_rank)
    attempt = property(get_attempt)

    def __repr__(self):
        return (f"TrainContext(world_rank={self._world_rank}, local_rank={self._local_rank}, "
                f"world_size={self._world_size}, node_rank={self._node_rank}, attempt={self._attempt})")


_controller = None  # set in workers of run(): the actor that records reports


def get_context():
    """This worker's place in the gang (world rank, local rank, world size, node rank)."""
    return TrainContext()


def init_collective(group_name=None, backend="auto", timeout=60.0):
    """Join a shoal.collective group of the whole gang (this rank as RANK of WORLD_SIZE) and
    return its name, for allreduce / allgather / reducescatter / broadcast on numpy arrays. The
    default name is new for each attempt of the gang, so a restarted gang never meets a group
    that ranks of the failed attempt left behind."""
    from . import collective
    c = get_context()
    if group_name is None:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "local")
        group_name = f"shoal-train-{run_id}-{c.attempt}"
    collective.init_group(c.world_size, c.world_rank, group_name=group_name, backend=backend, timeout=timeout)
    return group_name


def get_checkpoint():
    """The checkpoint to resume from, or None: the last one rank 0 reported before the gang was
    restarted, or, in a new allocation of the job (a requeue after a preemption or the time
    limit), the newest one in the run's history (`shoal train --state-dir`)."""
    return os.environ.get("SHOAL_TRAIN_CHECKPOINT") or None


_DUE_REASONS = {ord("T"): "time_limit", ord("P"): "preemption", ord("G"): "grow"}
_due = None  # the reason of a checkpoint asked for and not yet reported


def checkpoint_due():
    """Whether `shoal train` asks for a checkpoint now: None, or why ("time_limit": the job's
    time-limit warning, #SBATCH --signal=USR1@T; "preemption": Slurm preempts the job and ends it
    after its GraceTime; "grow": an elastic gang, --nnodes MIN:MAX or num_workers=(min, max),
    restarts on room that came, e.g. nodes that joined). Cheap enough to call every step (a
    non-blocking read of a pipe).

    Every rank learns it at about the same time, not at the same step: have the ranks agree
    (e.g. an all-reduce of the flag with MAX) before saving. Then report the checkpoint
    (``report(..., checkpoint=path)``, which clears the flag) and exit; with ``--requeue``
    shoal train requeues the job, and the next allocation resumes from it (get_checkpoint())."""
    global _due
    fd = os.environ.get("SHOAL_TRAIN_DUE_FD")
    if not fd:
        return _due
    try:
        os.set_blocking(int(fd), False)
        while True:
            b = os.read(int(fd), 64)
            if not b:
                break
            _due = _DUE_REASONS.get(b[-1], "time_limit")
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:  # not a rank of this shoal train (the fd is not ours)
        pass
    return _due


def report(metrics, checkpoint=None):
    """Record metrics and, optionally, a checkpoint (a directory or file path every node can
    read). After a failure the gang restarts from the last checkpoint world rank 0 reported;
    get_checkpoint() returns it. Every rank may call report; rank 0's checkpoint is the one kept."""
    if not isinstance(metrics, dict):
        raise TypeError(f"report(metrics): metrics must be a dict, got {type(metrics).__name__}")
    global _due
    ckpt = os.fspath(checkpoint) if checkpoint is not None else ""
    rec = {"metrics": metrics, "checkpoint": ckpt}
    if ckpt:
        _due = None
    fd = os.environ.get("SHOAL_TRAIN_REPORT_FD")
    if fd:
        line = (json.dumps(rec, default=str) + "\n").encode()
        try:
            os.write(int(fd), line)
        except OSError as e:
            raise RuntimeError(f"report to shoal train through fd {fd}: {e}") from None
        ack = os.environ.get("SHOAL_TRAIN_ACK_FD")
        if ckpt and ack:
            _wait_ack(int(ack))
        return
    if _controller is not None:
        _api.get(_controller.report.remote(get_context().world_rank, metrics, ckpt))
        return
    raise RuntimeError("shoal.train.report() works only in a worker of shoal.train.run() or a rank of `shoal train`")


ACK_TIMEOUT = 300.0


def _wait_ack(fd):
    """Wait until shoal train has the checkpoint just reported (one byte on fd): from then on
    a restart starts from it even if this rank's node is lost at once."""
    import select
    deadline = time.monotonic() + ACK_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            print(f"shoal.train.report: shoal train did not confirm the checkpoint within {ACK_TIMEOUT:.0f} s; "
                  "going on (a restart may start from the one before)", file=sys.stderr, flush=True)
            return
        try:
            ready, _, _ = select.select([fd], [], [], left)
        except InterruptedError:
            continue
        if ready:
            try:
                os.read(fd, 1)  # b"": shoal train's side is gone; the gang is being stopped
            except OSError:
                pass
            return


class _Controller:
    """Records the gang's reports, on the driver's node; it outlives every attempt. With a run
    history (history_env: in a Slurm job, or state_dir=), it keeps `shoal train run-state` open
    and writes rank 0's checkpoints there before report() returns, and the attempts as the
    driver says."""

    def __init__(self, history_env=None, ignore=()):
        from . import _train_slurm
        _train_slurm.ignore_signals(ignore)
        self.checkpoint = None
        self.metrics = []
        self.seq = 0  # rank 0's checkpoint reports
        self.attempt_id = 0
        self.history = _train_slurm.History(history_env) if history_env is not None else None
        if self.history is not None:
            self.checkpoint = self.history.hello.get("checkpoint") or None

    def hello(self):
        return self.history.hello if self.history is not None else {}

    def report(self, rank, metrics, checkpoint):
        if rank == 0:
            self.metrics.append(metrics)
            if checkpoint:
                self.checkpoint = checkpoint
                self.seq += 1
                if self.history is not None and self.attempt_id:
                    r = self.history.call("checkpoint", id=self.attempt_id, path=checkpoint, metrics=metrics)
                    if r.get("error"):
                        print(f"shoal.train: record checkpoint {checkpoint} in the run's history: {r['error']}",
                              file=sys.stderr, flush=True)
        return True

    def state(self):
        return self.checkpoint, list(self.metrics)

    def reports(self):
        return self.seq

    def begin_attempt(self, n, world_size, layout_desc, resumed_from):
        if self.history is None:
            return 0
        r = self.history.call("attempt", attempt=n, world_size=world_size, layout=layout_desc,
                              resumed_from=resumed_from or "")
        self.attempt_id = r.get("id", 0)
        return self.attempt_id

    def end_attempt(self, reason, code, detail=""):
        if self.history is not None and self.attempt_id:
            self.history.call("end_attempt", id=self.attempt_id, reason=reason, code=code, detail=detail)
        self.attempt_id = 0

    def end(self, reason):
        if self.history is not None:
            self.history.close(reason)
            self.history = None
        return True


class _Rank:
    """One worker of the gang."""

    def __init__(self, controller, ignore=()):
        global _controller
        from . import _train_slurm
        _train_slurm.ignore_signals(ignore)
        _controller = controller
        self._sock = None
        # the due pipe: the driver writes a byte (through a task on this node) when a
        # checkpoint is due; checkpoint_due() reads it (SHOAL_TRAIN_DUE_FD), as in `shoal train`
        self._due_r, self._due_w = os.pipe()
        os.set_blocking(self._due_r, False)

    def info(self, allowed):
        return {"node": os.environ.get("SHOAL_NODE_ID", ""), "gpus": _api.get_gpu_ids(), "nccl": _nccl_env(allowed),
                "pid": os.getpid(), "due_fd": self._due_w}

    def reserve_port(self):
        # bound, never listening, SO_REUSEADDR: nobody else takes the port, and torch's
        # TCPStore (which sets SO_REUSEADDR too) can still bind it and listen
        if self._sock is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", 0))
            self._sock = s
        return self._sock.getsockname()[1]

    def run(self, fn, config, env):
        for k in _SCRUBBED:
            os.environ.pop(k, None)
        os.environ.update(env)
        os.environ["SHOAL_TRAIN_DUE_FD"] = str(self._due_r)
        try:
            params = inspect.signature(fn).parameters
            takes_config = len(params) > 0
        except (TypeError, ValueError):
            takes_config = True
        return fn(config) if takes_config else fn()


def _gang(res, strategy, least, most, placement_timeout, elastic_wait):
    """The placement group of the largest gang from most down to least that the cluster has
    room for, and its size."""
    from .util.placement_group import placement_group, remove_placement_group
    for n in range(most, least - 1, -1):
        pg = placement_group([dict(res) for _ in range(n)], strategy=strategy, name="shoal-train")
        wait = placement_timeout if n == least else min(elastic_wait, placement_timeout)
        try:
            _api.get(pg.ready(), timeout=wait)
            return pg, n
        except exc.TaskUnschedulableError as e:
            try:
                remove_placement_group(pg)
            except Exception:  # noqa: BLE001 - refused groups may be gone already
                pass
            if n > least:
                continue  # more than the cluster can ever hold: fewer may fit
            raise exc.TaskUnschedulableError(
                f"shoal.train.run: the cluster can never hold {n} workers of {res} "
                f"({strategy}): {e}; ask for fewer workers or resources, or another strategy") from None
        except exc.GetTimeoutError:
            remove_placement_group(pg)
            if n > least:
                continue
            raise exc.GetTimeoutError(
                f"shoal.train.run: no room for {n} workers of {res} ({strategy}) within "
                f"{placement_timeout} s; the cluster has {_api.available_resources()} available") from None


def _signal(pid, sig):
    """Runs in a worker's bundle, on its node: signal the worker's process. False when it is
    gone, or ignores sig (workers in a Slurm job ignore SIGTERM unless train_fn set a handler):
    then there is nothing to wait for."""
    from ._train_slurm import ignores
    if ignores(pid, sig):
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def _stop(actors, pg, pids, running, grace):
    """Stop a gang's workers as `shoal train` stops its ranks: SIGTERM to the workers still
    running (a task in each one's bundle, so on its node, signals it), up to grace seconds for
    them to end, then kill every worker."""
    from .util.scheduling_strategies import PlacementGroupSchedulingStrategy
    if running and pg is not None and pids and grace > 0:
        sig = _api.remote(_signal)
        sent = []
        for i, ref in running:
            try:
                sent.append((sig.options(num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=i)).remote(pids[i], signal.SIGTERM), ref))
            except Exception:  # noqa: BLE001 - its node may be gone; it is killed below
                pass
        t0 = time.monotonic()
        try:
            got = _api.get([s for s, _ in sent], timeout=grace) if sent else []
            signalled = [ref for ok, (_, ref) in zip(got, sent) if ok]
        except Exception:  # noqa: BLE001 - a node gone: wait for all of them
            signalled = [ref for _, ref in running]
        try:
            if signalled:
                _api.wait(signalled, num_returns=len(signalled), timeout=max(0.0, grace - (time.monotonic() - t0)))
        except Exception:  # noqa: BLE001 - the kill below ends them anyway
            pass
    for a in actors:
        try:
            _api.kill(a)
        except Exception:  # noqa: BLE001 - already dead
            pass


def _nccl_env(allowed):
    exe = _api._shoal_binary()
    cmd = [exe, "train", "nccl-env"]
    if allowed:
        cmd += ["--allowed-interfaces", ",".join(allowed)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return json.loads(out.stdout or "{}")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def layout(placed, node_order):
    """Number the ranks as `shoal train` does (train.Layout in Go): nodes in node_order, the
    ranks of one node consecutive, ordered by their first GPU, then by worker index. Returns,
    per world rank, a dict {actor, rank, local_rank, node_rank, local_world_size, node, node_gpus}."""
    pos = {n: i for i, n in reversed(list(enumerate(node_order)))}

    def key(i):
        p = placed[i]
        gpus = p.get("gpus") or []
        return (pos.get(p["node"], len(node_order)), p["node"], min(gpus) if gpus else -1, i)

    order = sorted(range(len(placed)), key=key)
    ranks, node_rank, local, prev = [], -1, 0, None
    for r, i in enumerate(order):
        n = placed[i]["node"]
        if r == 0 or n != prev:
            node_rank, local, prev = node_rank + 1, 0, n
        ranks.append({"actor": i, "rank": r, "local_rank": local, "node_rank": node_rank, "node": n})
        local += 1
    for r in ranks:
        same = [o for o in ranks if o["node"] == r["node"]]
        r["local_world_size"] = len(same)
        r["node_gpus"] = [g for o in same for g in (placed[o["actor"]].get("gpus") or [])]
    return ranks


def _env(r, own, world):
    e = {
        "MASTER_ADDR": world["master_addr"], "MASTER_PORT": str(world["master_port"]),
        "RANK": str(r["rank"]), "LOCAL_RANK": str(r["local_rank"]), "WORLD_SIZE": str(world["size"]),
        "LOCAL_WORLD_SIZE": str(r["local_world_size"]), "NODE_RANK": str(r["node_rank"]),
        "GROUP_RANK": str(r["node_rank"]), "ROLE_RANK": str(r["rank"]), "ROLE_WORLD_SIZE": str(world["size"]),
        "TORCHELASTIC_RESTART_COUNT": str(world["attempt"]), "TORCHELASTIC_MAX_RESTARTS": str(world["max_restarts"]),
        "TORCHELASTIC_RUN_ID": world["run_id"], "OMP_NUM_THREADS": str(max(1, int(world["cpus"]))),
        "SHOAL_TRAIN_CHECKPOINT": world["checkpoint"] or "",
    }
    gpus = own.get("gpus") or []
    if gpus:
        shown = r["node_gpus"] if world["gpu_mode"] == "shared" else gpus
        e["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in shown)
    e.update(own.get("nccl") or {})
    return e


def _sizes(num_workers):
    """num_workers as (min, max): an int N is (N, N)."""
    if isinstance(num_workers, int) and not isinstance(num_workers, bool) and num_workers >= 1:
        return num_workers, num_workers
    if (isinstance(num_workers, (tuple, list)) and len(num_workers) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in num_workers)
            and 1 <= num_workers[0] <= num_workers[1]):
        return int(num_workers[0]), int(num_workers[1])
    raise ValueError(f"run(num_workers={num_workers!r}): give a positive int, or (min, max) with 1 <= min <= max "
                     "for an elastic gang")


def _describe(ranks):
    """The layout as train.Describe writes it: "node1: ranks 0-1, node2: rank 2"."""
    parts, i = [], 0
    while i < len(ranks):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1]["node"] == ranks[i]["node"]:
            j += 1
        parts.append(f"{ranks[i]['node']}: rank {i}" if i == j else f"{ranks[i]['node']}: ranks {i}-{j}")
        i = j + 1
    return ", ".join(parts)


class _Grow(Exception):
    """An elastic gang stopped at a checkpoint to restart on more workers."""


GROW_CHECK = 2.0  # seconds between an elastic gang's looks for room to grow (train/grow.go's GrowCheck)


def _room_to_grow(res, want):
    """How many more workers of res (up to want) the cluster's live nodes have room for now."""
    fit = 0
    for n in _api._info()["nodes"]:
        if not n.get("alive"):
            continue
        avail = n.get("available") or {}
        fit += min(int(avail.get(k, 0.0) / v) for k, v in res.items())
    return min(fit, want)


class _DueDone(Exception):
    """The attempt ended because a checkpoint was due (a preemption, the time-limit warning)."""


def run(train_fn, num_workers=1, resources_per_worker=None, placement_strategy="PACK", max_failures=0, config=None,
        *, cuda_visible_devices="per-rank", allowed_interfaces=None, placement_timeout=60.0, stop_grace=5.0, verbose=True,
        elastic_wait=5.0, requeue=False, state_dir=None, warn_signal="USR1", checkpoint_timeout=60.0, spare_nodes=0):
    """Run ``train_fn(config)`` (or ``train_fn()``) on ``num_workers`` workers placed as one
    gang, and return their return values in world-rank order.

    num_workers=(min, max) makes the gang elastic, as `shoal train --nnodes MIN:MAX` (counted in
    workers here): each attempt (the first, and every restart) forms the largest gang from max
    down to min the cluster has room for, waiting elastic_wait seconds for each size above min
    (placement_timeout for min), so a gang that lost a node restarts with fewer workers; and a
    gang that runs fewer than max grows back while it runs: when the cluster has room for more
    workers (a node joined, resources freed), checkpoint_due() says "grow" in every worker, and
    once rank 0 has reported a checkpoint the gang restarts larger from it (not counted against
    max_failures). The world size, ranks and LOCAL_WORLD_SIZE are those of the attempt;
    train_fn reshards from the checkpoint.

    resources_per_worker: each worker's bundle, e.g. {"GPU": 1, "CPU": 8} (default {"CPU": 1}).
    placement_strategy: PACK (default), SPREAD, STRICT_PACK or STRICT_SPREAD.
    max_failures: restarts of the whole gang after a worker fails (its exception, its process
    dying, its node lost); each restart starts from the last checkpoint rank 0 reported.
    cuda_visible_devices: "per-rank" (each worker sees its GPUs) or "shared" (the node's).
    stop_grace: when a worker fails, the others get SIGTERM (so a handler can save) and are
    killed after this many seconds, as `shoal train --stop-grace` does.

    Across Slurm allocations, as `shoal train` (docs/training.md, "Across allocations"): in a
    Slurm job (the driver under `srun shoal launch`), the workers ignore SIGTERM and
    warn_signal ("USR1": #SBATCH --signal=USR1@T; None for none), and run() on the driver's
    main thread takes them: the time-limit warning, or a preemption's SIGTERM (the job still
    RUNNING with a PreemptTime), makes checkpoint_due() true in every worker; once rank 0 has
    reported a checkpoint (or checkpoint_timeout seconds) the workers are stopped, and then
    - for a preemption, run() holds the allocation until Slurm ends the job (which it queues
      again) and raises SystemExit(143);
    - for the warning with requeue=True, it requeues the job (scontrol requeue), holds until
      Slurm ends this allocation and raises SystemExit(0); without requeue the gang goes on.
    A SIGTERM that is not a preemption's (scancel) ends the driver as before. The run's history
    (allocations, attempts, checkpoints, why each ended) is in state_dir (default in a Slurm
    job: shoal-train-JOBID next to the job's output file, as `shoal train --state-dir`; outside
    Slurm: none unless given), which `shoal train history --state-dir DIR` prints; the first
    attempt in a new allocation resumes from its newest checkpoint (get_checkpoint()).
    spare_nodes: only 0; spare nodes are `shoal train --spare-nodes K`'s (refused here).

    Raises TaskUnschedulableError when the cluster can never hold the gang, GetTimeoutError when
    it has no room within placement_timeout seconds, and TrainingFailedError (whose __cause__ is
    the failing worker's error) when no restart is left."""
    from . import _train_slurm as ts
    from .util.placement_group import remove_placement_group
    from .util.scheduling_strategies import PlacementGroupSchedulingStrategy

    if not callable(train_fn):
        raise TypeError(f"run(train_fn): train_fn must be callable, got {type(train_fn).__name__}")
    least, most = _sizes(num_workers)
    if not isinstance(elastic_wait, (int, float)) or elastic_wait < 0:
        raise ValueError(f"run(elastic_wait={elastic_wait!r}): give seconds >= 0")
    if cuda_visible_devices not in ("per-rank", "shared"):
        raise ValueError(f"cuda_visible_devices={cuda_visible_devices!r}: use 'per-rank' or 'shared'")
    res = {k: float(v) for k, v in (resources_per_worker or {"CPU": 1}).items() if v}
    if not res:
        raise ValueError(f"resources_per_worker={resources_per_worker!r}: give at least one resource, e.g. {{'CPU': 1}}")
    if spare_nodes not in (0, None):
        raise ValueError(f"run(spare_nodes={spare_nodes!r}): spare nodes are not available in shoal.train.run; use "
                         "`shoal train --spare-nodes K` (its standby ranks are warm processes of a command, which a "
                         "Python function's workers are not), or num_workers=(min, max) to go on with fewer workers")
    if not isinstance(checkpoint_timeout, (int, float)) or isinstance(checkpoint_timeout, bool) or checkpoint_timeout <= 0:
        raise ValueError(f"run(checkpoint_timeout={checkpoint_timeout!r}): give seconds > 0")
    warn = ts.parse_signal(warn_signal)
    rs = ts.DriverState(bool(requeue), state_dir, warn, float(checkpoint_timeout), verbose)
    if requeue and not rs.slurm:
        raise ValueError("run(requeue=True): not in a Slurm job (SLURM_JOB_ID is not set); requeue needs a batch job "
                         "(sbatch --requeue, the driver under `srun shoal launch`)")
    if requeue and threading.current_thread() is not threading.main_thread():
        raise ValueError("run(requeue=True): call run() from the driver's main thread (the time-limit warning and "
                         "SIGTERM can only be handled there)")
    _api._auto_init()
    ignore = rs.ignored()
    history_env = rs.history_env() if rs.history_wanted else None
    from .runtime_context import get_runtime_context
    from .util.scheduling_strategies import NodeAffinitySchedulingStrategy
    here = get_runtime_context().get_node_id()  # the driver's node: it outlives the others in a job
    controller = _api.remote(_Controller).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True) if here else None,
    ).remote(history_env, ignore)
    first_attempt = 0
    if history_env is not None:
        hello = _api.get(controller.hello.remote())
        first_attempt = int(hello.get("first_attempt") or 0)
        if hello.get("state_dir"):
            d, n = hello["state_dir"], int(hello.get("restart_count") or 0)
            frm = f"checkpoint {hello['checkpoint']}" if hello.get("checkpoint") else "the start"
            rs.say(f"run state in {d} (state_dir; `shoal train history --state-dir {d}`); allocation {n + 1} "
                   f"(SLURM_RESTART_COUNT={n}), {first_attempt} earlier attempts; starting from {frm}")
    rank_cls = _api.remote(_Rank)
    run_id = f"shoal-{os.getpid()}-{int(time.time())}"
    pg = None
    end = ts.END_LOST
    rs.install()
    attempt, failures = -1, 0  # attempts so far, and restarts after a failure (a growth is none)
    try:
        while True:
            attempt += 1
            if rs.due == ts.DUE_PREEMPTED or (rs.due and rs.requeue):
                raise _DueDone()  # before the gang ran again (after a failure): nothing to save
            if pg is None:
                pg, num_workers = _gang(res, placement_strategy, least, most, placement_timeout, elastic_wait)
                if verbose and least < most:
                    print(f"shoal.train: attempt {attempt} runs {num_workers} workers (elastic {least}-{most})", flush=True)
            actors = []
            for i in range(num_workers):
                actors.append(rank_cls.options(
                    num_cpus=res.get("CPU", 0), num_gpus=res.get("GPU", 0),
                    resources={k: v for k, v in res.items() if k not in ("CPU", "GPU", "memory")} or None,
                    max_restarts=0,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i),
                ).remote(controller, ignore))
            lost, pids, running, due, grow = False, None, [], None, None
            try:
                placed = _api.get([a.info.remote(allowed_interfaces) for a in actors])
                pids = [p.get("pid") for p in placed]
                nodes = [n["NodeID"] for n in _api.nodes()]
                nodes = nodes[:1] + sorted(nodes[1:])  # the head node, then by name (as in Go)
                addrs = {n["NodeID"]: n.get("NodeManagerAddress", "") for n in _api.nodes()}
                ranks = layout(placed, nodes)
                r0 = ranks[0]
                port = _api.get(actors[r0["actor"]].reserve_port.remote())
                master = addrs.get(r0["node"], "")
                if len(nodes) <= 1 or master in ("", "0.0.0.0"):
                    master = "127.0.0.1"
                ckpt, _ = _api.get(controller.state.remote())
                world = {"size": num_workers, "master_addr": master, "master_port": port, "attempt": attempt,
                         "max_restarts": max_failures, "cpus": res.get("CPU", 1), "gpu_mode": cuda_visible_devices,
                         "checkpoint": ckpt, "run_id": run_id}
                by_actor = {r["actor"]: r for r in ranks}
                if history_env is not None:  # before the workers start: their first report is its
                    _api.get(controller.begin_attempt.remote(first_attempt + attempt, num_workers, _describe(ranks),
                                                             ckpt or ""))
                refs = [actors[i].run.remote(train_fn, config, _env(by_actor[i], placed[i], world))
                        for i in range(num_workers)]
                rank_of = {ref: by_actor[i]["rank"] for i, ref in enumerate(refs)}
                index_of = {ref: i for i, ref in enumerate(refs)}
                results, pending, failure = {}, list(refs), None
                looked, seen = time.monotonic(), 0
                while pending and failure is None:
                    ready, pending = _api.wait(pending, num_returns=1,
                                               timeout=0.25 if rs.handled or num_workers < most else None)
                    for ref in ready:
                        try:
                            results[rank_of[ref]] = _api.get(ref)
                        except (exc.RayActorError, exc.WorkerCrashedError) as e:
                            failure, lost = (rank_of[ref], e), True
                        except exc.RayError as e:
                            failure = (rank_of[ref], e)
                        if failure:
                            break
                    if rs.due and (due is None or due["reason"] != rs.due):
                        due = _ask_checkpoint(rs, controller, pg, placed, [index_of[r] for r in pending])
                    if due is not None and _due_done(rs, controller, due, len(pending), stop_grace):
                        if due["reason"] == ts.DUE_TIME_LIMIT and not rs.requeue:
                            if pending:  # checkpointed after the warning; the gang goes on
                                rs.due, due = None, None
                            continue  # (or every worker returned after it: the run ends, below)
                        running = [(index_of[ref], ref) for ref in pending]
                        raise _DueDone()
                    if (due is None and grow is None and num_workers < most
                            and time.monotonic() - looked >= GROW_CHECK):
                        looked = time.monotonic()
                        more = _room_to_grow(res, most - num_workers)
                        # room seen at two looks in a row: a moment's room (a task that ends) is no
                        # reason to stop the gang
                        seen, more = more, min(more, seen)
                        if more > 0:
                            rs.say(f"elastic: the cluster has room for {num_workers + more} workers, {num_workers} "
                                   "run; asking for a checkpoint to restart on them")
                            grow = _ask_checkpoint(rs, controller, pg, placed, [index_of[r] for r in pending],
                                                   ts.DUE_GROW)
                    if grow is not None and due is None and _due_done(rs, controller, grow, len(pending), stop_grace):
                        if pending or grow["ckpt_at"] is not None:
                            running = [(index_of[ref], ref) for ref in pending]
                            raise _Grow()
                        grow = None  # every worker returned before it checkpointed: the run is over
                stop_due = rs.due == ts.DUE_PREEMPTED or (rs.due is not None and rs.requeue)
                running = [(index_of[ref], ref) for ref in pending]
                if failure is None and (due is None or not stop_due):
                    # every worker returned: done (a preemption that came as they did finds the
                    # training over), or, after the warning's checkpoint without requeue, over
                    reason = ts.END_COMPLETED if due is None else ts.END_TIME_LIMIT
                    if history_env is not None:
                        _api.get(controller.end_attempt.remote(reason, 0))
                    end = reason
                    return [results[r] for r in range(num_workers)]
                if stop_due:
                    # a worker ended (or all did) while a checkpoint was due: no restart in this
                    # allocation; the next one resumes
                    raise _DueDone()
            except _Grow:
                failure = None
            except (exc.RayActorError, exc.WorkerCrashedError) as e:
                if rs.due:
                    raise _DueDone() from None
                failure, lost = (-1, e), True
            finally:
                _stop(actors, pg, pids, running, 0 if rs.due else stop_grace)
            if failure is None:  # stopped to grow
                if history_env is not None:
                    _api.get(controller.end_attempt.remote(ts.END_GROWN, 0))
                remove_placement_group(pg)
                pg = None
                ckpt, _ = _api.get(controller.state.remote())
                rs.say(f"elastic: the gang is stopped with {ckpt or 'no checkpoint'}; it restarts on the room there is now")
                continue
            rank, err = failure
            who = f"worker of rank {rank}" if rank >= 0 else "a worker"
            if history_env is not None:
                _api.get(controller.end_attempt.remote(ts.END_FAILED, 1, f"{who}: {type(err).__name__}: {err}"[:2000]))
            if lost or num_workers < most:  # a node lost, or an elastic gang that may grow back
                remove_placement_group(pg)
                pg = None
            if failures >= max_failures:
                end = ts.END_FAILED
                raise TrainingFailedError(f"shoal.train.run: {who} failed and no restarts are left "
                                          f"({failures} of {max_failures} used): {err}", rank, attempt + 1) from err
            failures += 1
            if verbose:
                ckpt, _ = _api.get(controller.state.remote())
                frm = f"from checkpoint {ckpt}" if ckpt else "from the start"
                print(f"shoal.train: {who} failed ({type(err).__name__}); restarting the gang {frm} "
                      f"(restart {failures} of {max_failures})", flush=True)
    except _DueDone:
        end = ts.END_PREEMPTED if rs.due == ts.DUE_PREEMPTED else ts.END_TIME_LIMIT
        end = _finish_due(rs, controller, history_env is not None)
        if end == ts.END_PREEMPTED:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise SystemExit(0) from None
    except BaseException:
        if end == ts.END_LOST and rs.due is None:
            end = ts.END_CANCELLED if sys.exc_info()[0] in (KeyboardInterrupt, SystemExit) else ts.END_LOST
        raise
    finally:
        rs.restore()
        if pg is not None:
            remove_placement_group(pg)
        try:
            if history_env is not None:
                _api.get(controller.end.remote(end), timeout=30)
        except Exception:  # noqa: BLE001 - the run-state process ends the allocation at EOF itself
            pass
        try:
            _api.kill(controller)
        except Exception:  # noqa: BLE001
            pass


def _ask_checkpoint(rs, controller, pg, placed, running, reason=None):
    """A checkpoint is due (for rs.due, or reason): note rank 0's reports so far and tell every
    running worker (a byte on its due pipe, written by a task in its bundle)."""
    from . import _train_slurm as ts
    from .util.scheduling_strategies import PlacementGroupSchedulingStrategy
    reason = reason or rs.due
    rs.say(f"{ts._WHAT[reason]}: a checkpoint is due; asking every worker for one (up to {rs.checkpoint_timeout:g} s)")
    seq = _api.get(controller.reports.remote())
    note = _api.remote(ts.notify_due)
    for i in running:
        try:
            note.options(num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=i)).remote(placed[i]["pid"], placed[i]["due_fd"], reason)
        except Exception:  # noqa: BLE001 - its node may be gone; the attempt ends anyway
            pass
    return {"reason": reason, "at": time.monotonic(), "seq": seq, "ckpt_at": None}


def _due_done(rs, controller, due, left, stop_grace):
    """As train's dueDone: rank 0 reported a checkpoint since it was asked and every worker
    returned or stop_grace passed since; or checkpoint_timeout passed."""
    now = time.monotonic()
    if due["ckpt_at"] is None and _api.get(controller.reports.remote()) > due["seq"]:
        due["ckpt_at"] = now
        ckpt, _ = _api.get(controller.state.remote())
        rs.say(f"checkpoint {ckpt} reported {now - due['at']:.1f} s after it was asked for")
    if due["ckpt_at"] is not None and (left == 0 or now - due["ckpt_at"] > stop_grace):
        return True
    if left == 0:
        return True
    if now - due["at"] > rs.checkpoint_timeout:
        rs.say(f"no checkpoint reported within {rs.checkpoint_timeout:g} s of asking; going on with the last one")
        return True
    return False


def _finish_due(rs, controller, recorded):
    """The gang is stopped after a checkpoint was due: for a preemption, hold the allocation
    until Slurm ends the job; for the warning with requeue, requeue the job and hold. Returns
    the allocation's end reason."""
    from . import _train_slurm as ts
    ckpt, _ = _api.get(controller.state.remote())
    with_ = f"the last one, {ckpt}" if ckpt else "no checkpoint (the next allocation starts from the start)"
    if rs.due == ts.DUE_PREEMPTED:
        if recorded:
            _api.get(controller.end_attempt.remote(ts.END_PREEMPTED, 128 + signal.SIGTERM))
        rs.begin_hold()
        _api.get(controller.end.remote(ts.END_PREEMPTED))  # now: the members leave at the hold's end
        rs.say(f"preempted: the gang is stopped with {with_}; holding the allocation until Slurm ends the job "
               "and queues it again")
        rs.hold()
        return ts.END_PREEMPTED
    rs.begin_hold()  # the requeue's SIGTERM may come before the lines below are done
    try:
        rs.requeue_job()
    except RuntimeError as e:
        rs.holding = False
        if recorded:
            _api.get(controller.end_attempt.remote(ts.END_TIME_LIMIT, 1, str(e)))
        raise TrainingFailedError(f"shoal.train.run: time-limit warning: the gang is stopped with {with_}, but {e}") from None
    if recorded:
        _api.get(controller.end_attempt.remote(ts.END_REQUEUED, 0))
    _api.get(controller.end.remote(ts.END_REQUEUED))
    rs.say(f"time-limit warning: the gang is stopped with {with_}; the job is requeued and resumes from it")
    rs.hold()
    return ts.END_REQUEUED
