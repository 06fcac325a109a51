"""Smoke test of the benchmarks: a tiny run of python/shoal/bench.py and of `shoal bench core`.
The figures are not checked, only that each named metric comes out as a positive number."""
import json
import os
import re
import subprocess
import sys

from conftest import ROOT, shoal_bin

ROW = re.compile(r"^(\S+)\s+([\d,]+(?:\.\d+)?)\s")


def _env():
    e = dict(os.environ)
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID"):
        e.pop(k, None)
    e["SHOAL_BIN"] = shoal_bin()
    e["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + e.get("PYTHONPATH", "")
    return e


def _rates(stdout):
    out = {}
    for line in stdout.splitlines():
        m = ROW.match(line)
        if m:
            out[m.group(1)] = float(m.group(2).replace(",", ""))
    return out


def test_bench_module_starts_its_own_cluster(tmp_path):
    # No SHOAL_ADDRESS: shoal.init() starts a local cluster for the run.
    names = ["single_client_tasks_sync", "single_client_put_calls"]
    js = tmp_path / "b.json"
    p = subprocess.run([sys.executable, "-m", "shoal.bench", "--only", ",".join(names), "--duration", "0.5",
                        "--trials", "2", "--json", str(js)],
                       capture_output=True, text=True, timeout=120, env=_env(), cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    rates = _rates(p.stdout)
    for n in names:
        assert rates.get(n, 0) > 0, p.stdout
    report = json.loads(js.read_text())
    assert report["backend"] == "shoal" and not report["errors"]
    assert {r["name"] for r in report["results"]} == set(names)
    assert all(r["value"] > 0 and len(r["trials"]) == 2 for r in report["results"])


def test_bench_core_command_runs_inside_shoal_run(tmp_path):
    js = tmp_path / "core.json"
    p = subprocess.run([shoal_bin(), "bench", "core", "--only", "1_1_actor_calls_sync,idle_rss_mib,run_true_seconds",
                        "--duration", "0.5", "--trials", "2", "--startup-runs", "2", "--json", str(js)],
                       capture_output=True, text=True, timeout=120, env=_env(), cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    rates = _rates(p.stdout)
    for n in ("1_1_actor_calls_sync", "idle_rss_mib", "run_true_seconds"):
        assert rates.get(n, 0) > 0, p.stdout
    report = json.loads(js.read_text())
    assert report["results"][0]["name"] == "1_1_actor_calls_sync"
    assert report["startup"]["idle_rss_mib"]["value"] > 0
    assert report["startup"]["run_true_seconds"]["value"] > 0


def test_unknown_metric_is_a_usage_error():
    p = subprocess.run([sys.executable, "-m", "shoal.bench", "--only", "no_such_metric"],
                       capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT)
    assert p.returncode == 2 and "no_such_metric" in p.stderr
