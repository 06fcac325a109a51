"""shoal.timeline() and shoal.job_report() against a real `shoal run` cluster."""
import json
import os

from conftest import run_script

WORKLOAD = r"""
import json, sys, shoal
shoal.init()

@shoal.remote
def f(x):
    return x + 1

@shoal.remote
def bad():
    raise RuntimeError("no")

@shoal.remote
class A:
    def m(self):
        return 1

refs = [f.remote(i) for i in range(4)]
ids = sorted(r.hex()[:24] + "00000000" for r in refs)  # a return value is its task id with index 1
assert shoal.get(refs) == [1, 2, 3, 4]
a = A.remote()
shoal.get(a.m.remote())
try:
    shoal.get(bad.remote())
except Exception:
    pass
ev = shoal.timeline()
path = sys.argv[1]
assert shoal.timeline(path) is None
print(json.dumps({"events": ev, "ids": ids, "report": shoal.job_report()}))
"""


def test_timeline_and_report(tmp_path):
    path = str(tmp_path / "trace.json")
    r = run_script(WORKLOAD.replace("sys.argv[1]", repr(path)), "--quiet")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    x = [e for e in out["events"] if e["ph"] == "X"]
    fs = sorted(e["args"]["task_id"] for e in x if e["args"]["function"] == "f")
    assert fs == out["ids"], (fs, out["ids"])
    states = {(e["args"]["function"], e["args"]["state"]) for e in x}
    assert {("f", "FINISHED"), ("A", "FINISHED"), ("A.m", "FINISHED"), ("bad", "FAILED")} <= states
    for e in x:
        assert e["args"]["node"] and e["args"]["worker"] and e["dur"] >= 0
    with open(path) as fh:
        trace = json.load(fh)
    assert len([e for e in trace if e["ph"] == "X"]) >= len(x)  # a JSON array of events, as Ray writes it
    rep = out["report"]
    assert rep["tasks"] == 5 and rep["tasks_failed"] == 1 and rep["actor_calls"] == 1 and rep["nodes"] == 1
    assert "job report" not in r.stderr  # --quiet


def test_timeline_when_observability_is_off():
    r = run_script("import shoal\nshoal.init()\ntry:\n    shoal.timeline()\nexcept Exception as e:\n    print('refused:', e)\n",
                   env={"SHOAL_OBSERVABILITY": "off"})
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "observability is off" in r.stdout


COLL = r"""
import json, subprocess, urllib.request
import numpy as np
import shoal
from shoal import collective as col
shoal.init()

@shoal.remote(num_cpus=0)
class Rank:
    def run(self, rank):
        col.init_group(2, rank, group_name="m", timeout=60)
        a = np.ones(1000, dtype=np.float32)
        for _ in range(3):
            col.allreduce(a, group_name="m")
        col.barrier(group_name="m")
        col.destroy_group("m")
        return float(a[0])

rs = [Rank.remote() for _ in range(2)]
print("RESULT", shoal.get([r.run.remote(i) for i, r in enumerate(rs)]))
from shoal import _observe
d = _observe._observe("dashboard")
req = urllib.request.Request(d["url"] + "metrics", headers={"Authorization": "Bearer " + d["token"]})
import time
for _ in range(50):  # COLL_STATS is sent without an answer: it may trail destroy_group a little
    m = urllib.request.urlopen(req, timeout=10).read().decode()
    v = {l.split()[0]: float(l.split()[1]) for l in m.splitlines() if l.startswith("shoal_collective_")}
    if v.get('shoal_collective_operations_total{op="barrier"}') == 4:
        break
    time.sleep(0.1)
print("METRICS", json.dumps(v))
"""


def test_collective_metrics():
    if not os.path.exists(os.path.join(os.path.dirname(__file__), "..", "shoal", "bin", "libshoalcoll.so")):
        import pytest
        pytest.skip("libshoalcoll.so is not built (make build)")
    r = run_script(COLL, "--quiet", "--num-cpus", "2")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert "RESULT [8.0, 8.0]" in out, r.stdout
    v = json.loads(next(l for l in out if l.startswith("METRICS "))[8:])
    # two ranks, three allreduces of 4,000 bytes each and a barrier, plus the barrier that forms
    # the group (counted too: it is one)
    assert v['shoal_collective_operations_total{op="allreduce"}'] == 6, v
    assert v['shoal_collective_bytes_total{op="allreduce"}'] == 6 * 4000, v
    assert v['shoal_collective_operations_total{op="barrier"}'] == 4, v
    assert v['shoal_collective_operations_total{op="allgather"}'] == 0, v
