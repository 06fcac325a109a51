"""Fuzz targets for the Python SDK's frame reader and handshake (hostile bytes from the agent
side). Run with atheris (pip install atheris):

    PYTHONPATH=python python python/tests/fuzz_wire.py CORPUS_COPY -max_total_time=60

(atheris adds what it finds to the directory: give it a copy of testdata/fuzz_wire, as `make fuzz`
does.)

test_wire.py replays the committed corpus and seeded mutations of it without atheris. A target
fails only when something other than a clean protocol error (ProtocolError, AuthError or
another ConnectionError) comes out."""
import os
import sys

from shoal import _wire as w

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata", "fuzz_wire")
SECRET = "0123456789abcdef" * 4


class _Sock:
    """What a socket gives the reader: data in small pieces, then EOF; sends are dropped."""

    def __init__(self, data):
        self.data = memoryview(data)

    def recv(self, n):
        n = min(n, 7, len(self.data))
        b, self.data = bytes(self.data[:n]), self.data[n:]
        return b

    def sendall(self, b):
        pass

    def settimeout(self, t):
        pass

    def close(self):
        pass


def read_frames(data):
    """Read frames until the data ends: only ProtocolError may come out, and a frame has the
    shape the SDK relies on."""
    for limit in (w.PRE_AUTH_MAX, w.MAX_FRAME):
        c = w.Conn(_Sock(data))
        c.limit = limit
        while True:
            try:
                t, seq, _ = c.recv()
            except w.ProtocolError:
                break
            assert type(t) is int and 0 <= t <= 255 and type(seq) is int and seq >= 0


def handshake_on(data):
    """The client handshake against an 'agent' that sends data."""
    return w.handshake(w.Conn(_Sock(data)), SECRET, "cli")


def client_handshake(data):
    try:
        handshake_on(data)
    except ConnectionError:  # ProtocolError and AuthError are ConnectionErrors
        return
    raise AssertionError("a handshake with an agent that does not know the secret succeeded")


def _one(data):
    read_frames(data)
    client_handshake(data)


def write_corpus():
    """Write the seed corpus (valid frames, a HELLO + WELCOME, an ERROR, oversized lengths)."""
    os.makedirs(CORPUS, exist_ok=True)
    hello = w.encode(w.HELLO, 0, {"proto": w.PROTO, "nonce": b"\x07" * 32, "cluster": "0123456789ab"})
    seeds = {
        "hello-welcome": hello + w.encode(w.WELCOME, 0, {"node": "n1", "client": b"12345678", "proof": b"\x09" * 32,
                                                         "arena": "/dev/shm/x", "arena_size": 1 << 30, "resources": {"CPU": 4.0}}),
        "hello-error": hello + w.encode(w.ERROR, 0, {"code": "auth", "msg": "authentication failed"}),
        "ready": w.encode(w.READY, 0, {"objs": [{"id": b"\x01" * 16, "fmt": 1, "data": b"x"}]}),
        "exec": w.encode(w.EXEC, 3, {"task": b"\x02" * 16, "kind": 0, "name": "f", "args": b"\x90", "nret": 1}),
        "ok-seq": w.encode(w.OK, 7, {"path": "/dev/shm/x", "offset": 4096}),
        "old-proto-hello": w.encode(w.HELLO, 0, {"proto": 1, "nonce": b"\x07" * 32, "cluster": "c"}),
        "len-256mib": b"\x10\x00\x00\x00\x93\x01\x00\xc0",
        "len-over-preauth": b"\x00\x00\x40\x01\x93\x01\x00\xc0",
        "not-array": b"\x00\x00\x00\x01\xc3",
        "map-list-key": b"\x00\x00\x00\x07\x93\x01\x00\x81\x91\x01\x01",
    }
    for name, b in seeds.items():
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(b)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-corpus"]:
        write_corpus()
        sys.exit(0)
    import atheris
    atheris.instrument_all()
    atheris.Setup(sys.argv, _one)
    atheris.Fuzz()
