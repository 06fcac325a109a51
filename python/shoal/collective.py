"""Collectives among shoal tasks and actors: allreduce, allgather, reducescatter, broadcast,
barrier, send/recv on numpy arrays (and CPU torch tensors where torch is installed), in place.

Every rank of a group calls ``init_group`` with the same world size and group name; ranks find
each other through the cluster's head agent, and talk over shared memory inside a node and TCP
(or UCX, where the node has RDMA) across nodes::

    import numpy as np
    import shoal
    from shoal import collective as col

    @shoal.remote
    class Worker:
        def step(self, rank, n):
            col.init_group(n, rank, group_name="grads")
            g = np.full(1 << 20, rank, dtype=np.float32)
            col.allreduce(g, group_name="grads")          # g now holds the sum over ranks
            col.destroy_group("grads")
            return float(g[0])

The work happens in libshoalcoll.so, the same Go implementation the Go SDK uses (package
rdma/coll), called through ctypes with the arrays' addresses; the GIL is released meanwhile.
A rank that dies makes the others' calls raise ``CollectiveError`` within the group's timeout.
"""
import ctypes
import os
import threading

import numpy as np

__all__ = ["init_group", "destroy_group", "get_backends", "is_group_initialized", "get_rank", "get_collective_group_size",
           "allreduce", "allgather", "reducescatter", "broadcast", "barrier", "send", "recv", "CollectiveError",
           "ReduceOp"]


class CollectiveError(RuntimeError):
    """A collective failed: a peer died or closed, a timeout passed, or the arguments were wrong.
    After a failure the group is aborted; destroy it and make a new one."""


class ReduceOp:
    SUM = "sum"
    PRODUCT = "prod"
    MIN = "min"
    MAX = "max"
    AVG = "avg"


_OPS = {"sum": 0, "prod": 1, "product": 1, "min": 2, "max": 3, "avg": 4, "mean": 4}
# numbers of coll.DType (rdma/coll/dtype.go)
_NP_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.int32): 2, np.dtype(np.int64): 3,
              np.dtype(np.float16): 4}

_lib = None
_lib_lock = threading.Lock()
_groups = {}  # name -> (handle, rank, size)


def _load():
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        path = os.environ.get("SHOAL_COLL_LIB") or os.path.join(os.path.dirname(__file__), "bin", "libshoalcoll.so")
        if not os.path.exists(path):
            raise CollectiveError(f"the collective library {path} is missing; build it with `make build` "
                                  "(or point SHOAL_COLL_LIB at libshoalcoll.so)")
        lib = ctypes.CDLL(path)
        i64, i32, vp, cp = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
        lib.shoal_coll_init.argtypes = [cp, i32, i32, cp, i64, cp, cp, cp, cp, cp]
        lib.shoal_coll_init.restype = i64
        lib.shoal_coll_error.argtypes = [i64, cp, i32]
        lib.shoal_coll_error.restype = i32
        lib.shoal_coll_allreduce.argtypes = [i64, vp, i64, i32, i32]
        lib.shoal_coll_allgather.argtypes = [i64, vp, i64, vp]
        lib.shoal_coll_reducescatter.argtypes = [i64, vp, vp, i64, i32, i32]
        lib.shoal_coll_broadcast.argtypes = [i64, vp, i64, i32]
        lib.shoal_coll_barrier.argtypes = [i64]
        lib.shoal_coll_send.argtypes = [i64, vp, i64, i32]
        lib.shoal_coll_recv.argtypes = [i64, vp, i64, i32]
        lib.shoal_coll_destroy.argtypes = [i64]
        lib.shoal_coll_backends.argtypes = [i64, cp, i32]
        lib.shoal_coll_backends.restype = i32
        for f in ("allreduce", "allgather", "reducescatter", "broadcast", "barrier", "send", "recv", "destroy"):
            getattr(lib, "shoal_coll_" + f).restype = i32
        _lib = lib
        return lib


def _error(h):
    buf = ctypes.create_string_buffer(4096)
    _lib.shoal_coll_error(h, buf, len(buf))
    return buf.value.decode(errors="replace")


def _check(h, rc):
    if rc != 0:
        raise CollectiveError(_error(h))


def _env():
    """Address and secret of the cluster this process belongs to."""
    addr = os.environ.get("SHOAL_ADDRESS", "")
    secret = os.environ.get("SHOAL_SECRET", "")
    cluster = os.environ.get("SHOAL_CLUSTER_ID", "")
    node = os.environ.get("SHOAL_NODE_ID", "")
    try:
        from . import _client
        cl = _client._client
        if cl is not None:
            addr = addr or cl.address
            cluster = cluster or cl.cluster_id
            node = node or cl.node_id
    except (ImportError, AttributeError):
        pass
    return addr, secret, cluster, node


def init_group(world_size, rank, group_name="default", backend="auto", timeout=60.0):
    """Join group `group_name` as `rank` of `world_size` ranks; returns when every rank has joined
    (or raises CollectiveError naming the ranks missing after `timeout` seconds).

    backend: "auto" (shared memory inside a node; UCX where it runs and the node has an RDMA
    port; else TCP), "shm", "tcp", or another registered transport. `timeout` also bounds every
    later operation of the group."""
    if not isinstance(world_size, int) or not isinstance(rank, int) or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"init_group: rank {rank!r} of world_size {world_size!r}: want integers with 0 <= rank < world_size")
    if group_name in _groups:
        raise CollectiveError(f"group {group_name!r} is already initialized in this process; destroy_group it first")
    lib = _load()
    addr, secret, cluster, node = _env()
    if world_size > 1 and (not addr or not secret):
        raise CollectiveError("init_group: SHOAL_ADDRESS and SHOAL_SECRET are not set; call it in a shoal task or actor, "
                              "or in a driver run by `shoal run` / `shoal launch`")
    h = lib.shoal_coll_init(group_name.encode(), rank, world_size, backend.encode(), int(timeout * 1000), addr.encode(),
                            secret.encode(), cluster.encode(), node.encode(),
                            os.environ.get("SHOAL_COLL_HOST", "").encode())
    if h == 0:
        raise CollectiveError(_error(0))
    _groups[group_name] = (h, rank, world_size)


def is_group_initialized(group_name="default"):
    return group_name in _groups


def destroy_group(group_name="default"):
    """Leave the group and close its connections; the peers' later calls fail."""
    g = _groups.pop(group_name, None)
    if g is not None:
        _lib.shoal_coll_destroy(g[0])


def get_backends(group_name="default"):
    """{peer rank: transport} this rank uses for each other rank ("shm", "tcp", "ucx")."""
    import json
    h = _group(group_name)[0]
    buf = ctypes.create_string_buffer(1 << 16)
    _check(h, _lib.shoal_coll_backends(h, buf, len(buf)))
    return {int(k): v for k, v in json.loads(buf.value.decode()).items()}


def get_rank(group_name="default"):
    return _group(group_name)[1]


def get_collective_group_size(group_name="default"):
    return _group(group_name)[2]


def _group(name):
    g = _groups.get(name)
    if g is None:
        raise CollectiveError(f"collective group {name!r} is not initialized in this process; call init_group first")
    return g


def _buffer(t, what, writable=True):
    """(address, nbytes, dtype number) of an array or CPU torch tensor, which must be contiguous."""
    if isinstance(t, np.ndarray):
        if not t.flags.c_contiguous:
            raise ValueError(f"{what}: the array is not contiguous; pass np.ascontiguousarray(a) and copy the result back")
        if writable and not t.flags.writeable:
            raise ValueError(f"{what}: the array is read-only (e.g. it came from shoal.get zero-copy); pass a copy")
        dt = _NP_DTYPES.get(t.dtype)
        if dt is None:
            if t.dtype.name == "bfloat16":
                dt = 5
            else:
                raise TypeError(f"{what}: dtype {t.dtype} is not supported; use float16, bfloat16, float32, float64, int32 or int64")
        return t.ctypes.data, t.nbytes, dt
    torch = _torch()
    if torch is not None and isinstance(t, torch.Tensor):
        if t.device.type != "cpu":
            raise ValueError(f"{what}: the tensor is on {t.device}; shoal.collective works on CPU tensors")
        if not t.is_contiguous():
            raise ValueError(f"{what}: the tensor is not contiguous; pass t.contiguous() and copy the result back")
        dt = {torch.float32: 0, torch.float64: 1, torch.int32: 2, torch.int64: 3, torch.float16: 4,
              torch.bfloat16: 5}.get(t.dtype)
        if dt is None:
            raise TypeError(f"{what}: dtype {t.dtype} is not supported; use float16, bfloat16, float32, float64, int32 or int64")
        return t.data_ptr(), t.numel() * t.element_size(), dt
    raise TypeError(f"{what}: expected a numpy array or a torch tensor, got {type(t).__name__}")


def _torch():
    import sys
    return sys.modules.get("torch")


def _op(op):
    o = _OPS.get(str(op).lower())
    if o is None:
        raise ValueError(f"unknown reduction {op!r}: use one of sum, prod, min, max, avg")
    return o


def allreduce(tensor, group_name="default", op="sum"):
    """Reduce `tensor` over every rank with `op` (sum, prod, min, max, avg), in place; returns it."""
    h = _group(group_name)[0]
    p, n, dt = _buffer(tensor, "allreduce")
    _check(h, _lib.shoal_coll_allreduce(h, p, n, dt, _op(op)))
    return tensor


def allgather(tensor_list, tensor, group_name="default"):
    """Gather every rank's `tensor` into `tensor_list` (a list of world_size arrays like it, or one
    array of shape (world_size, *tensor.shape)); returns tensor_list."""
    h, _, size = _group(group_name)
    p, n, dt = _buffer(tensor, "allgather", writable=False)
    if isinstance(tensor_list, (list, tuple)):
        if len(tensor_list) != size:
            raise ValueError(f"allgather: tensor_list has {len(tensor_list)} entries, want world_size {size}")
        out = np.empty(n * size, dtype=np.uint8)
        _check(h, _lib.shoal_coll_allgather(h, p, n, out.ctypes.data))
        for i, t in enumerate(tensor_list):
            q, m, _ = _buffer(t, "allgather output")
            if m != n:
                raise ValueError(f"allgather: output {i} has {m} bytes, the input {n}")
            ctypes.memmove(q, out.ctypes.data + i * n, n)
        return tensor_list
    q, m, _ = _buffer(tensor_list, "allgather output")
    if m != n * size:
        raise ValueError(f"allgather: output of {m} bytes, want {n * size} (world_size x input)")
    _check(h, _lib.shoal_coll_allgather(h, p, n, q))
    return tensor_list


def reducescatter(tensor, tensor_list, group_name="default", op="sum"):
    """Reduce the world_size inputs in `tensor_list` (a list of arrays like `tensor`, or one array
    of shape (world_size, *tensor.shape)) over every rank and put this rank's part in `tensor`."""
    h, _, size = _group(group_name)
    p, n, dt = _buffer(tensor, "reducescatter")
    if isinstance(tensor_list, (list, tuple)):
        if len(tensor_list) != size:
            raise ValueError(f"reducescatter: tensor_list has {len(tensor_list)} entries, want world_size {size}")
        inp = np.empty(n * size, dtype=np.uint8)
        for i, t in enumerate(tensor_list):
            q, m, _ = _buffer(t, "reducescatter input", writable=False)
            if m != n:
                raise ValueError(f"reducescatter: input {i} has {m} bytes, the output {n}")
            ctypes.memmove(inp.ctypes.data + i * n, q, n)
        q = inp.ctypes.data
    else:
        q, m, _ = _buffer(tensor_list, "reducescatter input", writable=False)
        if m != n * size:
            raise ValueError(f"reducescatter: input of {m} bytes, want {n * size} (world_size x output)")
    _check(h, _lib.shoal_coll_reducescatter(h, q, p, n, dt, _op(op)))
    return tensor


def broadcast(tensor, src_rank=0, group_name="default"):
    """Copy src_rank's `tensor` into every rank's `tensor`, in place; returns it."""
    h = _group(group_name)[0]
    p, n, _ = _buffer(tensor, "broadcast")
    _check(h, _lib.shoal_coll_broadcast(h, p, n, src_rank))
    return tensor


def barrier(group_name="default"):
    """Return once every rank of the group has called barrier."""
    h = _group(group_name)[0]
    _check(h, _lib.shoal_coll_barrier(h))


def send(tensor, dst_rank, group_name="default"):
    """Send `tensor` to dst_rank, which must recv into a tensor of the same size."""
    h = _group(group_name)[0]
    p, n, _ = _buffer(tensor, "send", writable=False)
    _check(h, _lib.shoal_coll_send(h, p, n, dst_rank))


def recv(tensor, src_rank, group_name="default"):
    """Fill `tensor` with what src_rank sends; returns it."""
    h = _group(group_name)[0]
    p, n, _ = _buffer(tensor, "recv")
    _check(h, _lib.shoal_coll_recv(h, p, n, src_rank))
    return tensor
