"""The memory monitor (nodeagent/memmon.go) on a one-node `shoal run` cluster: a task that
allocates past its memory= request is stopped alone and, after its retries, fails with
OutOfMemoryError naming it and what it used; its neighbours finish; an actor over its request
is restarted; --memory-monitor-interval 0 turns the monitor off."""
from conftest import run_script

SCRIPT = r'''
import os, sys, time
import shoal
shoal.init()
D = sys.argv[1] if len(sys.argv) > 1 else os.environ["MM_DIR"]

@shoal.remote(memory=64 << 20, max_retries=1)
def hog():
    open(os.path.join(D, f"try.{os.getpid()}"), "w").close()
    b = bytearray(400 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    time.sleep(3)
    return len(b)

@shoal.remote(memory=64 << 20)
def modest(i):
    b = bytearray(8 << 20)
    return i + len(b)

@shoal.remote(memory=64 << 20, max_restarts=1)
class Big:
    def __init__(self):
        open(os.path.join(D, f"actor.{os.getpid()}"), "w").close()
    def grow(self):
        self.b = bytearray(400 << 20)
        for i in range(0, len(self.b), 4096):
            self.b[i] = 1
        time.sleep(3)
        return len(self.b)

refs = [modest.remote(i) for i in range(4)]
try:
    print("HOG finished", shoal.get(hog.remote(), timeout=120))
except shoal.exceptions.OutOfMemoryError as e:
    print("HOG OutOfMemoryError", str(e).replace("\n", " "))
print("MODEST", shoal.get(refs, timeout=60) == [i + (8 << 20) for i in range(4)])
print("TRIES", len([f for f in os.listdir(D) if f.startswith("try.")]))
if os.environ.get("MM_ACTOR") == "1":
    a = Big.remote()
    try:
        shoal.get(a.grow.remote(), timeout=60)
        print("ACTOR grew")
    except shoal.exceptions.RayActorError as e:
        time.sleep(1)
        print("ACTOR died", type(e).__name__)
    for _ in range(100):
        if len([f for f in os.listdir(D) if f.startswith("actor.")]) >= 2:
            break
        time.sleep(0.1)
    print("ACTOR incarnations", len([f for f in os.listdir(D) if f.startswith("actor.")]))
'''


def test_task_over_its_memory_fails_with_out_of_memory_after_its_retry(tmp_path):
    r = run_script(SCRIPT, "--num-cpus", "2", "--memory", "4g", env={"MM_DIR": str(tmp_path), "MM_ACTOR": "1"})
    out = r.stdout
    assert r.returncode == 0, r.stdout + r.stderr
    hog = [l for l in out.splitlines() if l.startswith("HOG ")]
    assert hog and hog[0].startswith("HOG OutOfMemoryError"), out + r.stderr[-2000:]
    assert "hog" in hog[0] and "MiB" in hog[0] and "memory=" in hog[0], hog[0]
    assert "TRIES 2" in out, out           # max_retries=1: the first run and one retry
    assert "MODEST True" in out, out       # the neighbours under their request finished
    assert "ACTOR died" in out and "ACTOR incarnations 2" in out, out  # restarted once, then over again


def test_monitor_off_lets_the_task_finish(tmp_path):
    r = run_script(SCRIPT, "--num-cpus", "2", "--memory", "4g", "--memory-monitor-interval", "0", env={"MM_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "HOG finished 419430400" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "TRIES 1" in r.stdout, r.stdout
