"""The workload of test/obs/*.sh, run as the driver of a shoal cluster: five tasks, an actor
with three calls, a placement group and a failing task; then it runs the checker given on its command line with
the cluster in its environment, while the cluster is still up, and exits with its status. With
OBS_LATE_SIGNAL set, it submits one more task (late_task) once the checker creates that file."""
import os
import subprocess
import sys
import time

import shoal

shoal.init()


@shoal.remote
def square(x):
    print(f"square of {x}", flush=True)
    return x * x


@shoal.remote
def boom():
    raise ValueError("boom on purpose")


@shoal.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        print(f"counter at {self.n}", flush=True)
        return self.n


assert shoal.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
c = Counter.options(name="obs-counter").remote()
assert shoal.get([c.incr.remote() for _ in range(3)]) == [1, 2, 3]
pg = shoal.util.placement_group([{"CPU": 0.5}], strategy="SPREAD", name="obs-group")
shoal.get(pg.ready())
try:
    shoal.get(boom.remote())
    sys.exit("boom() did not fail")
except Exception:
    pass
signal = os.environ.get("OBS_LATE_SIGNAL")
if not signal:
    sys.exit(subprocess.call(sys.argv[1:]))


@shoal.remote
def late_task():
    return 1


# the checker looks at the cluster first; when it has, one more task, which it then must see
checker = subprocess.Popen(sys.argv[1:])
while checker.poll() is None and not os.path.exists(signal):
    time.sleep(0.05)
if checker.poll() is None:
    assert shoal.get(late_task.remote()) == 1
sys.exit(checker.wait())
