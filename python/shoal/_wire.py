"""The shoal wire protocol (docs/protocol.md), Python side: framing, TLS, handshake, message types."""
import hashlib
import hmac
import os
import select
import socket
import ssl
import struct
import threading
import time

import msgpack

PROTO = 3
MAX_FRAME = 256 << 20
PRE_AUTH_MAX = 16 << 10  # the largest frame read before the agent has proved it knows the secret
HANDSHAKE_TIMEOUT = 10.0
INLINE_MAX = 100 << 10
NONCE_SIZE = 32
CLIENT_LABEL = b"shoal/2 client"
SERVER_LABEL = b"shoal/2 server"

ERROR, HELLO, AUTH, WELCOME, OK = 0, 1, 2, 3, 4
PUT, CREATE, SEAL, GET, WAIT, DECREF, INCREF, RELEASE, READY = 10, 11, 12, 13, 14, 15, 16, 17, 18
SUBMIT, KILL, GET_ACTOR, CANCEL = 20, 21, 22, 23
EXEC, DONE = 30, 31
ACTOR_EXIT, TERMINATE = 32, 33  # an actor ends on purpose; the agent asks it to (docs/ray-actors.md)
GEN_ITEM, TASK_CANCEL = 34, 35  # a streamed generator yield (w→s); an actor call cancelled (s→w) (docs/ray-tasks.md)
INFO, PG_CREATE, PG_REMOVE = 40, 41, 42
STATE_LIST, CONTEXT = 47, 48  # the state API and get_runtime_context (docs/ray-introspection.md)
OBSERVE, LOG = 46, 44  # recordings of the head node's agent; a member's worker lines (docs/observability.md)
SHUTDOWN = 50
PUT_PART, READ_PART = 51, 52  # objects in parts for clients without a store (nodeagent/remote_driver.go)
FETCH, PUT_AT = 80, 81  # object transfer between nodes (docs/object-transfer.md)
LOCAL_SUBMIT, LEASE_NEXT, EXPECT = 24, 25, 26  # member-local scheduling (wire/local.go, docs/architecture.md)
LOCAL_GET, BLOCK, LOCAL_CANCEL, LOCAL_FORGET = 29, 36, 37, 38

FMT_RAW, FMT_PYTHON, FMT_MSGPACK, FMT_ERROR = 0, 1, 2, 3
KIND_TASK, KIND_ACTOR_CREATE, KIND_ACTOR_METHOD = 0, 1, 2
KIND_LEASE = 3  # a worker leased to its node's agent, which sends it tasks (LEASE_NEXT)

_hdr = struct.Struct(">I")


class ProtocolError(ConnectionError):
    """The peer broke the protocol or closed the connection."""


class Closed(ProtocolError):
    """The peer closed the connection."""


class Dropped(ProtocolError):
    """The agent closed the connection before its first message (an agent under a flood of
    unauthenticated connections drops some in their handshake); connect() tries again."""


class AuthError(ConnectionError):
    """The cluster refused our secret, or the server did not prove it knows it."""


def encode(t, seq, body):
    b = msgpack.packb([t, seq, body], use_bin_type=True)
    return _hdr.pack(len(b)) + b


def proof(secret, label, client_nonce, server_nonce, binding):
    """One side's proof in the handshake: HMAC-SHA256 under the cluster secret over the label,
    both nonces and the TLS channel binding, each length-prefixed (wire.Proof in Go)."""
    m = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    for f in (label, client_nonce, server_nonce, binding):
        m.update(_hdr.pack(len(f)))
        m.update(f)
    return m.digest()


def parse_frame(payload):
    """Decode a frame's payload (without its length) into [type, seq, body]; anything that
    does not follow the protocol is a ProtocolError."""
    try:
        msg = msgpack.unpackb(payload, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise ProtocolError(f"corrupt frame: {e}") from None
    if not isinstance(msg, list) or len(msg) != 3:
        raise ProtocolError("corrupt frame: not a 3-element array")
    t, seq = msg[0], msg[1]
    if type(t) is not int or not 0 <= t <= 255:
        raise ProtocolError("corrupt frame: message type is not a small unsigned integer")
    if type(seq) is not int or seq < 0:
        raise ProtocolError("corrupt frame: sequence number is not an unsigned integer")
    return msg


def tls_context():
    """The client side of shoal's TLS (docs/security.md, "Encryption"): TLS 1.3, the server's
    certificate not checked against a CA; the handshake's proofs bind it instead."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


class _TLS:
    """A TLS client session over a connected socket, run through memory BIOs so that one thread
    may read while others send: the SSL object is only touched under `lock`, and ciphertext
    reaches the socket in order under `wlock` (taken before `lock`)."""

    def __init__(self, sock):
        self.sock = sock
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = tls_context().wrap_bio(self.inc, self.out, server_side=False)
        self.lock = threading.Lock()
        self.wlock = threading.Lock()
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = sock.recv(1 << 16)
                if not data:
                    raise ProtocolError("the peer closed the connection during the TLS handshake")
                self.inc.write(data)
        self._flush()
        # tls-server-end-point: SHA-256 of the certificate the server presented
        self.binding = hashlib.sha256(self.obj.getpeercert(binary_form=True) or b"").digest()

    def _flush(self):
        out = self.out.read()
        if out:
            self.sock.sendall(out)

    def sendall(self, data):
        view = memoryview(data)
        with self.wlock:
            for i in range(0, len(view), 1 << 20):
                with self.lock:
                    self.obj.write(view[i:i + (1 << 20)])
                    out = self.out.read()
                self.sock.sendall(out)

    def recv(self, n):
        while True:
            with self.lock:
                try:
                    return self.obj.read(n)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLZeroReturnError:
                    return b""
            if self.out.pending:  # the read made something to send (a key update)
                with self.wlock:
                    with self.lock:
                        out = self.out.read()
                    if out:
                        self.sock.sendall(out)
            data = self.sock.recv(1 << 18)
            if not data:
                return b""
            with self.lock:
                self.inc.write(data)

    def recv_nowait(self, n):
        """What plaintext has arrived, reading the socket at most once and only when it is
        readable: b"" at the end of the stream, None when nothing whole is there yet."""
        with self.lock:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return b""
        if not select.select([self.sock], [], [], 0)[0]:
            return None
        data = self.sock.recv(1 << 18)
        if not data:
            return b""
        with self.lock:
            self.inc.write(data)
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                return None
            except ssl.SSLZeroReturnError:
                return b""


class Conn:
    """A framed connection (TLS on TCP). send() is called under the caller's lock; recv() by one
    reader. `sock` is the socket itself: its timeout bounds recv()."""

    def __init__(self, sock, tls=None):
        self.sock = sock
        self._tls = tls
        self.binding = tls.binding if tls else b""
        self.limit = MAX_FRAME
        self._buf = bytearray()
        self._pos = 0

    @classmethod
    def dial(cls, address, timeout=HANDSHAKE_TIMEOUT):
        """Connect to an agent; TCP addresses run in TLS. The socket keeps `timeout` until
        handshake() ends."""
        if address.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = address[5:]
        elif address.startswith("tcp:"):
            host, _, port = address[4:].rpartition(":")
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = (host.strip("[]"), int(port))
        else:
            raise ValueError(f"shoal address {address!r}: want unix:/path or tcp:host:port")
        s.settimeout(timeout)
        try:
            s.connect(target)
        except OSError as e:
            s.close()
            raise ConnectionError(f"connect to shoal agent at {address}: {e} (is the cluster running? check SHOAL_ADDRESS)") from e
        tls = None
        if address.startswith("tcp:"):
            try:
                tls = _TLS(s)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ProtocolError) as e:
                s.close()
                raise Dropped(f"the shoal agent at {address} closed the connection in the TLS handshake: {e}") from e
            except (OSError, ssl.SSLError) as e:
                s.close()
                raise ConnectionError(f"TLS handshake with the shoal agent at {address}: {e} (is a shoal agent of the same version listening there?)") from e
        return cls(s, tls)

    def send(self, data):
        if self._tls:
            self._tls.sendall(data)
        else:
            self.sock.sendall(data)

    def _read_some(self):
        if self._tls:
            return self._tls.recv(1 << 18)
        return self.sock.recv(1 << 18)

    def _buffered(self):
        """The next frame if the buffer holds all of it, else None."""
        avail = len(self._buf) - self._pos
        if avail >= 4:
            (n,) = _hdr.unpack_from(self._buf, self._pos)
            if n > self.limit:
                raise ProtocolError(f"corrupt frame: length {n} over the {self.limit}-byte limit (is the peer speaking the shoal protocol?)")
            if avail >= 4 + n:
                start = self._pos + 4
                payload = bytes(self._buf[start:start + n]) if n < 4096 else memoryview(self._buf)[start:start + n].tobytes()
                self._pos = start + n
                if self._pos == len(self._buf):
                    self._buf.clear()
                    self._pos = 0
                return parse_frame(payload)
        if self._pos > (1 << 20):
            del self._buf[:self._pos]
            self._pos = 0
        return None

    def recv(self):
        """Read one frame: [type, seq, body]."""
        while True:
            f = self._buffered()
            if f is not None:
                return f
            chunk = self._read_some()
            if not chunk:
                raise Closed("the shoal agent closed the connection")
            self._buf += chunk

    def recv_nowait(self):
        """The next frame if it has arrived whole, else None; never waits for the peer (the
        socket is read at most once, and only when it is readable)."""
        f = self._buffered()
        if f is not None:
            return f
        if self._tls:
            chunk = self._tls.recv_nowait(1 << 18)
        elif select.select([self.sock], [], [], 0)[0]:
            chunk = self.sock.recv(1 << 18)
        else:
            chunk = None
        if chunk is None:
            return None
        if not chunk:
            raise Closed("the shoal agent closed the connection")
        self._buf += chunk
        return self._buffered()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def handshake(conn, secret, role, lang="python", worker_id="", sys_path=None, exe=None, ns=""):
    """The client side of the handshake (docs/protocol.md): prove we know the secret, then
    check that the agent proved it too, on this connection, before believing anything it sent.
    Returns (HELLO, WELCOME)."""
    conn.limit = PRE_AUTH_MAX
    try:
        t, _, hello = conn.recv()
    except (Closed, ConnectionResetError, BrokenPipeError) as e:
        raise Dropped(f"the shoal agent closed the connection before its HELLO: {e}") from e
    if t != HELLO or not isinstance(hello, dict):
        raise ProtocolError(f"expected HELLO from the agent, got message type {t}")
    if hello.get("proto") != PROTO:
        raise ProtocolError(f"the agent speaks shoal protocol {hello.get('proto')}, this SDK {PROTO}; "
                            "use the same shoal version on both sides")
    sn = hello.get("nonce")
    if not isinstance(sn, bytes) or len(sn) != NONCE_SIZE:
        raise ProtocolError("corrupt HELLO: the nonce is not 32 bytes")
    cn = os.urandom(NONCE_SIZE)
    auth = encode(AUTH, 0, {
        "proto": PROTO, "nonce": cn, "proof": proof(secret, CLIENT_LABEL, cn, sn, conn.binding),
        "role": role, "lang": lang, "pid": os.getpid(), "exe": exe or "", "path": sys_path or [],
        "cwd": os.getcwd(), "worker_id": worker_id, "job": "", "ns": ns or "",
    })
    if len(auth) - 4 > PRE_AUTH_MAX:
        raise ConnectionError(f"the AUTH message is {len(auth) - 4} bytes, over the {PRE_AUTH_MAX}-byte limit "
                              "before authentication; shorten sys.path (PYTHONPATH) or the working directory")
    conn.send(auth)
    t, _, body = conn.recv()
    if not isinstance(body, dict):
        raise ProtocolError(f"corrupt answer to AUTH (message type {t})")
    if t == ERROR:
        if body.get("code") == "auth":
            raise AuthError(body.get("msg"))
        raise ConnectionError(f"the shoal agent refused the connection: {body.get('msg')}")
    if t != WELCOME:
        raise ProtocolError(f"expected WELCOME, got message type {t}")
    got = body.get("proof")
    if not isinstance(got, bytes) or not hmac.compare_digest(got, proof(secret, SERVER_LABEL, cn, sn, conn.binding)):
        raise AuthError("the agent did not prove it knows this cluster's secret on this connection: "
                        "SHOAL_ADDRESS points at another cluster, or something between us is posing as it")
    conn.limit = MAX_FRAME
    conn.sock.settimeout(None)
    return hello, body


_RETRIES = (0.05, 0.2, 0.5, 1.0)


def connect(address, secret, role, **kw):
    """Dial address and run the handshake; a connection the agent dropped before its first
    message is tried again a few times. Returns (conn, HELLO, WELCOME)."""
    for wait in _RETRIES + (None,):
        try:
            conn = Conn.dial(address)
        except Dropped:
            if wait is None:
                raise
            time.sleep(wait)
            continue
        try:
            hello, welcome = handshake(conn, secret, role, **kw)
            return conn, hello, welcome
        except Dropped:
            conn.close()
            if wait is None:
                raise
            time.sleep(wait)
        except BaseException:
            conn.close()
            raise
