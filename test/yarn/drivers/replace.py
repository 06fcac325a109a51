# A driver for the YARN tests' lost-container case: it records the member containers in
# $MARK_DIR/members, waits until one of them is gone (the test kills its agent) and a new one
# has joined in its place, then runs tasks on every container and prints what happened.
import os
import time

import shoal

shoal.init()
want = int(os.environ["SHOAL_YARN_CONTAINERS"])
mark = os.environ["MARK_DIR"]


def members():
    return {n["NodeID"] for n in shoal.nodes() if n["Alive"] and n["NodeID"].startswith("container_")}


first = members()
with open(os.path.join(mark, "members.tmp"), "w") as f:
    f.write("\n".join(sorted(first)) + "\n")
os.rename(os.path.join(mark, "members.tmp"), os.path.join(mark, "members"))

deadline = time.time() + 120
while time.time() < deadline:
    now = members()
    if len(now) == want and now != first:
        break
    time.sleep(0.2)
now = members()
print("LOST", " ".join(sorted(first - now)), flush=True)
print("NEW", " ".join(sorted(now - first)), flush=True)


@shoal.remote(num_cpus=1)
def where():
    time.sleep(1.0)
    return os.environ.get("CONTAINER_ID", "?")


seen = set()
for _ in range(5):
    seen |= set(shoal.get([where.remote() for _ in range(2 * (want + 1))]))
    if now <= seen:
        break
print("CONTAINERS", " ".join(sorted(seen)), flush=True)
