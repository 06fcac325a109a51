"""iperf-style raw TCP between two network namespaces, for scripts/bench-object-transfer.sh:
`rawtcp.py recv HOST PORT BYTES` prints the receiver's GB/s (first byte to last), then the wall
clock times of its first and last byte (to add up parallel streams);
`rawtcp.py send HOST PORT BYTES` sends BYTES from one reused 8 MiB buffer."""
import socket
import sys
import time

BUF = 8 << 20


def main():
    mode, host, port, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if mode == "recv":
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen(1)
        print("listening", flush=True)
        c, _ = ls.accept()
        buf = memoryview(bytearray(BUF))
        got = c.recv_into(buf)
        t0, w0 = time.perf_counter(), time.time()
        while got < total:
            n = c.recv_into(buf, min(BUF, total - got))
            if n == 0:
                raise SystemExit(f"sender closed after {got} of {total} bytes")
            got += n
        dt = time.perf_counter() - t0
        c.sendall(b"k")
        print(f"{total / dt / 1e9:.3f} {w0:.6f} {w0 + dt:.6f}")
        return
    s = socket.create_connection((host, port))
    buf = memoryview(bytearray(b"\x5a" * BUF))
    sent = 0
    while sent < total:
        n = min(BUF, total - sent)
        s.sendall(buf[:n])
        sent += n
    s.recv(1)


main()
