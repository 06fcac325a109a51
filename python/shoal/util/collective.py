"""ray.util.collective's API on shoal.collective, so code written for Ray's collectives ports.

Two ways to form a group, as in Ray:

- every member calls ``init_collective_group(world_size, rank, backend="gloo", group_name=...)``
  (in a task or an actor);
- or the driver declares it: ``create_collective_group(actors, world_size, ranks,
  backend="gloo", group_name=...)``; each actor then joins on its first collective call of that
  group. The declaration is kept in the cluster's rendezvous store (docs/protocol.md, messages
  70-73) under ``raycoll/<group>``, naming each member by its actor id.

The work is shoal.collective's (shared memory inside a node, TCP or UCX across nodes) on numpy
arrays and CPU torch tensors. Backends: "gloo" (and "torch_gloo") is Ray's CPU backend and maps
to shoal's own choice ("auto"); shoal's "auto", "shm", "tcp" and "ucx" are accepted as they are.
"nccl" (Ray's default) and "mpi" are refused with an error that names these, since shoal.collective
reduces host memory only; the *_multigpu calls are refused likewise.
"""
import enum
import json
import sys

from .. import _client as C
from .. import collective as _col

__all__ = ["Backend", "ReduceOp", "is_backend_available", "register_collective_backend", "get_group_handle", "init_collective_group", "create_collective_group", "destroy_collective_group",
           "is_group_initialized", "get_rank", "get_collective_group_size", "allreduce", "barrier", "reduce",
           "broadcast", "allgather", "reducescatter", "send", "recv", "nccl_available", "gloo_available",
           "mpi_available", "CollectiveError"]

CollectiveError = _col.CollectiveError

_KV_PUT, _KV_GET, _KV_DELETE = 70, 71, 72  # the rendezvous store's messages (docs/protocol.md)
_SHOAL_BACKENDS = ("auto", "shm", "tcp", "ucx")


class Backend:
    """Backend names as Ray spells them: Backend("gloo") is "GLOO" ("torch_gloo" too), and an
    unknown name raises ValueError. Whether shoal can run one is _backend's question."""

    NCCL = "NCCL"
    GLOO = "GLOO"
    UNRECOGNIZED = "unrecognized"

    def __new__(cls, name):
        upper = str(name).upper()
        if upper == "TORCH_GLOO":
            return Backend.GLOO
        if upper in ("NCCL", "GLOO"):
            return upper
        if upper.lower() in _SHOAL_BACKENDS:
            return upper.lower()
        raise ValueError(f"Unrecognized backend: '{name}'. Use GLOO (or shoal's {', '.join(_SHOAL_BACKENDS)}); "
                         "NCCL is recognized but refused by shoal")


class ReduceOp(enum.Enum):
    SUM = 0
    PRODUCT = 1
    MIN = 2
    MAX = 3
    AVG = 4  # shoal's addition (Ray's NCCL has it, its gloo does not)


_OP_NAMES = {ReduceOp.SUM: "sum", ReduceOp.PRODUCT: "prod", ReduceOp.MIN: "min", ReduceOp.MAX: "max",
             ReduceOp.AVG: "avg"}


def nccl_available():
    """False: shoal's Python collectives work on host memory (see the module's doc)."""
    return False


def gloo_available():
    """True: "gloo" runs on shoal's own transports."""
    return True


def is_backend_available(backend):
    """Whether shoal runs collectives with this backend name."""
    try:
        _backend(backend)
    except ValueError:
        return False
    return True


def register_collective_backend(name, backend_cls):
    raise NotImplementedError("register_collective_backend: shoal's collectives run on its own transports "
                              f"({', '.join(_SHOAL_BACKENDS)}); a backend class of Ray's cannot be plugged in")


def get_group_handle(group_name="default"):
    raise NotImplementedError("get_group_handle: shoal has no Ray group objects; use the functions of "
                              "shoal.util.collective (or shoal.collective) with group_name")


def synchronize(gpu_id):
    raise NotImplementedError("synchronize waits for a GPU stream; shoal.util.collective works on host memory")


def _backend(backend):
    """(Ray's name, shoal.collective's backend) for a backend argument, or ValueError."""
    name = getattr(backend, "value", backend)
    name = str(name).lower() if name is not None else ""
    if name in ("gloo", "torch_gloo", "pygloo"):
        return name, "auto"
    if name in _SHOAL_BACKENDS:
        return name, name
    if name in ("nccl", "mpi", "nixl"):
        raise ValueError(
            f"collective backend {name!r} is not available in shoal: shoal.util.collective reduces numpy arrays "
            "and CPU torch tensors in host memory over shared memory, TCP or UCX. Use backend='gloo' (Ray's CPU "
            f"backend; shoal picks the transport) or one of {list(_SHOAL_BACKENDS)}, with the tensors on the CPU.")
    raise ValueError(f"unknown collective backend {backend!r}: use 'gloo' or one of {list(_SHOAL_BACKENDS)}")


def _check_sizes(world_size, rank):
    if not isinstance(world_size, int) or world_size <= 0:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, world_size - 1] = [0, {world_size - 1}], got {rank!r}")


def _check_name(group_name):
    if not isinstance(group_name, str) or not group_name:
        raise ValueError(f"group_name must be a non-empty string, got {group_name!r}")


def init_collective_group(world_size, rank, backend=Backend.NCCL, group_name="default", gloo_timeout=30000):
    """Join group_name as rank of world_size ranks (called by every member, in its own process);
    returns once all have joined. gloo_timeout (milliseconds) bounds the joining and every later
    operation of the group."""
    _, be = _backend(backend)
    _check_sizes(world_size, rank)
    _check_name(group_name)
    if _col.is_group_initialized(group_name):
        raise RuntimeError(f"Trying to initialize a group twice: {group_name!r} is already initialized in this process")
    _col.init_group(world_size, rank, group_name=group_name, backend=be, timeout=gloo_timeout / 1000.0)


def create_collective_group(actors, world_size, ranks, backend=Backend.NCCL, group_name="default",
                            gloo_timeout=30000):
    """Declare a group of actors from the driver: actors[i] gets ranks[i]. Each actor joins on
    its first collective call of group_name (no call in the actors is needed to set it up)."""
    _backend(backend)
    _check_name(group_name)
    actors = list(actors)
    ranks = list(ranks)
    if not isinstance(world_size, int) or world_size <= 0:
        raise RuntimeError(f"World size must be greater than zero. Got '{world_size}'.")
    if len(ranks) != len(actors):
        raise RuntimeError(f"Each actor should correspond to one rank. Got '{len(ranks)}' ranks but '{len(actors)}' actors")
    if len(actors) != world_size:
        raise RuntimeError(f"Each actor should correspond to one rank: {len(actors)} actors for world_size {world_size}.")
    if sorted(ranks) != list(range(world_size)):
        raise RuntimeError(f"Ranks must be a permutation from 0 to '{world_size - 1}'. Got '{ranks}'.")
    ids = []
    for a in actors:
        aid = getattr(a, "_actor_id", None)
        if not isinstance(aid, bytes):
            raise TypeError(f"create_collective_group takes actor handles, got {type(a).__name__}")
        ids.append(aid.hex())
    if len(set(ids)) != len(ids):
        raise ValueError("create_collective_group: an actor appears twice in actors")
    cl = _client()
    key = _key(group_name)
    if cl.request(_KV_GET, {"key": key, "wait_ms": 0}).get("found"):
        raise RuntimeError(f"Trying to initialize a group twice: {group_name!r} is already declared; "
                           "destroy_collective_group it first")
    decl = {"world_size": world_size, "backend": getattr(backend, "value", backend), "timeout_ms": gloo_timeout,
            "ranks": dict(zip(ids, ranks))}
    cl.request(_KV_PUT, {"key": key, "value": json.dumps(decl).encode()})


def destroy_collective_group(group_name="default"):
    """Leave the group in this process (its peers' later calls fail) and drop its declaration
    by create_collective_group, if any."""
    _check_name(group_name)
    if _col.is_group_initialized(group_name):
        _col.destroy_group(group_name)
    cl = C._client
    if cl is not None:
        try:
            cl.request(_KV_DELETE, {"key": _key(group_name)})
        except Exception:  # noqa: BLE001 - the cluster is going away; nothing to drop then
            pass


def is_group_initialized(group_name="default"):
    """Whether this process is a member of group_name (joined, not only declared)."""
    return _col.is_group_initialized(group_name)


def get_rank(group_name="default"):
    """This process's rank in group_name, or -1 when it has not joined it (as Ray)."""
    if not _col.is_group_initialized(group_name):
        return -1
    return _col.get_rank(group_name)


def get_collective_group_size(group_name="default"):
    """The size of group_name, or -1 when this process has not joined it (as Ray)."""
    if not _col.is_group_initialized(group_name):
        return -1
    return _col.get_collective_group_size(group_name)


def _key(group_name):
    return "raycoll/" + group_name


def _client():
    from .. import _api
    return _api._auto_init()


def _group(group_name):
    """Make sure this process is in group_name: joined already, or declared for this actor by
    create_collective_group (then join now)."""
    if _col.is_group_initialized(group_name):
        return
    _check_name(group_name)
    aid = _current_actor_id()
    cl = C._client
    reply = cl.request(_KV_GET, {"key": _key(group_name), "wait_ms": 0}) if cl is not None else {}
    if not reply.get("found"):
        raise RuntimeError(f"The collective group {group_name!r} is not initialized in this process: call "
                           "init_collective_group in every member, or create_collective_group from the driver")
    decl = json.loads(bytes(reply["value"]))
    rank = decl["ranks"].get(aid.hex()) if aid else None
    if rank is None:
        raise RuntimeError(f"The collective group {group_name!r} was declared by create_collective_group "
                           "for other actors; this process is not one of them")
    _col.init_group(decl["world_size"], rank, group_name=group_name, backend=_backend(decl["backend"])[1],
                    timeout=decl["timeout_ms"] / 1000.0)


def _current_actor_id():
    """The id of the actor this process holds, or None. The worker runs as `python -m
    shoal._worker`, so its state is in __main__ (shoal._worker, when imported, is a second copy)."""
    for name in ("shoal._worker", "__main__"):
        m = sys.modules.get(name)
        aid = getattr(m, "current_actor_id", None)
        if isinstance(aid, bytes) and hasattr(m, "_execute"):
            return aid
    return None


def _op(op):
    if isinstance(op, ReduceOp):
        return _OP_NAMES[op]
    if isinstance(op, str):
        return op
    raise ValueError(f"op must be a ReduceOp (SUM, PRODUCT, MIN, MAX, AVG), got {op!r}")


def _check_peer(group_name, peer, what):
    size = _col.get_collective_group_size(group_name)
    if not isinstance(peer, int) or not 0 <= peer < size:
        raise ValueError(f"{what} must be a rank in [0, {size - 1}], got {peer!r}")


def allreduce(tensor, group_name="default", op=ReduceOp.SUM):
    """Reduce tensor across the group with op, in place on every rank."""
    _group(group_name)
    _col.allreduce(tensor, group_name=group_name, op=_op(op))


def barrier(group_name="default"):
    """Return once every rank of the group has called barrier."""
    _group(group_name)
    _col.barrier(group_name=group_name)


def reduce(tensor, dst_rank=0, group_name="default", op=ReduceOp.SUM):
    """Reduce tensor across the group into dst_rank's tensor; the others' tensors are left as
    they were."""
    _group(group_name)
    _check_peer(group_name, dst_rank, "dst_rank")
    if _col.get_rank(group_name) == dst_rank:
        _col.allreduce(tensor, group_name=group_name, op=_op(op))
    else:
        _col.allreduce(tensor.copy() if hasattr(tensor, "copy") else tensor.clone(), group_name=group_name,
                       op=_op(op))


def broadcast(tensor, src_rank=0, group_name="default"):
    """Copy src_rank's tensor into every rank's tensor."""
    _group(group_name)
    _check_peer(group_name, src_rank, "src_rank")
    _col.broadcast(tensor, src_rank=src_rank, group_name=group_name)


def allgather(tensor_list, tensor, group_name="default"):
    """Gather every rank's tensor into tensor_list (world_size tensors like tensor)."""
    _group(group_name)
    if not isinstance(tensor_list, list):
        raise RuntimeError("Invalid type of 'tensor_list': a list of world_size tensors is expected")
    _col.allgather(tensor_list, tensor, group_name=group_name)


def reducescatter(tensor, tensor_list, group_name="default", op=ReduceOp.SUM):
    """Reduce the world_size tensors of tensor_list across the group; rank i's tensor gets the
    i-th reduced part."""
    _group(group_name)
    if not isinstance(tensor_list, list):
        raise RuntimeError("Invalid type of 'tensor_list': a list of world_size tensors is expected")
    _col.reducescatter(tensor, tensor_list, group_name=group_name, op=_op(op))


def send(tensor, dst_rank, group_name="default"):
    """Send tensor to dst_rank, which recvs into a tensor of the same size."""
    _group(group_name)
    _check_peer(group_name, dst_rank, "dst_rank")
    if dst_rank == _col.get_rank(group_name):
        raise RuntimeError(f"The destination rank '{dst_rank}' is self.")
    _col.send(tensor, dst_rank, group_name=group_name)


def recv(tensor, src_rank, group_name="default"):
    """Fill tensor with what src_rank sends."""
    _group(group_name)
    _check_peer(group_name, src_rank, "src_rank")
    if src_rank == _col.get_rank(group_name):
        raise RuntimeError(f"The source rank '{src_rank}' is self.")
    _col.recv(tensor, src_rank, group_name=group_name)


def _refused(name):
    def f(*args, **kwargs):
        raise NotImplementedError(f"{name} needs GPUs and NCCL; shoal.util.collective works on host memory: use "
                                  f"{name.replace('_multigpu', '')} with one CPU tensor per process")
    f.__name__ = name
    return f


allreduce_multigpu = _refused("allreduce_multigpu")
reduce_multigpu = _refused("reduce_multigpu")
broadcast_multigpu = _refused("broadcast_multigpu")
allgather_multigpu = _refused("allgather_multigpu")
reducescatter_multigpu = _refused("reducescatter_multigpu")
send_multigpu = _refused("send_multigpu")
recv_multigpu = _refused("recv_multigpu")
