"""A Ray Core program, unchanged but for its import, running on a shoal cluster.

    shoal run -- python examples/python/demo.py      # or just: python examples/python/demo.py
"""
import time

import numpy as np

import shoal as ray

ray.init()
res = ray.cluster_resources()
print(f"cluster: {len(ray.nodes())} node(s), {res['CPU']:g} CPUs, "
      f"{res['object_store_memory'] / 2**30:.1f} GiB object store")


@ray.remote
def estimate_pi(seed, n=200_000):
    rng = np.random.default_rng(seed)
    x, y = rng.random(n), rng.random(n)
    return 4.0 * np.count_nonzero(x * x + y * y <= 1.0) / n


t = time.perf_counter()
estimates = ray.get([estimate_pi.remote(s) for s in range(32)])
print(f"tasks:  32 tasks estimated pi = {np.mean(estimates):.4f} in {time.perf_counter() - t:.2f}s")


@ray.remote
class Accumulator:
    def __init__(self):
        self.total = 0.0

    def add(self, x):
        self.total += x
        return self.total


acc = Accumulator.remote()
for e in estimates[:8]:
    acc.add.remote(e)
print(f"actor:  running total after 8 calls = {ray.get(acc.add.remote(0.0)):.4f}")

big = np.arange(32 << 20, dtype=np.float32)          # 128 MiB
t = time.perf_counter()
ref = ray.put(big)
view = ray.get(ref)
dt = time.perf_counter() - t
print(f"objects: put+get of a {big.nbytes >> 20} MiB array in {dt * 1000:.0f} ms, "
      f"zero-copy read-only view: {not view.flags.writeable}")


@ray.remote
def column_sum(a):
    return float(a.sum())


print(f"objects: a task summed the shared array: {ray.get(column_sum.remote(ref)):.3e}")

ready, pending = ray.wait([estimate_pi.remote(s, 10) for s in range(4)], num_returns=2)
print(f"wait:   {len(ready)} ready, {len(pending)} pending")
ray.shutdown()
print("done")
