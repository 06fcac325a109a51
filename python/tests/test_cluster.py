"""Cluster information, placement groups and the failure modes a user can cause."""
import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import run_script


def test_cluster_resources_and_nodes(ray):
    res = ray.cluster_resources()
    assert res["CPU"] == 4.0 and res["object_store_memory"] == 512 << 20
    avail = ray.available_resources()
    assert 0 < avail["CPU"] <= 4.0
    nodes = ray.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"] and nodes[0]["Resources"]["CPU"] == 4.0
    assert ray.is_initialized()


def test_placement_group_pack_and_remove(ray):
    from shoal.util import placement_group, remove_placement_group
    from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    assert ray.get(pg.ready(), timeout=10)
    assert ray.available_resources().get("CPU", 0) <= 2.0

    @ray.remote(num_cpus=1)
    def where():
        return os.getpid()
    strat = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=1)
    assert ray.get(where.options(scheduling_strategy=strat).remote()) > 0
    remove_placement_group(pg)
    deadline = time.time() + 5
    while ray.available_resources().get("CPU", 0) < 4.0 and time.time() < deadline:
        time.sleep(0.05)
    assert ray.available_resources()["CPU"] == 4.0


def test_placement_group_spread_and_infeasible(ray):
    from shoal.util import placement_group, remove_placement_group
    pg = placement_group([{"CPU": 1}] * 2, strategy="SPREAD")
    assert pg.wait(10)
    remove_placement_group(pg)
    bad = placement_group([{"CPU": 1}] * 2, strategy="STRICT_SPREAD")   # needs 2 nodes
    with pytest.raises(ray.exceptions.RayError) as ei:
        ray.get(bad.ready(), timeout=10)
    assert "STRICT_SPREAD" in str(ei.value)
    with pytest.raises(ValueError):
        placement_group([{"CPU": 1}], strategy="DIAGONAL")


def test_wrong_secret_is_refused_and_cluster_keeps_serving(ray):
    import shoal._client as C
    from shoal import _wire
    addr = C._client.address
    with pytest.raises(_wire.AuthError) as ei:
        C.Client(addr, "0" * 64, role="driver")
    assert "wrong secret" in str(ei.value)

    @ray.remote
    def alive():
        return "yes"
    assert ray.get(alive.remote()) == "yes"


def test_garbage_frame_gets_an_error_and_cluster_keeps_serving(ray):
    import shoal._client as C
    path = C._client.address[len("unix:"):]
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.recv(4096)                               # HELLO
    s.sendall(struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")
    data = b""
    s.settimeout(5)
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert b"corrupt" in data
    s.close()
    assert ray.get(ray.put("fine")) == "fine"


def test_object_bigger_than_store_is_a_clear_error():
    r = run_script("""
import shoal as ray
ray.init()
try:
    ray.put(b"x" * (80 << 20))
except ray.exceptions.ObjectStoreFullError as e:
    print("FULL:", e)
print("after:", ray.get(ray.put(1)))
""", "--object-store-memory", str(64 << 20))
    assert r.returncode == 0, r.stderr
    assert "FULL:" in r.stdout and "larger than the object store" in r.stdout
    assert "after: 1" in r.stdout


def test_full_store_spills_instead_of_failing():
    r = run_script("""
import shoal as ray, numpy as np
import shoal._api as api
ray.init()
refs = [ray.put(np.full(3 << 20, i, dtype=np.int64)) for i in range(6)]   # 6 x 24 MiB into 64 MiB
print("sums:", [int(ray.get(r)[0]) for r in refs])
print("spilled:", api._info()["objects"]["spilled"])
""", "--object-store-memory", str(64 << 20))
    assert r.returncode == 0, r.stderr
    assert "sums: [0, 1, 2, 3, 4, 5]" in r.stdout
    spilled = int(r.stdout.split("spilled:")[1].split()[0])
    assert spilled >= 3


def test_driver_exit_without_shutdown_frees_its_objects(ray):
    import shoal._api as api
    before = api._info()
    code = ("import shoal, numpy as np; shoal.init();"
            "refs=[shoal.put(np.ones(1<<20)) for _ in range(4)];"
            "import os; os._exit(0)")
    env = dict(os.environ)
    import shoal._client as C
    env["SHOAL_ADDRESS"] = C._client.address
    env["SHOAL_SECRET"] = os.environ.get("SHOAL_SECRET_FOR_TESTS", "")
    # the fixture's secret is not in our environment: read it from the cluster's session dir
    info = api._local_cluster
    assert info is not None
    secret = _secret_of(C._client.cluster_id)
    env["SHOAL_SECRET"] = secret
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    deadline = time.time() + 5
    while time.time() < deadline:
        after = api._info()
        if after["objects"]["objects"] <= before["objects"]["objects"] and after["jobs"] == before["jobs"]:
            break
        time.sleep(0.05)
    assert after["objects"]["objects"] <= before["objects"]["objects"]
    assert after["jobs"] == before["jobs"]


def _secret_of(cluster_id):
    import glob
    for p in glob.glob(f"/tmp/shoal-{os.getuid()}/{cluster_id}/secret") + glob.glob(os.path.join(os.environ.get("SHOAL_TMPDIR", "/nonexistent"), f"shoal-{os.getuid()}", cluster_id, "secret")):
        return open(p).read().strip()
    raise AssertionError("no secret file for the test cluster")
