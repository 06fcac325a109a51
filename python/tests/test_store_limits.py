"""The object store's failure paths as a user meets them: a writer that dies between CREATE
and SEAL, a task retried after its worker died while writing its return value, many small
objects, and a store or spill directory on a tmpfs that fills up (issue 13)."""
import json
import os
import subprocess
import tempfile

import pytest

from conftest import run_script

# The task kills its own worker on the first attempt after it has written half of its large
# (shared-memory) return value: what the kernel's OOM killer does to a worker at the worst time.
RETRY_SCRIPT = r"""
import os, sys, numpy as np, shoal
shoal.init(address="auto")
marker = sys.argv[1] if len(sys.argv) > 1 else os.environ["MARKER"]

@shoal.remote(max_retries=2)
def make():
    import shoal._client as C
    first = not os.path.exists(marker)
    if first:
        open(marker, "w").close()
        orig = C.Client._write
        def half_then_die(self, path, offset, ser):
            fd = os.open(path, os.O_RDWR)
            os.pwrite(fd, b"\x93" * (ser.size // 2), offset)   # bytes that do not decode
            os.close(fd)
            os.kill(os.getpid(), 9)
        C.Client._write = half_then_die
    return np.arange(1 << 20, dtype=np.int64)   # 8 MiB: through CREATE, written in the arena

a = shoal.get(make.remote())
assert isinstance(a, np.ndarray), type(a)
assert a.shape == (1 << 20,) and int(a[-1]) == (1 << 20) - 1 and int(a.sum()) == ((1 << 20) - 1) * (1 << 19), "wrong bytes"
st = shoal._api._info()["objects"]
print("RESULT", json.dumps({"ok": True, "objects": st}))
""".replace("import os, sys", "import json, os, sys")


def test_retry_after_worker_died_mid_write_returns_the_result(tmp_path):
    marker = str(tmp_path / "first-attempt")
    r = run_script(RETRY_SCRIPT, "--num-cpus", "1", "--object-store-memory", str(64 << 20),
                   env={"MARKER": marker})
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.exists(marker), "the first attempt did not run"
    assert "RESULT" in r.stdout, r.stdout + r.stderr
