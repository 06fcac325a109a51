"""Tasks fanning out over every node of a Slurm allocation, an actor, and objects moving between
nodes, with the Ray-style API. Run by fanout.sbatch (`srun shoal launch -- python fanout.py`)."""
import os
import socket
import time

import shoal as ray

ray.init()
nodes = ray.nodes()
print(f"cluster: {len(nodes)} nodes, {ray.cluster_resources()['CPU']:g} CPUs")
print("node addresses:", sorted(n["NodeManagerAddress"] for n in nodes))


@ray.remote
def where(i):
    time.sleep(1.0)   # long enough that the tasks spread over the nodes while workers start there
    return i, os.environ["SHOAL_NODE_ID"]


n = int(ray.cluster_resources()["CPU"])
placed = ray.get([where.remote(i) for i in range(n)])
by_node = {}
for _, node in placed:
    by_node[node] = by_node.get(node, 0) + 1
print("tasks per node:", dict(sorted(by_node.items())))


@ray.remote
class Tally:
    def __init__(self):
        self.total = 0

    def add(self, x):
        self.total += x
        return self.total


t = Tally.remote()
print("actor total:", ray.get([t.add.remote(i) for i in range(10)])[-1])

big = ray.put(bytes(range(256)) * 4096)   # 1 MiB, read on whichever node a task lands


@ray.remote
def checksum(b):
    return sum(b) % 65521, os.environ["SHOAL_NODE_ID"]


sums = ray.get([checksum.remote(big) for _ in range(n)])
print("checksums agree:", len({s for s, _ in sums}) == 1, "on nodes", sorted({nd for _, nd in sums}))
print("driver ran on", os.environ.get("SLURMD_NODENAME"), "host", socket.gethostname())
