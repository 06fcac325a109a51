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
    assert len([e for e in trace["traceEvents"] if e["ph"] == "X"]) >= len(x)
    rep = out["report"]
    assert rep["tasks"] == 5 and rep["tasks_failed"] == 1 and rep["actor_calls"] == 1 and rep["nodes"] == 1
    assert "job report" not in r.stderr  # --quiet


def test_timeline_when_observability_is_off():
    r = run_script("import shoal\nshoal.init()\ntry:\n    shoal.timeline()\nexcept Exception as e:\n    print('refused:', e)\n",
                   env={"SHOAL_OBSERVABILITY": "off"})
    assert r.returncode == 0, r.stderr
    assert "refused:" in r.stdout and "observability is off" in r.stdout
