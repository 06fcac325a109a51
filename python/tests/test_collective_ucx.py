"""shoal.collective over the UCX backend (rdma/ucx, libucp opened at run time) across actors of
a real `shoal run` cluster: allreduce, allgather and broadcast give the reference results over
connections that are all UCX ones. SHOAL_UCX=on lets UCX run on a node without an RDMA port
(it then uses its tcp and shared-memory transports); workers do not inherit SHOAL_* variables,
so the actor sets it before the collective library loads. UCX does not encrypt, so it is offered
only on an insecure data plane: the cluster runs with SHOAL_INSECURE_DATA_PLANE=1 (without it the
group is refused, which test_ucx_refused_on_an_encrypted_data_plane checks)."""
import ctypes.util
import json
import os

import pytest

from conftest import ROOT, run_script

LIB = os.path.join(ROOT, "python", "shoal", "bin", "libshoalcoll.so")
pytestmark = [
    pytest.mark.skipif(not os.path.exists(LIB), reason="libshoalcoll.so is not built (make build)"),
    pytest.mark.skipif(ctypes.util.find_library("ucp") is None, reason="UCX (libucx0) is not installed"),
]

SCRIPT = r'''
import json, os
import numpy as np
import shoal
from shoal import collective as col

@shoal.remote(num_cpus=0)
class Rank:
    def run(self, rank, n):
        os.environ["SHOAL_UCX"] = "on"
        os.environ["UCX_TLS"] = "tcp,shm"
        col.init_group(n, rank, group_name="u", backend="ucx", timeout=60)
        a = (np.arange(300001, dtype=np.float32) % 13) * (rank + 1)
        col.allreduce(a, group_name="u", op="sum")
        g = np.empty((n, 1001), dtype=np.int64)
        col.allgather(g, np.full(1001, rank, dtype=np.int64), group_name="u")
        b = np.arange(7, dtype=np.float64) if rank == 0 else np.zeros(7)
        col.broadcast(b, src_rank=0, group_name="u")
        col.destroy_group("u")
        return a.tolist()[:50], g[:, 0].tolist(), b.tolist()

shoal.init()
n = 3
ranks = [Rank.remote() for _ in range(n)]
res = shoal.get([r.run.remote(i, n) for i, r in enumerate(ranks)], timeout=120)
want = ((np.arange(50, dtype=np.float32) % 13) * sum(range(1, n + 1))).tolist()
ok = all(a == want and g == list(range(n)) and b == list(range(7)) for a, g, b in res)
print(json.dumps({"ok": ok}))
'''


def test_collectives_over_ucx():
    p = run_script(SCRIPT, "--num-cpus", "4",
                   env={"SHOAL_UCX": "on", "UCX_TLS": "tcp,shm", "SHOAL_INSECURE_DATA_PLANE": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {"ok": True}, p.stdout


def test_ucx_refused_on_an_encrypted_data_plane():
    p = run_script(SCRIPT, "--num-cpus", "4", env={"SHOAL_UCX": "on", "UCX_TLS": "tcp,shm"})
    assert p.returncode != 0
    assert "does not encrypt" in p.stderr and "--insecure-data-plane" in p.stderr, p.stderr[-3000:]
