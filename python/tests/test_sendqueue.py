"""The agent's send queue to a client is bounded (docs/protocol.md): a client that does not read
is disconnected. A Python driver reads only while a call waits, so while it submits it takes in
what has arrived, without waiting, every 32 messages."""
import select
import time


def test_a_submitting_driver_takes_in_results_without_get(ray):
    from shoal import _client
    c = _client.current()

    @ray.remote
    def one():
        return 1

    ref = one.remote()
    # nothing else is pushed to this driver: once its socket is readable, the READY is there
    deadline = time.monotonic() + 60
    while not select.select([c.conn.sock], [], [], 0.1)[0]:
        assert time.monotonic() < deadline, "the task's result never reached the driver's socket"
    assert ref._id not in c._ready

    @ray.remote
    def noop():
        return None

    refs = [noop.remote() for _ in range(64)]  # no get, no wait: only submissions
    assert ref._id in c._ready, "the driver did not take in the result while it submitted"
    assert ray.get(ref) == 1
    assert ray.get(refs) == [None] * 64


def test_recv_nowait_over_tls_never_waits():
    """Over TLS the non-waiting read gives None until a whole frame has arrived, then the frame."""
    import json
    import os
    import subprocess

    from shoal import _wire as w
    from conftest import shoal_bin
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_") or k == "SHOAL_TMPDIR"}
    p = subprocess.Popen([shoal_bin(), "serve", "--watch-stdin", "--num-cpus", "1", "--object-store-memory", str(64 << 20)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        info = json.loads(p.stdout.readline())
        c = w.Conn.dial(info["tcp"])
        w.handshake(c, info["secret"], "cli")
        assert c.recv_nowait() is None  # nothing asked, nothing there: no wait
        c.send(w.encode(w.INFO, 7, None))
        deadline = time.monotonic() + 30
        frame = None
        while frame is None:
            assert time.monotonic() < deadline, "INFO's answer never arrived"
            frame = c.recv_nowait()
            if frame is None:
                select.select([c.sock], [], [], 0.05)
        t, seq, body = frame
        assert (t, seq) == (w.OK, 7) and body["cluster"] == info["id"]
        assert c.recv_nowait() is None
        c.close()
    finally:
        p.stdin.close()
        p.wait(timeout=15)
        p.stdout.close()
