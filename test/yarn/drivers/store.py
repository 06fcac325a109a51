# A driver for the YARN tests: every member container has an object store of its own, as a Slurm
# member does (launcher.RunMember): its tasks put 8 MiB objects there, which the driver reads.
import os
import time

import shoal

shoal.init()
members = {n["NodeID"]: n["Resources"] for n in shoal.nodes() if n["Alive"] and n["NodeID"].startswith("container_")}
for m, res in sorted(members.items()):
    print("STORE", m, int(res.get("object_store_memory", 0)) >> 20, "MiB", flush=True)


@shoal.remote(num_cpus=1)
def make():
    time.sleep(0.5)
    return os.environ.get("CONTAINER_ID", "?"), shoal.put(os.environ.get("CONTAINER_ID", "?").encode() * (8 << 20 >> 6))


seen = {}
for _ in range(6):
    for c, ref in shoal.get([make.remote() for _ in range(2 * (len(members) + 1))]):
        if c in members and c not in seen:
            b = shoal.get(ref)
            seen[c] = len(b) if b.startswith(c.encode()) else -1
    if set(members) <= set(seen):
        break
for c, n in sorted(seen.items()):
    print("OBJECT", c, n, flush=True)
