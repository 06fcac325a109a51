# A driver for the YARN tests: runs tasks until every container's agent has run one, and prints
# what each container's workers were told of the data plane ("DATAPLANE <container> <value>",
# value "clear" when SHOAL_INSECURE_DATA_PLANE=1, else "tls"), so that the test sees
# `shoal yarn submit --insecure-data-plane` reach every container and its absence keep TLS.
import os
import time

import shoal

shoal.init()
members = [n["NodeID"] for n in shoal.nodes() if n["Alive"] and n["NodeID"].startswith("container_")]


@shoal.remote(num_cpus=1)
def where():
    time.sleep(0.5)
    return os.environ.get("CONTAINER_ID", "?"), "clear" if os.environ.get("SHOAL_INSECURE_DATA_PLANE") == "1" else "tls"


seen = {}
for _ in range(5):
    seen.update(dict(shoal.get([where.remote() for _ in range(2 * (len(members) + 1))])))
    if set(members) <= set(seen):
        break
for c in sorted(seen):
    print("DATAPLANE", c, seen[c], flush=True)
