"""The connection of a driver or worker to its node agent: ids, object refs, puts and gets,
task submission, and the leader/follower pump that lets several threads wait on one socket."""
import mmap
import os
import struct
import sys
import threading
import time
import weakref

from . import _serial
from . import _wire as w
from . import exceptions as exc

MADV_POPULATE_WRITE = 23
# A client keeps a copy of the small objects it puts, so that its own gets of them need no
# round trip, up to this many bytes; past it, a get asks the agent (whose store spills).
PUT_CACHE_MAX = 64 << 20
_counter_fmt = struct.Struct(">I")
# A client without a store of its own (a driver outside the allocation) puts objects larger than
# this in parts of PART bytes, and reads such objects in parts (nodeagent/remote_driver.go).
PARTS_ABOVE = 64 << 20
PART = 64 << 20

_client = None  # the process's connected Client


def current():
    if _client is None:
        raise RuntimeError("shoal is not initialized; call shoal.init() first")
    return _client


class ObjectRef:
    """A reference to an object in the cluster. Dropping the last ObjectRef of an id lets the
    cluster free the object."""

    __slots__ = ("_id", "_cl", "__weakref__")

    def __init__(self, oid, _client_obj=None, _owned=False):
        self._id = oid
        cl = _client_obj or _client
        self._cl = cl
        if cl is not None:
            cl._ref_added(oid, owned=_owned)

    def binary(self):
        return self._id

    def hex(self):
        return self._id.hex()

    def task_id(self):
        return self._id[:12] + b"\0\0\0\0"

    def __repr__(self):
        return f"ObjectRef({self._id.hex()})"

    def __eq__(self, other):
        return isinstance(other, ObjectRef) and other._id == self._id

    def __hash__(self):
        return hash(self._id)

    def __reduce__(self):
        refs = _serial.collecting()
        if refs is not None:
            refs.append(self._id)
        return (_rebuild_ref, (self._id,))

    def __del__(self):
        cl = self._cl
        if cl is not None:
            try:
                cl._ref_dropped(self._id)
            except Exception:
                pass

    def future(self):
        """A concurrent.futures.Future of the value (or of its error), as Ray's ObjectRef.future().
        One thread waits for it in slices of a second, so a future cancelled by its user (an
        asyncio.wait_for that timed out) lets its thread go instead of holding it until the
        object is made."""
        import concurrent.futures
        f = concurrent.futures.Future()
        cl = self._cl or current()
        r = cl._ready.get(self._id)
        if r is not None and r[1] is not None:  # inline and here: no thread, no round trip
            _settle(f, cl, self)
            return f
        threading.Thread(target=_await_ready, args=(f, cl, self), daemon=True, name="shoal-await").start()
        return f

    def as_future(self):
        """An asyncio.Future of the value, bound to the running event loop (Ray's as_future)."""
        import asyncio
        return asyncio.wrap_future(self.future())

    def __await__(self):
        return self.as_future().__await__()


def _settle(f, cl, ref):
    try:
        v = cl.get([ref], None)[0]
    except BaseException as e:  # noqa: BLE001 - the task's own error travels to the awaiter
        if not f.cancelled():
            f.set_exception(e)
        return
    if not f.cancelled():
        f.set_result(v)


def _await_ready(f, cl, ref):
    try:
        while not f.cancelled():
            ready, _ = cl.wait([ref], 1, 1.0)
            if ready:
                break
        else:
            return
    except BaseException as e:  # noqa: BLE001 - e.g. the connection to the agent was lost
        if not f.cancelled():
            f.set_exception(e)
        return
    _settle(f, cl, ref)


def _rebuild_ref(oid):
    return ObjectRef(oid)


class _StoreConn:
    """A worker's connection to its own node's object store, on a node other than the head
    node (SHOAL_STORE_ADDRESS, docs/object-transfer.md): objects are created in and mapped from
    that store, and plain tasks submitted to it (member-local scheduling, docs/architecture.md),
    while everything else goes to the head node's agent. The store answers requests; a posted
    one (post) is answered later (answer), others wait for their answer at once."""

    def __init__(self, address, secret, worker_id):
        self.address = address
        self.conn, _, self.welcome = w.connect(address, secret, "worker", worker_id=worker_id)
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.reading = False  # a thread reads the connection, the lock released (_wait)
        self.seq = 0
        self.releases = []  # uses to give back, sent before the next request
        self.forgets = []   # member-local values this process no longer refers to (LOCAL_FORGET)
        self.answers = {}   # seq -> (type, body) of answers not yet taken

    def _lost(self, e):
        return exc.RaySystemError(f"lost the connection to this node's object store at {self.address}: {e}")

    def _prefix(self):
        parts = []
        if self.releases:
            rel, self.releases = self.releases, []
            parts.append(w.encode(w.RELEASE, 0, {"ids": rel}))
        if self.forgets:
            fo, self.forgets = self.forgets, []
            parts.append(w.encode(w.LOCAL_FORGET, 0, {"ids": fo}))
        return parts

    def _send(self, t, bodies):
        """Send requests (the lock held); returns their seqs."""
        parts = self._prefix()
        seqs = []
        for b in bodies:
            self.seq += 1
            seqs.append(self.seq)
            parts.append(w.encode(t, self.seq, b))
        try:
            self.conn.send(b"".join(parts))
        except (OSError, w.ProtocolError) as e:
            raise self._lost(e)
        return seqs

    def _wait(self, seqs):
        """Wait until every seq is answered (the lock held). One thread at a time reads the
        connection, with the lock released, and files what it reads for whoever waits for it:
        a LOCAL_GET that waits up to 50 ms for a task keeps no other thread of this process
        (a threaded actor's) from its own requests meanwhile."""
        while not all(s in self.answers for s in seqs):
            if self.reading:
                self.cv.wait()
                continue
            self.reading = True
            self.lock.release()
            try:
                rt, rseq, rbody = self.conn.recv()
            except (OSError, w.ProtocolError) as e:
                raise self._lost(e)
            finally:
                self.lock.acquire()
                self.reading = False
                self.cv.notify_all()
            self.answers[rseq] = (rt, rbody)

    @staticmethod
    def _body(a):
        rt, rbody = a
        if rt == w.ERROR:
            raise _error_from(rbody)
        return rbody

    def post(self, t, body):
        """Send a request whose answer is taken later (answer); takes in answers that arrived."""
        with self.lock:
            (seq,) = self._send(t, [body])
            try:
                while not self.reading:  # (another thread reading takes them in)
                    f = self.conn.recv_nowait()
                    if f is None:
                        break
                    self.answers[f[1]] = (f[0], f[2])
            except (OSError, w.ProtocolError) as e:
                raise self._lost(e)
        return seq

    def answer(self, seq):
        with self.lock:
            self._wait([seq])
            a = self.answers.pop(seq)
        return self._body(a)

    def request(self, t, body):
        with self.lock:
            (seq,) = self._send(t, [body])
            self._wait([seq])
            a = self.answers.pop(seq)
        return self._body(a)

    def request_many(self, t, bodies):
        """Send all requests at once and return their answers in order (the store answers
        them as they finish, so several objects are pulled at the same time)."""
        with self.lock:
            seqs = self._send(t, bodies)
            self._wait(seqs)
            got = [self.answers.pop(s) for s in seqs]
        return [self._body(a) for a in got]

    def released(self, oid):
        self.releases.append(oid)

    def close(self):
        try:
            with self.lock:
                parts = self._prefix()
                if parts:
                    self.conn.send(b"".join(parts))
        except OSError:
            pass
        self.conn.close()


class Client:
    def __init__(self, address, secret, role="driver", worker_id="", namespace=""):
        self.address = address
        self.conn, self.hello, self.welcome = w.connect(address, secret, role, worker_id=worker_id, ns=namespace,
                                                        sys_path=[os.path.abspath(p) if p else os.getcwd() for p in sys.path],
                                                        exe=os.environ.get("SHOAL_WORKER_PYTHON") or sys.executable)  # docs/remote-drivers.md
        self.role = role
        self.prefix = self.welcome["client"]
        self.node_id = self.welcome["node"]
        self.cluster_id = self.hello["cluster"]
        self._counter = 0
        self._count_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._cv = threading.Condition()
        self._reading = False
        self._seq = 0
        self._sends = 0         # messages sent; every 32nd takes in what has arrived (send)
        self._replies = {}
        self._pending = set()   # ids of my tasks' returns not yet pushed as READY
        self._ready = {}        # id -> (fmt, data or None when stored)
        self._put_cached = {}   # id -> bytes of a small put kept in _ready (PUT_CACHE_MAX)
        self._put_cache_bytes = 0
        self._execq = []        # EXEC bodies (workers)
        self._local = {}        # id -> count of live ObjectRefs in this process
        self._outq = []         # queued one-way frames (DECREF/RELEASE), sent before the next message
        self._decref = set()
        self._release = []
        self._fns_sent = set()
        self._fns_head = set()  # code the head node's agent has been sent (in a SUBMIT)
        self._arena = None
        self._populated = 0     # this process's arena mapping has page tables up to here
        self._closed = False
        self._dead = None
        self.store = None
        if role == "worker" and os.environ.get("SHOAL_STORE_ADDRESS"):
            self.store = _StoreConn(os.environ["SHOAL_STORE_ADDRESS"], secret, worker_id)
        # member-local scheduling (docs/architecture.md): plain tasks go to this node's agent
        self._local_ok = self.store is not None and os.environ.get("SHOAL_LOCAL_TASKS") == "1"
        self._fns_local = set()  # code this node's agent has
        self._local_ids = set()  # return values of tasks it runs, still referred to here
        self._local_out = []     # (seq, spec, rets) offered to it, not yet answered
        self._local_lock = threading.RLock()
        self._arena_welcome = self.store.welcome if self.store else self.welcome

    # ---- ids
    def next_id(self, tail):
        with self._count_lock:
            self._counter += 1
            c = self._counter
        return self.prefix + _counter_fmt.pack(c) + tail

    # ---- sending
    def _flush_locked(self, extra=None):
        parts = []
        if self._decref:
            parts.append(w.encode(w.DECREF, 0, {"ids": list(self._decref)}))
            self._decref.clear()
        if self._release:
            parts.append(w.encode(w.RELEASE, 0, {"ids": self._release}))
            self._release = []
        if extra is not None:
            parts.append(extra)
        if parts:
            self.conn.send(b"".join(parts) if len(parts) > 1 else parts[0])

    def send(self, t, body, seq=0):
        if self._local_out:
            self._settle_local()
        self._send_head(t, body, seq)

    def _send_head(self, t, body, seq=0):
        if self._dead:
            raise self._dead
        if t == w.SUBMIT and body.get("fnb"):
            self._fns_head.add(body["fn"])
        data = w.encode(t, seq, body)
        with self._send_lock:
            self._flush_locked(data)
        self._sends += 1
        if not self._sends & 31:
            self._drain_nowait()

    def _drain_nowait(self, most=1024):
        """Take in what the agent has pushed (READY, EXEC) without waiting, when no thread is
        reading: a driver that submits for a long time before it gets anything would otherwise
        leave every result in the agent's send queue, which is bounded (docs/protocol.md): past
        the bound the agent disconnects a client that does not read."""
        with self._cv:
            if self._reading or self._dead:
                return
            self._reading = True
        try:
            for _ in range(most):
                try:
                    frame = self.conn.recv_nowait()
                except (OSError, w.ProtocolError) as e:
                    self._dead = exc.RaySystemError(f"lost the connection to the shoal agent at {self.address}: {e}")
                    frame = None
                if frame is None:
                    break
                with self._cv:
                    self._dispatch(frame)
        finally:
            with self._cv:
                self._reading = False
                self._cv.notify_all()

    def flush(self):
        if self._local_out:
            self._settle_local()
        with self._send_lock:
            self._flush_locked()

    def request(self, t, body, timeout=None):
        with self._count_lock:
            self._seq += 1
            seq = self._seq
        self.send(t, body, seq)
        self.pump(lambda: seq in self._replies, timeout)
        rt, body = self._replies.pop(seq)
        if rt == w.ERROR:
            raise _error_from(body)
        return body

    # ---- reading: leader/follower over one socket
    def pump(self, cond, timeout=None):
        """Wait until cond() holds, reading frames as the leader when no other thread is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cv:
                while True:
                    if cond():
                        return True
                    if self._dead:
                        raise self._dead
                    if not self._reading:
                        self._reading = True
                        break
                    rem = None if deadline is None else deadline - time.monotonic()
                    if rem is not None and rem <= 0:
                        return False
                    self._cv.wait(rem)
            try:
                if deadline is not None:
                    rem = deadline - time.monotonic()
                    if rem <= 0:
                        with self._cv:
                            self._reading = False
                            self._cv.notify_all()
                        return False
                    self.conn.sock.settimeout(rem)
                try:
                    frame = self.conn.recv()
                except TimeoutError:
                    frame = None
                except (OSError, w.ProtocolError) as e:
                    self._dead = exc.RaySystemError(f"lost the connection to the shoal agent at {self.address}: {e}")
                    frame = None
                finally:
                    if deadline is not None and not self._dead:
                        try:
                            self.conn.sock.settimeout(None)
                        except OSError:
                            pass
            except BaseException:
                with self._cv:
                    self._reading = False
                    self._cv.notify_all()
                raise
            with self._cv:
                self._reading = False
                if frame is not None:
                    self._dispatch(frame)
                self._cv.notify_all()
            if frame is None and not self._dead:
                return cond()

    def _dispatch(self, frame):
        t, seq, body = frame
        if t == w.READY:
            for o in body["objs"]:
                oid = o["id"]
                self._pending.discard(oid)
                self._ready[oid] = (o["fmt"], o.get("data"))
        elif t == w.EXEC:
            self._execq.append(body)
        elif t == w.TERMINATE:  # the actor's last handle is gone (_actor_exec.py)
            self._execq.append({"kind": "terminate"})
        elif t == w.TASK_CANCEL:
            from . import _generator
            _generator.on_cancel(body["task"])
        elif seq:
            self._replies[seq] = (t, body)
        elif t == w.ERROR:
            self._dead = exc.RaySystemError(f"the shoal agent closed this connection: {body.get('msg')}")

    # ---- local reference counts
    def _ref_added(self, oid, owned):
        n = self._local.get(oid, 0)
        self._local[oid] = n + 1
        if n == 0 and not owned:
            if oid in self._decref:
                self._decref.discard(oid)  # cancel a queued DECREF instead of sending INCREF
            else:
                self.send(w.INCREF, {"ids": [oid]})

    def _ref_dropped(self, oid):
        if self._closed:
            return
        n = self._local.get(oid, 0) - 1
        if n > 0:
            self._local[oid] = n
            return
        self._local.pop(oid, None)
        if oid in self._local_ids:
            self._local_ids.discard(oid)
            self.store.forgets.append(oid)
        self._ready.pop(oid, None)
        self._put_cache_bytes -= self._put_cached.pop(oid, 0)
        self._pending.discard(oid)
        self._decref.add(oid)
        if len(self._decref) >= 256 and not self._local_out:
            try:
                if self._send_lock.acquire(blocking=False):
                    try:
                        self._flush_locked()
                    finally:
                        self._send_lock.release()
            except OSError:
                pass

    def _released(self, oid):
        if not self._closed:
            self._release.append(oid)

    # ---- objects
    def put_serialized(self, oid, ser, fmt=w.FMT_PYTHON, announce=True):
        """Store a serialized value under oid (the caller makes the ObjectRef). announce=False:
        a member-local task's value, which its node's agent announces (LEASE_NEXT)."""
        if self.store is not None and ser.size >= w.INLINE_MAX:
            # a worker on a member node: into this node's store, then tell the head where it is
            reply = self.store.request(w.CREATE, {"id": oid, "fmt": fmt, "size": ser.size, "refs": ser.refs})
            try:
                self._write(reply["path"], reply["offset"], ser)
            finally:
                self.store.request(w.SEAL, {"id": oid})  # readable before the head hears of it
            if not announce:
                return
            self.send(w.PUT_AT, {"id": oid, "fmt": fmt, "size": ser.size, "refs": ser.refs, "loc": ""})
            self._ready[oid] = (fmt, None)
            return
        if not self._arena_welcome.get("arena"):
            # on another node than the store: the bytes travel in the message
            if ser.size > PARTS_ABOVE:
                self._put_parts(oid, ser, fmt)  # a driver outside the allocation (docs/remote-drivers.md)
                return
            if ser.size > w.MAX_FRAME - 4096:
                raise exc.ObjectStoreFullError(
                    f"an object of {ser.size} bytes is too large to send from node {os.environ.get('SHOAL_NODE_ID', '?')} "
                    f"to the head node's store in one message (at most {w.MAX_FRAME - 4096} bytes in this version)")
            data = ser.to_bytes()
            # before the PUT: an agent that cannot store it pushes a store_full error object
            # (READY) that must replace this
            self._ready[oid] = (fmt, self._keep_put(oid, data) if ser.size < w.INLINE_MAX else None)
            self.send(w.PUT, {"id": oid, "fmt": fmt, "data": data, "refs": ser.refs})
            return
        if ser.size < w.INLINE_MAX:
            data = ser.to_bytes()
            self._ready[oid] = (fmt, self._keep_put(oid, data))   # before the PUT, as above
            self.send(w.PUT, {"id": oid, "fmt": fmt, "data": data, "refs": ser.refs})
            return
        reply = self.request(w.CREATE, {"id": oid, "fmt": fmt, "size": ser.size, "refs": ser.refs})
        self._write(reply["path"], reply["offset"], ser)
        self.send(w.SEAL, {"id": oid})
        self._ready[oid] = (fmt, None)

    def _put_parts(self, oid, ser, fmt):
        """PUT_PART messages of at most PART bytes, in order (nodeagent/remote_driver.go)."""
        buf = bytearray(ser.size)
        mv = memoryview(buf)
        ser.write_into(mv)
        self._ready[oid] = (fmt, None)
        for off in range(0, ser.size, PART):
            end = min(off + PART, ser.size)
            self.send(w.PUT_PART, {"id": oid, "fmt": fmt, "size": ser.size, "refs": ser.refs if off == 0 else [],
                                   "off": off, "data": mv[off:end], "last": end == ser.size})

    def _read_parts(self, o):
        """The bytes of an object the agent answered with "parts": READ_PART requests, then the
        object's use is given back (RELEASE)."""
        size = o["size"]
        buf = bytearray(size)
        try:
            for off in range(0, size, PART):
                n = min(PART, size - off)
                data = self.request(w.READ_PART, {"id": o["id"], "off": off, "len": n})["data"]
                if len(data) != n:
                    raise exc.RaySystemError(f"object {o['id'].hex()}: asked for {n} bytes at {off}, got {len(data)}")
                buf[off:off + n] = data
        finally:
            self._released(o["id"])
        return memoryview(buf)

    def _keep_put(self, oid, data):
        """data when this client keeps a copy of its small put oid (PUT_CACHE_MAX), else None
        (ready, read from the agent)."""
        if self._put_cache_bytes + len(data) > PUT_CACHE_MAX:
            return None
        self._put_cached[oid] = len(data)
        self._put_cache_bytes += len(data)
        return data

    def _write(self, path, offset, ser):
        if path == self._arena_welcome["arena"]:
            if self._arena is None:
                fd = os.open(path, os.O_RDWR)
                try:
                    self._arena = mmap.mmap(fd, self._arena_welcome["arena_size"], mmap.MAP_SHARED)
                finally:
                    os.close(fd)
            mm, base = self._arena, offset
        else:
            fd = os.open(path, os.O_RDWR)
            try:
                mm = mmap.mmap(fd, ser.size, mmap.MAP_SHARED)
            finally:
                os.close(fd)
            base = 0
        end = base + ser.size
        if ser.size >= (1 << 20) and not (mm is self._arena and end <= self._populated):
            # Fault the range in with one call instead of a page fault per 4 KiB. The agent
            # allocates from the arena's start first, so a high-water mark is enough to skip
            # ranges this process has mapped before.
            start = base // mmap.PAGESIZE * mmap.PAGESIZE
            if mm is self._arena and start < self._populated:
                start = self._populated
            try:
                mm.madvise(MADV_POPULATE_WRITE, start, (end - start + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)
                if mm is self._arena and base <= self._populated:
                    self._populated = max(self._populated, end)
            except (OSError, ValueError):
                pass
        mv = memoryview(mm)
        try:
            ser.write_into(mv[base:base + ser.size])
        finally:
            mv.release()
        if mm is not self._arena:
            mm.close()

    def _fetch_many(self, objs):
        """FETCH several objects that live on other nodes at once; returns (fmt, bytes) each."""
        bodies = [{"id": o["id"], "fmt": o["fmt"], "size": o.get("size", 0), "loc": o["loc"]} for o in objs]
        if self.store is not None:
            answers, release = self.store.request_many(w.FETCH, bodies), self.store.released
        else:
            seqs = []
            for b in bodies:
                with self._count_lock:
                    self._seq += 1
                    seqs.append(self._seq)
                self.send(w.FETCH, b, seqs[-1])
            self.pump(lambda: all(s in self._replies for s in seqs))
            answers, release = [], self._released
            for s in seqs:
                rt, body = self._replies.pop(s)
                if rt == w.ERROR:
                    raise _error_from(body)
                answers.append(body)
        out = []
        for lo in answers:
            if lo.get("path"):
                out.append((lo["fmt"], self._read_stored(lo["id"], lo, release)))
            else:
                out.append((lo["fmt"], memoryview(lo.get("data") or b"")))
        return out

    def read_obj(self, o):
        """The bytes of an object from GET or EXEC: inline, mapped from this node's store, or
        pulled into this node's store first (FETCH) when it lives on another node."""
        if o.get("parts"):
            return o["fmt"], self._read_parts(o)
        if o.get("loc"):
            body = {"id": o["id"], "fmt": o["fmt"], "size": o.get("size", 0), "loc": o["loc"]}
            if self.store is not None:
                lo, release = self.store.request(w.FETCH, body), self.store.released
            else:
                lo, release = self.request(w.FETCH, body), self._released
            if lo.get("path"):
                return lo["fmt"], self._read_stored(lo["id"], lo, release)
            return lo["fmt"], memoryview(lo.get("data") or b"")
        if o.get("path"):
            return o["fmt"], self._read_stored(o["id"], o)
        return o["fmt"], memoryview(o.get("data") or b"")

    def _read_stored(self, oid, o, release=None):
        """Map a stored object read-only; the mapping's collection sends RELEASE."""
        release = release or self._released
        size = o["size"]
        fd = os.open(o["path"], os.O_RDONLY)
        try:
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ, offset=o.get("offset", 0)) if size else b""
        finally:
            os.close(fd)
        if size:
            weakref.finalize(mm, release, oid)
        else:
            release(oid)
        return memoryview(mm)

    def get(self, refs, timeout):
        ids = [r._id for r in refs]
        deadline = None if timeout is None else time.monotonic() + timeout
        # wait for READY pushes of my own tasks first
        # A worker asks the agent instead of waiting for pushes, so the agent knows it is
        # blocked and lends its CPUs to the tasks it waits for.
        mine = [i for i in ids if i in self._pending] if self.role != "worker" else []
        if mine:
            ok = self.pump(_all_left(mine, self._pending),
                           None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not ok:
                raise exc.GetTimeoutError(f"get timed out after {timeout}s: {len(mine)} object(s) not ready")
        out = [None] * len(ids)
        need = []
        for k, i in enumerate(ids):
            r = self._ready.get(i)
            if r is not None and r[1] is not None:
                out[k] = _serial.decode(r[0], memoryview(r[1]))
            else:
                need.append(k)
        if self._local_out:
            self._settle_local()
        if need and self._local_ids:
            need = self._get_local(ids, need, out, deadline, timeout)
        if need:
            tms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            reply = self.request(w.GET, {"ids": [ids[k] for k in need], "timeout_ms": tms})
            if reply.get("timeout"):
                raise exc.GetTimeoutError(f"get timed out after {timeout}s: {len(need)} object(s) not ready")
            remote = [(k, o) for k, o in zip(need, reply["objs"]) if o.get("loc")]
            done = set()
            if len(remote) > 1:  # pulled at the same time
                for (k, _), fb in zip(remote, self._fetch_many([o for _, o in remote])):
                    out[k] = _serial.decode(*fb)
                    done.add(k)
            for k, o in zip(need, reply["objs"]):
                if k in done:
                    continue
                if o.get("path") or o.get("loc") or o.get("parts"):
                    out[k] = _serial.decode(*self.read_obj(o))
                else:
                    data = o.get("data") or b""
                    if len(data) < 65536 and o["id"] in self._local:
                        self._ready[o["id"]] = (o["fmt"], data)
                    out[k] = _serial.decode(o["fmt"], memoryview(data))
        for k, v in enumerate(out):
            if isinstance(v, _serial._Raise):
                raise v.error
        return out

    def _get_local(self, ids, need, out, deadline, timeout):
        """Fill out[k] for the values in need that this node's agent ran and still keeps
        (LOCAL_GET), waiting for them; returns what is left for the head node's agent. While it
        waits, the head lends this worker's CPUs out (BLOCK), as it does during a GET."""
        mine = [k for k in need if ids[k] in self._local_ids]
        if not mine:
            return need
        blocked = False
        try:
            while mine:
                if deadline is None:
                    tms = 50 if blocked else 0
                else:
                    tms = min(50, max(0, int((deadline - time.monotonic()) * 1000))) if blocked else 0
                r = self.store.request(w.LOCAL_GET, {"ids": [ids[k] for k in mine], "timeout_ms": tms})
                pend = set(r.get("pending") or [])
                got = []
                for i, (k, o) in enumerate(zip(mine, r["objs"])):
                    if i in pend or not o.get("id"):
                        continue
                    if o.get("path"):
                        out[k] = _serial.decode(o["fmt"], self._read_stored(o["id"], o, self.store.released))
                    else:
                        data = o.get("data") or b""
                        if len(data) < 65536 and o["id"] in self._local:
                            self._ready[o["id"]] = (o["fmt"], data)
                        out[k] = _serial.decode(o["fmt"], memoryview(data))
                        self._local_ids.discard(o["id"])  # given once: the head has it from now on
                    got.append(k)
                gone = {k for i, (k, o) in enumerate(zip(mine, r["objs"])) if i not in pend and not o.get("id")}
                mine = [k for i, k in enumerate(mine) if i in pend]
                need = [k for k in need if k not in got]
                # what is not kept here any more goes to the head (it has every value)
                for k in gone:
                    self._local_ids.discard(ids[k])
                if not mine:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise exc.GetTimeoutError(f"get timed out after {timeout}s: {len(mine)} object(s) not ready")
                if not blocked:
                    self.send(w.BLOCK, {"on": True})
                    blocked = True
        finally:
            if blocked:
                self.send(w.BLOCK, {"on": False})
        return need

    def cancel_local(self, oid, force, recursive):
        """Cancel a task this node's agent runs (LOCAL_CANCEL); False if it is not one."""
        self._settle_local()
        if oid not in self._local_ids:
            return False
        r = self.store.request(w.LOCAL_CANCEL, {"task": oid[:12] + b"\0\0\0\0", "force": bool(force),
                                                "recursive": bool(recursive)})
        return bool(r.get("known"))

    def is_ready_locally(self, oid):
        r = self._ready.get(oid)
        return r is not None

    def wait(self, refs, num_returns, timeout):
        ids = [r._id for r in refs]
        deadline = None if timeout is None else time.monotonic() + timeout
        ready = {i for i in ids if self.is_ready_locally(i)}
        if len(ready) < num_returns:
            mine = [i for i in ids if i in self._pending]
            others = [i for i in ids if i not in self._pending and i not in ready]
            if not others and self.role != "worker":
                self.pump(lambda: sum(1 for i in ids if self.is_ready_locally(i)) >= num_returns,
                          None if deadline is None else max(0.0, deadline - time.monotonic()))
                ready = {i for i in ids if self.is_ready_locally(i)}
            else:
                tms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
                need = max(0, num_returns - len(ready))
                ask = [i for i in ids if i not in ready]
                reply = self.request(w.WAIT, {"ids": ask, "num": min(need, len(ask)), "timeout_ms": tms})
                for k in reply.get("ready") or []:
                    ready.add(ask[k])
                ready |= {i for i in mine if self.is_ready_locally(i)}
        r, nr = [], []
        for ref in refs:
            (r if ref._id in ready and len(r) < num_returns else nr).append(ref)
        return r, nr

    # ---- tasks
    def submit(self, spec, nret, wait_ok=False, code=None):
        if self._local_ok and not wait_ok and _local_eligible(spec):
            refs = self._submit_local(spec, nret, code)
            if refs is not None:
                return refs
        tid = spec["task"]
        rets = [tid[:12] + _counter_fmt.pack(i + 1) for i in range(nret)]
        for r in rets:
            self._pending.add(r)
        if wait_ok:
            try:
                self.request(w.SUBMIT, spec)
            except Exception:
                for r in rets:
                    self._pending.discard(r)
                raise
        else:
            self.send(w.SUBMIT, spec)
        return [ObjectRef(r, self, _owned=True) for r in rets]

    def _submit_local(self, spec, nret, code):
        """Offer spec to this node's agent (LOCAL_SUBMIT, answered later: _settle_local); its
        return refs, or None when it cannot be offered (the caller sends it to the head node's
        agent, as before). The code goes to this node's agent once, and to the head with the
        first task of the function that it gets (_settle_local)."""
        fid = spec["fn"]
        if spec.get("fnb"):
            code = spec.pop("fnb")
            self._fns_sent.discard(fid)  # not sent to the head after all
        if code is None:
            return None
        body = spec
        if fid not in self._fns_local:
            body = dict(spec)
            body["fnb"] = code
            self._fns_local.add(fid)  # kept there whatever the answer
        tid = spec["task"]
        rets = [tid[:12] + _counter_fmt.pack(i + 1) for i in range(nret)]
        with self._local_lock:
            seq = self.store.post(w.LOCAL_SUBMIT, body)
            self._local_out.append((seq, spec, rets, code))
            for r in rets:
                self._pending.add(r)
                self._local_ids.add(r)
        return [ObjectRef(r, self, _owned=True) for r in rets]

    def _settle_local(self):
        """Take this node's agent's answers to the tasks offered to it: EXPECT (one message)
        for those it took, so the head keeps their references as after SUBMIT; SUBMIT to the
        head for those it did not. Runs before anything else goes to the head, which must know
        these ids first."""
        if not self._local_out:
            return
        with self._local_lock:
            out, self._local_out = self._local_out, []
            took, spilled = [], []
            for seq, spec, rets, code in out:
                if self.store.answer(seq).get("local"):
                    took.extend(rets)
                else:
                    if spec["fn"] not in self._fns_head:
                        spec["fnb"] = code  # (a task sent after it may carry the code too)
                        self._fns_sent.add(spec["fn"])
                    spilled.append((spec, rets))
            if took:
                self._send_head(w.EXPECT, {"ids": took, "node": self.store.welcome["node"]})
            for spec, rets in spilled:
                for r in rets:
                    self._local_ids.discard(r)
                self._send_head(w.SUBMIT, spec)

    def close(self):
        if self._closed:
            return
        try:
            self.flush()
        except OSError:
            pass
        self._closed = True
        self.conn.close()
        if self.store is not None:
            self.store.close()
        if self._arena is not None:
            try:
                self._arena.close()
            except Exception:
                pass


def _local_eligible(spec):
    """Whether this node's agent may run spec (nodeagent/memberlocal.go, eligible): a plain task
    of one CPU and one return value with no placement group, strategy, runtime environment,
    object argument or task feature."""
    if spec.get("kind") != w.KIND_TASK or spec.get("nret") != 1:
        return False
    if spec.get("deps") or spec.get("refs") or spec.get("argobj") or spec.get("renv"):
        return False
    if spec.get("pg") or spec.get("strategy") not in (None, "", "DEFAULT") or spec.get("labels"):
        return False
    if spec.get("gen") or spec.get("rexc") or spec.get("max_calls"):
        return False
    for k, v in (spec.get("res") or {}).items():
        if v and (k != "CPU" or v != 1):
            return False
    return True


def _error_from(body):
    code, msg = body.get("code"), body.get("msg", "")
    if code == "store_full":
        return exc.ObjectStoreFullError(msg)
    if code == "name_taken":
        return ValueError(msg)
    if code == "not_found":
        return ValueError(msg)
    if code == "value_error":
        return ValueError(msg)
    if code == "auth":
        return w.AuthError(msg)
    return exc.RaySystemError(f"{code}: {msg}")


def _all_left(ids, pending):
    """A condition for pump(): every id in ids has left pending. An id never comes back once it
    left, so the scan resumes where it stopped: linear in len(ids) over the whole wait, where
    scanning from the start at every frame was quadratic (a get of 20,000 refs while a million
    tasks were queued spent minutes in it, and the agent, unread, stopped sending)."""
    pos = 0

    def cond():
        nonlocal pos
        while pos < len(ids) and ids[pos] not in pending:
            pos += 1
        return pos == len(ids)
    return cond
