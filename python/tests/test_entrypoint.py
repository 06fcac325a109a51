"""The `shoal` console entry point (shoal/__main__.py, also `python -m shoal`): it execs the
binary beside the package with the same arguments and exit status, and says what to do when
the package has none. The wheel's end-to-end check is scripts/check-release.sh."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

PKG = os.path.join(ROOT, "python", "shoal")
BIN = os.path.join(PKG, "bin", "shoal")


def run(args, pythonpath, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-m", "shoal"] + args, env=env, capture_output=True, text=True,
                          timeout=60, **kw)


@pytest.mark.skipif(not os.access(BIN, os.X_OK), reason="python/shoal/bin/shoal is not built (make build)")
def test_execs_the_packaged_binary(tmp_path):
    want = subprocess.run([BIN, "--version"], capture_output=True, text=True, check=True).stdout
    got = run(["--version"], os.path.join(ROOT, "python"), cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want and want.startswith("shoal version ")
    # the binary's own exit status and stderr come through: an unknown command
    bad = run(["no-such-command"], os.path.join(ROOT, "python"), cwd=tmp_path)
    direct = subprocess.run([BIN, "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == direct.returncode != 0
    assert bad.stderr == direct.stderr


def test_no_binary_says_what_to_do(tmp_path):
    # a copy of the package without bin/, as an install from source without a build would be
    shutil.copytree(PKG, tmp_path / "shoal", ignore=shutil.ignore_patterns("bin", "__pycache__"))
    got = run(["--version"], str(tmp_path), cwd=tmp_path)
    assert got.returncode == 127
    assert str(tmp_path / "shoal" / "bin" / "shoal") in got.stderr
    assert "pip install shoal" in got.stderr and "make build" in got.stderr
