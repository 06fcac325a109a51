"""Ray's init() keywords beyond shoal's own: applied to the cluster init() starts, refused when
they cannot apply, and a keyword init() does not know is a TypeError (none is accepted and
ignored)."""
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, shoal_bin

import shoal


def _driver(code, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID")}
    e["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + e.get("PYTHONPATH", "")
    e["SHOAL_BIN"] = shoal_bin()
    e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env=e)


def test_unknown_and_refused_keywords_raise_before_anything_starts():
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_cpu'"):
        shoal.init(num_cpu=2)
    with pytest.raises(ValueError, match="local_mode=True"):
        shoal.init(local_mode=True)
    with pytest.raises(ValueError, match="_system_config"):
        shoal.init(_system_config={"x": 1})
    with pytest.raises(ValueError, match="logging_level"):
        shoal.init(logging_level="loud")
    assert not shoal.is_initialized()


def test_dashboard_port_and_temp_dir_reach_the_cluster_init_starts(tmp_path):
    r = _driver(f"""
        import logging, shoal
        shoal.init(num_cpus=1, dashboard_port=0, _temp_dir={str(tmp_path)!r}, logging_level=logging.DEBUG,
                   local_mode=False, _system_config=None)
        print("LEVEL", logging.getLogger("shoal").level)
        print("SESSION", shoal.get_runtime_context().get_dashboard_url() or "-")
        shoal.shutdown()
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LEVEL 10" in r.stdout  # configure_logging (default True): the shoal logger at DEBUG
    # the session directory was made under _temp_dir
    assert any(p.name.startswith("shoal-") for p in tmp_path.iterdir()), list(tmp_path.iterdir())


def test_include_dashboard_false_serves_no_page():
    r = _driver("""
        import shoal
        shoal.init(num_cpus=1, include_dashboard=False)
        print("URL", shoal.get_runtime_context().get_dashboard_url() or "none")
        shoal.shutdown()
        shoal.init(num_cpus=1)
        print("URL2", "served" if shoal.get_runtime_context().get_dashboard_url() else "none")
        shoal.shutdown()
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "URL none" in r.stdout and "URL2 served" in r.stdout, r.stdout


def test_cluster_keywords_are_refused_when_joining_a_running_cluster():
    up = subprocess.run([shoal_bin(), "up", "--num-cpus", "1"], capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    env = {}
    for word in shlex.split(up.stdout.replace(";", " ")):
        k, eq, v = word.partition("=")
        if eq and k.startswith("SHOAL_"):
            env[k] = v
    try:
        r = _driver("""
            import shoal
            try:
                shoal.init(dashboard_port=8265)
            except ValueError as e:
                print("REFUSED", e)
            shoal.init(include_dashboard=True, logging_level="info")
            print("JOINED", shoal.cluster_resources()["CPU"])
        """, **env)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "REFUSED init(dashboard_port=...) sets up a cluster init() starts" in r.stdout, r.stdout
        assert "JOINED 1.0" in r.stdout, r.stdout
    finally:
        subprocess.run([shoal_bin(), "down", "--cluster", env.get("SHOAL_CLUSTER_ID", "")], capture_output=True, timeout=60)
