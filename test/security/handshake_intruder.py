#!/usr/bin/env python3
"""The intruder's tools for test/security/handshake.sh: another user of the node (or a host on
the network) attacking an agent's TCP listener. Python's standard library only.

  flood HOST PORT SECONDS BIG IDLE   BIG connections that announce a 256 MiB frame before
                                     authenticating and stream junk into it, IDLE that never
                                     finish the handshake; each is reopened when the agent
                                     drops it, until SECONDS pass
  record LPORT HOST PORT DIR         relay one connection from LPORT to the agent, recording
                                     what each side sent (DIR/client, DIR/server)
  replay-client HOST PORT FILE       send an earlier client's bytes to the agent; prints
                                     "accepted" when a WELCOME comes back, else "refused"
  fake-agent LPORT FILE              answer one connection with an earlier agent's bytes
  mitm LPORT HOST PORT CERT KEY      relay one connection, terminating TLS with our own
                                     certificate when the agent speaks TLS; prints what it read

The agent speaks first (HELLO) on a plain connection and waits for a TLS ClientHello on an
encrypted one, so each tool finds out which it faces by waiting briefly for a HELLO."""
import os
import socket
import ssl
import struct
import sys
import threading
import time

WELCOME = 3


def tls_client():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def speaks_first(s, wait=0.5):
    """True when the peer sent something within wait seconds (a plaintext HELLO)."""
    s.settimeout(wait)
    try:
        return bool(s.recv(1, socket.MSG_PEEK))
    except (socket.timeout, BlockingIOError):
        return False
    finally:
        s.settimeout(None)


def open_session(host, port):
    """A connection to the agent as far as it lets a stranger go: TLS when it speaks TLS. The
    agent's HELLO is read. Returns the socket (maybe TLS)."""
    s = socket.create_connection((host, port), timeout=10)
    if not speaks_first(s):
        s = tls_client().wrap_socket(s)
    s.settimeout(10)
    n = struct.unpack(">I", recv_exact(s, 4))[0]
    recv_exact(s, n)
    return s


def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise ConnectionError("closed")
        b += c
    return bytes(b)


def flood(host, port, seconds, big, idle):
    end = time.monotonic() + seconds
    stats = {"big": 0, "idle": 0, "sent": 0}
    lock = threading.Lock()
    junk = b"\xa5" * 65536

    def big_one():
        while time.monotonic() < end:
            try:
                s = open_session(host, port)
                s.sendall(struct.pack(">I", 256 << 20))  # a 256 MiB frame, before AUTH
                with lock:
                    stats["big"] += 1
                for _ in range(16):  # 1 MiB of it
                    s.sendall(junk)
                    with lock:
                        stats["sent"] += len(junk)
                while time.monotonic() < end:  # hold it
                    s.settimeout(max(0.1, end - time.monotonic()))
                    if not s.recv(4096):
                        break
            except (OSError, ConnectionError, ValueError):
                time.sleep(0.05)

    def idle_one():
        while time.monotonic() < end:
            try:
                s = socket.create_connection((host, port), timeout=10)
                with lock:
                    stats["idle"] += 1
                s.settimeout(max(0.1, end - time.monotonic()))
                while time.monotonic() < end and s.recv(4096):  # never answer
                    pass
                s.close()
            except OSError:
                time.sleep(0.05)

    ts = [threading.Thread(target=big_one, daemon=True) for _ in range(big)]
    ts += [threading.Thread(target=idle_one, daemon=True) for _ in range(idle)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 15)
    print(f"flood: {stats['big']} connections announced 256 MiB frames ({stats['sent'] >> 20} MiB of junk sent), "
          f"{stats['idle']} idle connections", flush=True)


def pipe(a, b, log=None):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            if log is not None:
                log.append(d)
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def listen(lport):
    ln = socket.create_server(("127.0.0.1", lport))
    print("listening", flush=True)
    return ln


def record(lport, host, port, out):
    ln = listen(lport)
    c, _ = ln.accept()
    u = socket.create_connection((host, port))
    got_c, got_s = [], []
    t = threading.Thread(target=pipe, args=(u, c, got_s))
    t.start()
    pipe(c, u, got_c)
    t.join()
    with open(os.path.join(out, "client"), "wb") as f:
        f.write(b"".join(got_c))
    with open(os.path.join(out, "server"), "wb") as f:
        f.write(b"".join(got_s))


def frames(b):
    out = []
    while len(b) >= 4:
        n = struct.unpack(">I", b[:4])[0]
        if len(b) < 4 + n or n < 3:
            break
        out.append(b[4 + 1])  # [type, seq, body]: fixarray byte, then the type
        b = b[4 + n:]
    return out


def replay_client(host, port, path):
    data = open(path, "rb").read()
    for attempt in range(10):  # right after a flood a connect can meet the flood's own debris
        try:
            s = socket.create_connection((host, port), timeout=10)
            break
        except ConnectionRefusedError:
            if attempt == 9:
                raise
            time.sleep(0.5)
    s.sendall(data)
    got = b""
    s.settimeout(3)
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            got += c
    except OSError:
        pass
    print("accepted" if WELCOME in frames(got) else "refused", flush=True)


def fake_agent(lport, path):
    data = open(path, "rb").read()
    ln = listen(lport)
    c, _ = ln.accept()
    c.sendall(data)
    c.settimeout(5)
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass


def mitm(lport, host, port, cert, key):
    ln = listen(lport)
    c, _ = ln.accept()
    u = socket.create_connection((host, port))
    if speaks_first(u):
        mode = "plain"
    else:
        mode = "tls"
        u = tls_client().wrap_socket(u)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert, key)
        c = sctx.wrap_socket(c, server_side=True)
    seen = []
    t = threading.Thread(target=pipe, args=(u, c, seen))
    t.start()
    pipe(c, u, seen)
    t.join()
    data = b"".join(seen)
    print(f"mitm: relayed {mode}, read {len(data)} bytes in clear; cluster info seen: {b'nodes' in data}", flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "flood":
        flood(args[0], int(args[1]), float(args[2]), int(args[3]), int(args[4]))
    elif cmd == "record":
        record(int(args[0]), args[1], int(args[2]), args[3])
    elif cmd == "replay-client":
        replay_client(args[0], int(args[1]), args[2])
    elif cmd == "fake-agent":
        fake_agent(int(args[0]), args[1])
    elif cmd == "mitm":
        mitm(int(args[0]), args[1], int(args[2]), args[3], args[4])
    else:
        sys.exit(f"unknown command {cmd}")
