# A driver for the YARN security tests: hands the test the cluster's secret (a file of mode 0600
# in a directory only the test's user reads: the driver legitimately has it, as every shoal
# worker does), runs tasks until every container's agent has run one (so every member joined
# with the secret from its token file), prints "CONTAINERS ...", then holds the application
# running until the test creates the release file (at most 120 s), so the test can look at
# everything the containers left where others could see it.
import os
import sys
import time

import shoal

out, release = sys.argv[1], sys.argv[2]
fd = os.open(out + ".tmp", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
os.write(fd, os.environ["SHOAL_SECRET"].encode())
os.close(fd)
os.rename(out + ".tmp", out)

shoal.init()
want = int(os.environ["SHOAL_YARN_CONTAINERS"])


@shoal.remote(num_cpus=1)
def where():
    time.sleep(0.5)
    return os.environ.get("CONTAINER_ID", "?")


members = {n["NodeID"] for n in shoal.nodes() if n["Alive"] and n["NodeID"].startswith("container_")}
seen = set()
for _ in range(10):
    seen |= set(shoal.get([where.remote() for _ in range(2 * (want + 1))]))
    if members <= seen:
        break
print("CONTAINERS", " ".join(sorted(seen)), flush=True)
for _ in range(1200):
    if os.path.exists(release):
        break
    time.sleep(0.1)
