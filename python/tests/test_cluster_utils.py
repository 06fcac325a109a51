"""shoal.cluster_utils.Cluster as Ray's ray.cluster_utils.Cluster is used in test suites: a head
and nodes added and removed at will, each a real agent process on this machine (the head is
`shoal serve`, the others `shoal join` members over loopback TCP with object stores of their
own); a driver connects with init(address=cluster.address)."""
import os

import pytest

from conftest import shoal_bin


@pytest.fixture
def cluster():
    os.environ.setdefault("SHOAL_BIN", shoal_bin())
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID", "SHOAL_CLUSTER_FILE"):
        os.environ.pop(k, None)
    from shoal.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    yield c
    import shoal
    shoal.shutdown()
    procs = [n.process for n in c.list_all_nodes()]
    c.shutdown()
    assert all(p.poll() is not None for p in procs), "every node's agent ends with the cluster"


def _alive(ray):
    return sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])


def test_nodes_tasks_and_objects_across_nodes(cluster):
    import shoal as ray
    a = cluster.add_node(num_cpus=1, resources={"left": 1})
    b = cluster.add_node(num_cpus=1, resources={"right": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    assert _alive(ray) == sorted([cluster.head_node.node_id, a.node_id, b.node_id])
    assert ray.cluster_resources()["CPU"] == 2  # the head offers none (num_cpus=0)

    @ray.remote(num_cpus=1)
    def where():
        return ray.get_runtime_context().get_node_id()

    @ray.remote(num_cpus=1)
    def make(n):
        return b"x" * n

    @ray.remote(num_cpus=1)
    def size(blob):
        return len(blob), ray.get_runtime_context().get_node_id()
    assert ray.get(where.options(resources={"left": 1}).remote()) == a.node_id
    assert ray.get(where.options(resources={"right": 1}).remote()) == b.node_id
    # an object made in node a's store, read by a task on node b and by the driver
    blob = make.options(resources={"left": 1}).remote(8 << 20)
    assert ray.get(size.options(resources={"right": 1}).remote(blob)) == (8 << 20, b.node_id)
    assert len(ray.get(blob)) == 8 << 20
    # a put from the driver reaches a task on a member node
    ref = ray.put(b"y" * (3 << 20))
    assert ray.get(size.options(resources={"left": 1}).remote(ref)) == (3 << 20, a.node_id)


def test_remove_and_add_nodes_while_connected(cluster):
    import shoal as ray
    a = cluster.add_node(num_cpus=1, resources={"gone": 1})
    cluster.wait_for_nodes()
    cluster.connect()

    @ray.remote(num_cpus=1)
    def where():
        return ray.get_runtime_context().get_node_id()

    @ray.remote(num_cpus=1)
    class Pinned:
        def node(self):
            return ray.get_runtime_context().get_node_id()
    @ray.remote(num_cpus=1)
    def make(n):
        return [ray.put(b"x" * n)]  # put by a worker of node a: in a's store, and no task makes it again
    actor = Pinned.options(resources={"gone": 1}).remote()
    assert ray.get(actor.node.remote()) == a.node_id
    from shoal.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    on_a = NodeAffinitySchedulingStrategy(a.node_id, soft=False)  # (the actor holds a's CPU)
    [blob] = ray.get(make.options(num_cpus=0, scheduling_strategy=on_a).remote(4 << 20))  # its only copy: a's store
    cluster.remove_node(a)
    assert a.node_id not in _alive(ray)
    assert "gone" not in ray.cluster_resources()
    # the actor died with its node
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actor.node.remote(), timeout=30)
    # an object whose only copy was on it is lost (Ray's ObjectLostError, not ObjectFreedError:
    # a reference to it is still held)
    with pytest.raises(ray.exceptions.ObjectLostError) as lost:
        ray.get(blob, timeout=30)
    assert not isinstance(lost.value, ray.exceptions.ObjectFreedError), lost.value
    # a task that needs the removed node's resource is infeasible: shoal fails it at once where
    # Ray would leave it pending for an autoscaler (README, "Differences from Ray")
    with pytest.raises(ray.exceptions.TaskUnschedulableError):
        ray.get(where.options(resources={"gone": 1}).remote(), timeout=30)
    # a node added now takes such tasks
    c = cluster.add_node(num_cpus=1, resources={"gone": 1})
    cluster.wait_for_nodes()
    assert ray.get(where.options(resources={"gone": 1}).remote(), timeout=60) == c.node_id
    assert sorted(_alive(ray)) == sorted([cluster.head_node.node_id, c.node_id])


def test_logical_gpus_and_refused_arguments(cluster):
    import shoal as ray
    g = cluster.add_node(num_cpus=1, num_gpus=2)
    ray.init(address=cluster.address)
    assert ray.cluster_resources()["GPU"] == 2

    @ray.remote(num_gpus=1)
    def gpu():
        return ray.get_runtime_context().get_node_id(), ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")
    node, ids, visible = ray.get(gpu.remote())
    assert node == g.node_id and len(ids) == 1 and visible == str(ids[0])
    with pytest.raises(ValueError, match="not supported by shoal's Cluster"):
        cluster.add_node(num_cpus=1, dashboard_port=8265)
    with pytest.raises(ValueError, match="is not a node of this cluster"):
        from shoal.cluster_utils import Node
        cluster.remove_node(Node("stranger", g.process, False, {}))
