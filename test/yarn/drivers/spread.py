# A driver for the YARN tests: runs tasks until every container's agent has run one, and prints
# the containers ("CONTAINERS ..."), as seen by the tasks themselves (CONTAINER_ID).
import os
import time

import shoal

shoal.init()
want = int(os.environ["SHOAL_YARN_CONTAINERS"])
members = [n["NodeID"] for n in shoal.nodes() if n["Alive"] and n["NodeID"].startswith("container_")]
print("NODES", len(members), flush=True)


@shoal.remote(num_cpus=1)
def where():
    time.sleep(1.0)
    return os.environ.get("CONTAINER_ID", "?")


seen = set()
for _ in range(5):
    seen |= set(shoal.get([where.remote() for _ in range(2 * (want + 1))]))
    if set(members) <= seen:
        break
print("CONTAINERS", " ".join(sorted(seen)), flush=True)
