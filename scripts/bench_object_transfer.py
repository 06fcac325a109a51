"""shoal's object transfer between two nodes, for scripts/bench-object-transfer.sh (run under
`srun shoal launch` with per-node resources on_nodeN): arrays made on node2 and read by the
driver on node1; only the ray.get is timed (the producer has finished before). Prints
"RESULT <case> <bytes> <GB/s median> <runs>"."""
import os
import statistics
import sys
import time

import numpy as np

import shoal as ray

ray.init()
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


@ray.remote(num_cpus=1, resources={"on_node2": 1})
def produce(nbytes):
    return np.ones(nbytes // 8, dtype=np.int64)


def case(name, nobj, nbytes):
    rates = []
    for _ in range(REPS):
        refs = [produce.remote(nbytes) for _ in range(nobj)]
        ray.wait(refs, num_returns=nobj)
        t0 = time.perf_counter()
        got = ray.get(refs)
        dt = time.perf_counter() - t0
        assert all(int(g[-1]) == 1 and g.nbytes == nbytes for g in got)
        rates.append(nobj * nbytes / dt / 1e9)
        del got, refs
    print(f"RESULT {name} {nobj * nbytes} {statistics.median(rates):.3f} {len(rates)}", flush=True)


case("one_1gib", 1, 1 << 30)
case("four_256mib_at_once", 4, 256 << 20)
