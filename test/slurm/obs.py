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

# Kept on their node (docs/observability.md "Worker output"): each member's agent keeps its own
# workers' lines (its ring's figures come with its heartbeats) and the head holds none of them
# (the driver has read what it printed); `shoal logs --node node2` above got them from node2.
def gauges(text, name):
    out = {}
    for l in text.splitlines():
        if l.startswith(name + "{"):
            out[l.split('"')[1]] = float(l.split()[-1])
    return out


m = urllib.request.urlopen(req, timeout=10).read().decode()
kept, held = gauges(m, "shoal_log_lines"), gauges(m, "shoal_head_log_lines")
check("member_keeps_its_lines", kept.get("node2", 0) >= 3 and kept.get("node3", 0) >= 2
      and held.get("node2") == 0 and held.get("node3") == 0, f"kept {kept} held at the head {held}")


# The page's worker logs come from the member too (the head asks node2's agent).
preq = urllib.request.Request(d["url"] + "api/logs?node=node2", headers={"Authorization": "Bearer " + d["token"]})
page = urllib.request.urlopen(preq, timeout=10).read().decode()
check("page_logs_of_member", "node=node2) task line on node2 x=0" in page and "node3" not in page, repr(page[-300:]))


# A member's bound (shoal launch --log-lines 50, given to members by the head): a task printing
# past it leaves the newest 50 lines, and `shoal logs` says how many its node dropped.
@shoal.remote(resources={"on_node2": 1})
def chatty(n):
    for i in range(n):
        print(f"bound line {i}", flush=True)


cref = chatty.remote(120)
shoal.get(cref)
time.sleep(1.5)  # node2's heartbeat carries its ring's figures
r = shoal_cli("logs", "--task", cref.hex()[:24] + "00000000")
lines = r.stdout.strip().splitlines()
said = [l for l in r.stderr.splitlines() if "node node2 dropped" in l]
ndropped = int(said[0].split("dropped ")[1].split()[0]) if said else 0
check("member_ring_bound", len(lines) == 50 and lines[0].endswith(") bound line 70") and lines[-1].endswith(") bound line 119")
      and ndropped >= 73, repr(r.stdout[-300:] + r.stderr))
m = urllib.request.urlopen(req, timeout=10).read().decode()
dropped = gauges(m, "shoal_log_dropped_lines_total")
check("member_ring_bound_metric", dropped.get("node2", 0) >= 73 and gauges(m, "shoal_log_lines").get("node2") == 50, str(dropped))
