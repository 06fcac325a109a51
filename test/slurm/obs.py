"""The driver of test/slurm/obs.sh, run by `shoal launch` on node1 of the 3-node Slurm cluster:
a task on node2 and an actor on node3 that print, then checks of `shoal logs`, the timeline and
/metrics from inside the job; prints CHECK NAME True|False DETAIL lines."""
import json
import os
import subprocess
import time
import urllib.request

import shoal

shoal.init()
print("CLUSTER", os.environ["SHOAL_CLUSTER_ID"], flush=True)


def check(name, ok, detail=""):
    print(f"CHECK {name} {bool(ok)} {detail}", flush=True)


@shoal.remote(resources={"on_node2": 1})
def on2(x):
    print(f"task line on node2 x={x}", flush=True)
    return os.environ.get("SLURMD_NODENAME")


@shoal.remote(resources={"on_node3": 1})
class Talker:
    def say(self, i):
        print(f"actor line on node3 i={i}", flush=True)
        return os.environ.get("SLURMD_NODENAME")


refs = [on2.remote(i) for i in range(3)]
nodes = shoal.get(refs)
t = Talker.options(name="talker").remote()
anodes = shoal.get([t.say.remote(i) for i in range(2)])
check("placement", nodes == ["node2"] * 3 and anodes == ["node3"] * 2, f"{nodes} {anodes}")
time.sleep(1.5)  # the member agents' LOG frames and a heartbeat reach the head


def shoal_cli(*args):
    return subprocess.run(["shoal", *args], capture_output=True, text=True, timeout=30)


task_id = refs[1].hex()[:24] + "00000000"  # a return value is its task id with index 1
r = shoal_cli("logs", "--task", task_id)
check("logs_task_on_member", r.stdout.strip().startswith("(on2 pid=") and r.stdout.strip().endswith("node=node2) task line on node2 x=1")
      and len(r.stdout.strip().splitlines()) == 1, repr(r.stdout + r.stderr))
r = shoal_cli("logs", "--actor", "talker")
lines = r.stdout.strip().splitlines()
check("logs_actor_on_member", len(lines) == 2 and all(l.startswith("(Talker.say pid=") and "node=node3) actor line on node3 i=" in l
                                                      for l in lines), repr(r.stdout + r.stderr))
r = shoal_cli("logs", "--node", "node2")
check("logs_node", len(r.stdout.strip().splitlines()) == 3 and "node3" not in r.stdout, repr(r.stdout))

r = shoal_cli("timeline", "-o", "/dev/stdout")
ev = [e for e in json.loads(r.stdout)["traceEvents"] if e["ph"] == "X"]
where = sorted((e["args"]["function"], e["args"]["node"], e["args"]["state"]) for e in ev)
want = sorted([("on2", "node2", "FINISHED")] * 3 + [("Talker", "node3", "FINISHED")] + [("Talker.say", "node3", "FINISHED")] * 2)
check("timeline_every_task_with_its_node", where == want, str(where))

d = json.loads(shoal_cli("dashboard", "--json").stdout)
req = urllib.request.Request(d["url"] + "metrics", headers={"Authorization": "Bearer " + d["token"]})
m = urllib.request.urlopen(req, timeout=10).read().decode()
up = [l for l in m.splitlines() if l.startswith("shoal_node_up{")]
beats = {l.split('"')[1]: float(l.split()[-1]) for l in m.splitlines() if l.startswith("shoal_node_heartbeats_total{")}
check("metrics_members", len(up) == 3 and all(l.endswith(" 1") for l in up) and set(beats) == {"node2", "node3"}
      and all(v >= 1 for v in beats.values()), f"{up} {beats}")
