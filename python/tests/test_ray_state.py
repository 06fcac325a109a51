"""shoal.util.state as Ray documents ray.util.state (list_*, get_*, summarize_tasks; filters,
limit, detail; Ray's field names), and `shoal list` showing the same tables."""
import json
import os
import subprocess
import time

import pytest

from conftest import shoal_bin


@pytest.fixture(scope="module")
def st(ray):
    from shoal.util import state
    return state


def wait_for(pred, what, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_nodes(ray, st):
    (n,) = st.list_nodes()
    ctx = ray.get_runtime_context()
    assert n.node_id == ctx.get_node_id() == n["node_id"]
    assert n.state == "ALIVE" and n.is_head_node is True and n.node_ip
    assert n.resources_total["CPU"] == 4.0 and n.labels == {}
    assert n.start_time_ms is None  # a detail field: None unless detail=True, as in Ray's records
    d = st.get_node(n.node_id)
    assert d.start_time_ms > 0 and d.resources_available["CPU"] <= 4.0
    assert st.get_node("no-such-node") is None
    assert len(st.list_nodes(address="auto")) == 1
    with pytest.raises(ValueError, match="connect to the other one with init"):
        st.list_nodes(address="tcp:10.0.0.1:1234")


def test_actors_filters_and_detail(ray, st):
    @ray.remote(num_cpus=0.5)
    class Svc:
        def pid(self):
            return os.getpid()

    a = Svc.options(name="svc", namespace="state-ns").remote()
    b = Svc.remote()
    pid = ray.get(a.pid.remote(), timeout=60)
    ray.get(b.pid.remote(), timeout=60)
    mine = [x for x in st.list_actors(filters=[("class_name", "=", "Svc")])]
    assert len(mine) == 2
    (ra,) = st.list_actors(filters=[("name", "=", "svc")])
    assert ra.actor_id == a._actor_id.hex() and ra.state == "ALIVE" and ra.pid == pid
    assert ra.ray_namespace == "state-ns" and ra.node_id == ray.get_runtime_context().get_node_id()
    assert ra.job_id == ray.get_runtime_context().get_job_id()
    # every field of Ray's ActorState is there, None where shoal lacks it or detail would fill it
    assert {"serialized_runtime_env", "call_site", "num_restarts", "required_resources"} <= set(ra)
    assert ra.required_resources is None and ra.call_site is None
    (ct,) = st.list_tasks(filters=[("actor_id", "=", ra.actor_id), ("type", "=", "ACTOR_CREATION_TASK")])
    assert ct.name == "svc:Svc.__init__" and ct.func_or_class_name == "Svc.__init__" and ct.state == "FINISHED"
    # values compare as strings, case-insensitively; != excludes
    assert [x.actor_id for x in st.list_actors(filters=[("state", "=", "alive"), ("name", "=", "SVC")])] == [ra.actor_id]
    assert ra.actor_id not in [x.actor_id for x in st.list_actors(filters=[("name", "!=", "svc")])]
    assert st.list_actors(filters=[("pid", "=", pid)])[0].actor_id == ra.actor_id  # an int compares as its string
    ray.kill(b)
    db = wait_for(lambda: (st.get_actor(b._actor_id.hex()) or {}).get("state") == "DEAD" and st.get_actor(b._actor_id.hex()),
                  "the killed actor to be DEAD")
    assert db.death_cause and "kill" in db.death_cause["message"]
    assert db.required_resources == {"CPU": 0.5} and db.num_restarts == 0
    assert st.get_actor("00" * 16) is None
    with pytest.raises(st.RayStateApiException, match="available columns: actor_id"):
        st.list_actors(filters=[("no_such_column", "=", "x")])
    with pytest.raises(st.RayStateApiException, match="use = or !="):
        st.list_actors(filters=[("state", ">", "x")])
    with pytest.raises(ValueError, match="column, predicate, value"):
        st.list_actors(filters=[("state", "ALIVE")])
    s = st.summarize_actors()["cluster"]
    assert s["summary"]["Svc"]["state_counts"] == {"ALIVE": 1, "DEAD": 1}


def test_tasks_running_finished_failed(ray, st):
    @ray.remote
    def child():
        time.sleep(30)

    @ray.remote
    def parent():
        return ray.get(child.remote())

    @ray.remote
    def ok(x):
        return x

    @ray.remote(max_retries=0)
    def bad():
        raise ValueError("no")

    ray.get([ok.remote(i) for i in range(3)], timeout=60)
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(bad.remote(), timeout=60)
    p = parent.remote()
    kid = wait_for(lambda: st.list_tasks(filters=[("func_or_class_name", "=", child._name), ("state", "=", "RUNNING")]),
                   "the child task to run")[0]
    assert kid.parent_task_id == p.task_id().hex()
    assert kid.worker_pid and kid.node_id and kid.type == "NORMAL_TASK" and kid.language == "PYTHON"
    # the parent waits in get() for its child (its GET may reach the agent just after the child started)
    par = wait_for(lambda: (lambda t: t if t.state == "RUNNING_IN_RAY_GET" else None)(st.get_task(p)),
                   "the parent to wait in get()")
    assert par.task_id == p.task_id().hex()
    assert par.required_resources == {"CPU": 1.0}  # get_task gives every field
    finished = st.list_tasks(filters=[("func_or_class_name", "=", ok._name)])
    assert len(finished) == 3 and {t.state for t in finished} == {"FINISHED"}
    (failed,) = st.list_tasks(filters=[("func_or_class_name", "=", bad._name)])
    assert failed.state == "FAILED" and failed.error_type
    summary = st.summarize_tasks()["cluster"]
    assert summary["summary"][ok._name]["state_counts"] == {"FINISHED": 3}
    assert summary["summary"][bad._name]["state_counts"] == {"FAILED": 1}
    assert summary["total_tasks"] >= 6 and summary["summary_by"] == "func_name"
    with pytest.warns(UserWarning, match="not shown because of the limit"):
        assert len(st.list_tasks(limit=1)) == 1
    ray.cancel(p, force=True)


def test_workers_objects_and_placement_groups(ray, st):
    from shoal.util.placement_group import placement_group, remove_placement_group

    drivers = st.list_workers(filters=[("worker_type", "=", "DRIVER"), ("pid", "=", os.getpid())])
    assert [d.worker_id for d in drivers] == [ray.get_runtime_context().get_worker_id()]

    @ray.remote
    def whoami():
        return ray.get_runtime_context().get_worker_id(), os.getpid()

    wid, wpid = ray.get(whoami.remote(), timeout=60)
    w = st.get_worker(wid)
    assert w.pid == wpid and w.worker_type == "WORKER" and w.is_alive is True

    big = ray.put(b"x" * (1 << 20))
    o = wait_for(lambda: st.list_objects(filters=[("object_id", "=", big.hex())]), "the put object")[0]
    assert o.object_size >= 1 << 20 and o.reference_type == "LOCAL_REFERENCE"
    assert o.type == "DRIVER" and o.pid == os.getpid() and o.node_id == ray.get_runtime_context().get_node_id()

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="pair")
    assert pg.wait(30)
    (g,) = st.list_placement_groups(filters=[("name", "=", "pair")])
    assert g.placement_group_id == pg.id.hex() and g.state == "CREATED"
    d = st.get_placement_group(pg.id.hex())
    assert [b["unit_resources"] for b in d.bundles] == [{"CPU": 1.0}, {"CPU": 1.0}]
    assert all(b["node_id"] == ray.get_runtime_context().get_node_id() for b in d.bundles)
    remove_placement_group(pg)
    wait_for(lambda: st.get_placement_group(pg.id.hex()).state == "REMOVED", "the group to be REMOVED")


def test_cli_shoal_list(ray, st):
    @ray.remote
    class Listed:
        def ping(self):
            return 1

    a = Listed.options(name="listed").remote()
    ray.get(a.ping.remote(), timeout=60)
    cid = ray.init(ignore_reinit_error=True)["cluster_id"]

    def shoal(*args):
        return subprocess.run([shoal_bin(), "list", *args, "--cluster", cid], capture_output=True, text=True, timeout=60)

    r = shoal("actors", "--filter", "class_name=Listed", "--json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["actor_id"] == a._actor_id.hex() and row["name"] == "listed" and row["state"] == "ALIVE"
    assert "required_resources" not in row
    r = shoal("actors", "--filter", "class_name=Listed", "--detail", "--json")
    assert "required_resources" in json.loads(r.stdout)[0]
    r = shoal("actors", "--filter", "name!=listed", "--json")
    assert a._actor_id.hex() not in r.stdout
    r = shoal("nodes")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:4] == ["NODE_ID", "NODE_IP", "IS_HEAD_NODE", "STATE"]
    r = shoal("tasks", "--limit", "1")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2 and "showing 1 of" in r.stderr
    for kind in ("objects", "placement-groups", "workers", "jobs"):
        r = shoal(kind, "--json")
        assert r.returncode == 0 and isinstance(json.loads(r.stdout), list), (kind, r.stderr)
    r = shoal("actors", "--filter", "state")
    assert r.returncode == 2 and "COLUMN=VALUE" in r.stderr
    r = shoal("actors", "--filter", "colour=red")
    assert r.returncode == 1 and "available columns" in r.stderr
    r = subprocess.run([shoal_bin(), "list", "gadgets"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pick one of actors" in r.stderr
