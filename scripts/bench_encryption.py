"""The cost of encrypting the data plane, for scripts/bench-encryption.sh (run under `srun shoal
launch` on 2 nodes, with per-node resources on_nodeN, once with and once without
--insecure-data-plane). Object transfer: an array made on node2, ray.get by the driver on node1
(only the get is timed; the producer has finished before); median of REPS. Allreduce: `shoal
bench allreduce` with one rank on each node (TCP between them). Prints "OBJ <bytes> <GB/s>" and
"AR <bytes> <time_us> <busbw GB/s>" lines."""
import statistics
import subprocess
import sys
import time

import numpy as np

import shoal

REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SIZES = [1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20]


@shoal.remote(num_cpus=1, resources={"on_node2": 1})
def produce(nbytes):
    return np.ones(nbytes // 8, dtype=np.int64)


@shoal.remote(num_cpus=1)
def bench_rank(rank):
    out = subprocess.run(["shoal", "bench", "allreduce", "--rank", str(rank), "--size", "2",
                          "--min-bytes", "1MiB", "--max-bytes", "256MiB", "--step-factor", "4",
                          "--transport", "tcp", "--repeats", str(REPS)],
                         capture_output=True, text=True, timeout=900)
    return out.returncode, out.stdout, out.stderr


shoal.init()
for n in SIZES:
    rates = []
    for _ in range(REPS + 1):
        ref = produce.remote(n)
        shoal.wait([ref])
        t0 = time.perf_counter()
        got = shoal.get(ref)
        dt = time.perf_counter() - t0
        assert got.nbytes == n and int(got[-1]) == 1
        rates.append(n / dt / 1e9)
        del got, ref
    print(f"OBJ {n} {statistics.median(rates[1:]):.3f}", flush=True)  # the first run warms up

res = shoal.get([bench_rank.options(resources={"on_node1": 1}).remote(0),
                 bench_rank.options(resources={"on_node2": 1}).remote(1)], timeout=1200)
for rc, out, err in res:
    if rc != 0:
        print("AR-ERROR", rc, out, err, flush=True)
for line in res[0][1].splitlines():
    f = line.split()
    if len(f) == 4 and f[0].isdigit():
        print(f"AR {f[0]} {f[1]} {f[3]}", flush=True)
