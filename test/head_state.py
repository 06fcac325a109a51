"""Driver for test/head_state.sh: a named actor, a placement group, an actor whose constructor
fails, and a killed actor; it prints `shoal status` while the cluster runs, then exits 3."""
import os
import subprocess
import sys

import shoal
from shoal.util.placement_group import placement_group, remove_placement_group

shoal.init()


@shoal.remote
class Counter:
    def __init__(self):
        self.n = 0

    def inc(self):
        self.n += 1
        return self.n


@shoal.remote
class Broken:
    def __init__(self):
        raise ValueError("constructor refused: bad config")

    def ping(self):
        return 1


c = Counter.options(name="counter", namespace="ns1").remote()
assert shoal.get(c.inc.remote()) == 1
same = shoal.get_actor("counter", namespace="ns1")  # reads the head's actor table
assert shoal.get(same.inc.remote()) == 2

pg = placement_group([{"CPU": 1}], strategy="PACK", name="gang")
shoal.get(pg.ready())
pg2 = placement_group([{"CPU": 1}], strategy="SPREAD", name="short")
shoal.get(pg2.ready())
remove_placement_group(pg2)

b = Broken.remote()
try:
    shoal.get(b.ping.remote())
    sys.exit("a method of an actor whose constructor failed returned")
except Exception as e:  # noqa: BLE001
    print("broken actor:", type(e).__name__)

k = Counter.options(name="victim").remote()
shoal.get(k.inc.remote())
shoal.kill(k)

print(subprocess.run([os.environ["SHOAL_BIN"], "status"], capture_output=True, text=True, check=True).stdout, flush=True)
sys.exit(3)
