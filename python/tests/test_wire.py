"""The Python SDK's side of the wire protocol: the handshake's proofs, TLS on TCP against a real
agent, a man in the middle refused, and the frame reader fed hostile bytes (the committed corpus
under testdata/fuzz_wire plus seeded mutations of it; fuzz_wire.py runs atheris on the same
targets)."""
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import threading

import pytest

from shoal import _wire as w

from conftest import ROOT, shoal_bin

sys.path.insert(0, os.path.dirname(__file__))
import fuzz_wire  # noqa: E402

SECRET = "0123456789abcdef" * 4


def test_proof_matches_go():
    # wire/golden_test.go pins the same value
    got = w.proof(SECRET, w.CLIENT_LABEL, bytes(range(32)), bytes(0x80 + i for i in range(32)), b"binding")
    assert got.hex() == "ddd091896f59544fa48e42e631d051948828a99159f7df399e86fc24c2a96f70"


def _corpus():
    out = []
    d = fuzz_wire.CORPUS
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out.append(f.read())
    assert out, f"no fuzz corpus in {d}"
    return out


def _mutations(data, rnd, n):
    for _ in range(n):
        b = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            op = rnd.randrange(4)
            if op == 0 and b:
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            elif op == 1 and b:
                del b[rnd.randrange(len(b)):]
            elif op == 2:
                i = rnd.randrange(len(b) + 1)
                b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
            elif op == 3 and len(b) >= 4:
                i = rnd.randrange(0, len(b) - 3)
                b[i:i + 4] = rnd.choice([b"\xff\xff\xff\xff", b"\x10\x00\x00\x00", b"\x00\x00\x40\x01"])
        yield bytes(b)


@pytest.mark.parametrize("target", [fuzz_wire.read_frames, fuzz_wire.client_handshake])
def test_hostile_bytes_give_clean_errors(target):
    rnd = random.Random(12)
    for data in _corpus():
        target(data)
        for m in _mutations(data, rnd, 300):
            target(m)  # raises only if something other than a clean protocol error came out


def test_oversized_frame_before_authentication():
    # a fake agent announcing a 256 MiB HELLO is refused at the length, before any allocation
    with pytest.raises(w.ProtocolError, match="over the 16384-byte limit"):
        fuzz_wire.handshake_on(b"\x10\x00\x00\x00" + b"\x00" * 64)


@pytest.fixture(scope="module")
def agent():
    """A local cluster (`shoal serve`) whose agent also listens on TCP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_") or k == "SHOAL_TMPDIR"}
    p = subprocess.Popen([shoal_bin(), "serve", "--watch-stdin", "--num-cpus", "2", "--object-store-memory", str(64 << 20)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    info = json.loads(p.stdout.readline())
    assert info["tcp"].startswith("tcp:")
    yield info
    p.stdin.close()
    p.wait(timeout=15)
    p.stdout.close()


def test_tls_handshake_with_agent(agent):
    c = w.Conn.dial(agent["tcp"])
    assert c._tls is not None and c._tls.obj.version() == "TLSv1.3"
    assert len(c.binding) == 32
    _, welcome = w.handshake(c, agent["secret"], "cli")
    assert welcome["node"]
    c.send(w.encode(w.INFO, 1, None))
    t, seq, body = c.recv()
    assert (t, seq) == (w.OK, 1) and body["cluster"] == agent["id"]
    c.close()


def test_wrong_secret_over_tls(agent):
    c = w.Conn.dial(agent["tcp"])
    with pytest.raises(w.AuthError, match="wrong secret"):
        w.handshake(c, "f" * 64, "cli")
    c.close()


def test_remote_driver_over_tls(agent):
    """A whole driver over tcp: tasks and objects while a reader thread and senders share the
    TLS session."""
    code = """
import shoal
shoal.init()
@shoal.remote
def f(x):
    return x * 2
import threading
out = []
def go(k):
    out.append(sum(shoal.get([f.remote(i) for i in range(k, k + 20)])))
ts = [threading.Thread(target=go, args=(k,)) for k in range(0, 80, 20)]
[t.start() for t in ts]; [t.join() for t in ts]
big = shoal.put(b"x" * (300 << 10))
assert shoal.get(big) == b"x" * (300 << 10)
print(sum(out))
"""
    env = dict(os.environ, SHOAL_ADDRESS=agent["tcp"], SHOAL_SECRET=agent["secret"],
               PYTHONPATH=os.path.join(ROOT, "python"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sum(2 * i for i in range(80)))


def _mitm_cert(tmp_path):
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=shoal"],
                   check=True, capture_output=True)
    return str(crt), str(key)


def test_man_in_the_middle_refused(agent, tmp_path):
    """A relay that terminates our TLS with its own certificate and opens its own to the agent
    sees plaintext, but our proof binds its certificate (the agent refuses it) and the agent's
    proof binds the agent's (we would refuse it)."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*_mitm_cert(tmp_path))
    ln = socket.create_server(("127.0.0.1", 0))
    host, port = agent["tcp"][4:].rsplit(":", 1)

    def relay():
        cs, _ = ln.accept()
        cs = sctx.wrap_socket(cs, server_side=True)
        us = w.tls_context().wrap_socket(socket.create_connection((host, int(port))))

        def pipe(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
        threading.Thread(target=pipe, args=(us, cs), daemon=True).start()
        pipe(cs, us)

    th = threading.Thread(target=relay, daemon=True)
    th.start()
    c = w.Conn.dial(f"tcp:127.0.0.1:{ln.getsockname()[1]}")
    with pytest.raises(w.AuthError):
        w.handshake(c, agent["secret"], "cli")
    c.close()
    ln.close()
