import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def shoal_bin():
    b = os.environ.get("SHOAL_BIN") or os.path.join(ROOT, "bin", "shoal")
    if not os.access(b, os.X_OK):
        b = shutil.which("shoal")
    assert b, "build the shoal binary first (make build)"
    return b


@pytest.fixture(scope="module")
def ray():
    """A local cluster started by init(), shared by a test module."""
    os.environ.setdefault("SHOAL_BIN", shoal_bin())
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID"):
        os.environ.pop(k, None)
    import shoal
    shoal.init(num_cpus=4, object_store_memory=512 << 20)
    yield shoal
    shoal.shutdown()


def run_script(code, *shoal_args, timeout=120, env=None):
    """Run a Python script as the driver of a fresh `shoal run` cluster."""
    e = dict(os.environ)
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID"):
        e.pop(k, None)
    e["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + e.get("PYTHONPATH", "")
    if env:
        e.update(env)
    return subprocess.run([shoal_bin(), "run", *shoal_args, "--", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=timeout, env=e)
