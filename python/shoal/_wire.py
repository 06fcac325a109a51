"""The shoal wire protocol (docs/protocol.md), Python side: framing, handshake, message types."""
import hashlib
import hmac
import os
import socket
import struct

import msgpack

PROTO = 1
MAX_FRAME = 256 << 20
INLINE_MAX = 100 << 10

ERROR, HELLO, AUTH, WELCOME, OK = 0, 1, 2, 3, 4
PUT, CREATE, SEAL, GET, WAIT, DECREF, INCREF, RELEASE, READY = 10, 11, 12, 13, 14, 15, 16, 17, 18
SUBMIT, KILL, GET_ACTOR, CANCEL = 20, 21, 22, 23
EXEC, DONE = 30, 31
INFO, PG_CREATE, PG_REMOVE = 40, 41, 42
SHUTDOWN = 50
FETCH, PUT_AT = 80, 81  # object transfer between nodes (docs/object-transfer.md)

FMT_RAW, FMT_PYTHON, FMT_MSGPACK, FMT_ERROR = 0, 1, 2, 3
KIND_TASK, KIND_ACTOR_CREATE, KIND_ACTOR_METHOD = 0, 1, 2

_hdr = struct.Struct(">I")


class ProtocolError(ConnectionError):
    """The peer broke the protocol or closed the connection."""


class AuthError(ConnectionError):
    """The cluster refused our secret, or the server did not prove it knows it."""


def encode(t, seq, body):
    b = msgpack.packb([t, seq, body], use_bin_type=True)
    return _hdr.pack(len(b)) + b


def mac(secret, nonce, label):
    return hmac.new(secret.encode(), nonce + label.encode(), hashlib.sha256).digest()


class Conn:
    """A framed connection. send() is called under the caller's lock; recv() by one reader."""

    def __init__(self, sock):
        self.sock = sock
        self._buf = bytearray()
        self._pos = 0

    @classmethod
    def dial(cls, address):
        if address.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = address[5:]
        elif address.startswith("tcp:"):
            host, _, port = address[4:].rpartition(":")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = (host, int(port))
        else:
            raise ValueError(f"shoal address {address!r}: want unix:/path or tcp:host:port")
        try:
            s.connect(target)
        except OSError as e:
            s.close()
            raise ConnectionError(f"connect to shoal agent at {address}: {e} (is the cluster running? check SHOAL_ADDRESS)") from e
        return cls(s)

    def send(self, data):
        self.sock.sendall(data)

    def recv(self):
        """Read one frame: (type, seq, body)."""
        while True:
            avail = len(self._buf) - self._pos
            if avail >= 4:
                (n,) = _hdr.unpack_from(self._buf, self._pos)
                if n > MAX_FRAME:
                    raise ProtocolError(f"corrupt frame: length {n} over the limit")
                if avail >= 4 + n:
                    start = self._pos + 4
                    payload = bytes(self._buf[start:start + n]) if n < 4096 else memoryview(self._buf)[start:start + n].tobytes()
                    self._pos = start + n
                    if self._pos == len(self._buf):
                        self._buf.clear()
                        self._pos = 0
                    msg = msgpack.unpackb(payload, raw=False)
                    if not isinstance(msg, list) or len(msg) != 3:
                        raise ProtocolError("corrupt frame: not a 3-element array")
                    return msg
            if self._pos > (1 << 20):
                del self._buf[:self._pos]
                self._pos = 0
            chunk = self.sock.recv(1 << 18)
            if not chunk:
                raise ProtocolError("the shoal agent closed the connection")
            self._buf += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def handshake(conn, secret, role, lang="python", worker_id="", sys_path=None, exe=None):
    t, _, hello = conn.recv()
    if t != HELLO:
        raise ProtocolError(f"expected HELLO from the agent, got message type {t}")
    nonce = hello["nonce"]
    conn.send(encode(AUTH, 0, {
        "proto": PROTO, "mac": mac(secret, nonce, "shoal/1 client"), "role": role, "lang": lang,
        "pid": os.getpid(), "exe": exe or "", "path": sys_path or [], "cwd": os.getcwd(),
        "worker_id": worker_id, "job": "",
    }))
    t, _, body = conn.recv()
    if t == ERROR:
        if body.get("code") == "auth":
            raise AuthError(body.get("msg"))
        raise ConnectionError(f"the shoal agent refused the connection: {body.get('msg')}")
    if t != WELCOME:
        raise ProtocolError(f"expected WELCOME, got message type {t}")
    if not hmac.compare_digest(body.get("mac") or b"", mac(secret, nonce, "shoal/1 server")):
        raise AuthError("the agent does not know this cluster's secret: SHOAL_ADDRESS points at another cluster")
    return hello, body
