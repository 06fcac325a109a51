"""An elastic gang (`shoal train --nnodes MIN:MAX`) within one cluster whose nodes come and go,
as a YARN job's do when a container is lost and its replacement joins: the gang shrinks when a
node is lost and grows back, at a checkpoint, when a node joins. The nodes are real agents on
this machine (shoal.cluster_utils.Cluster: `shoal serve` and `shoal join`), the training is
examples/train/elastic_numpy.py, whose weights must equal one process's at the end."""
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, shoal_bin

pytest.importorskip("numpy")


class _Output:
    """What shoal train prints, and what its ranks print: their lines reach the head node's
    stdout, which the Cluster copies to this process's (captured by capsys)."""

    def __init__(self, proc, capsys):
        self.proc, self.capsys, self.lines, self.ranks = proc, capsys, [], ""
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        self.reader.start()

    def text(self):
        self.ranks += self.capsys.readouterr().out
        return "".join(self.lines) + self.ranks

    def wait_for(self, pattern, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pattern in self.text():
                return
            if self.proc.poll() is not None:
                time.sleep(0.5)
                if pattern in self.text():
                    return
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {pattern!r} within {timeout}s (shoal train rc={self.proc.poll()}):\n" + self.text()[-5000:])


def test_elastic_gang_shrinks_when_a_node_is_lost_and_grows_back_when_one_joins(tmp_path, capsys):
    os.environ.setdefault("SHOAL_BIN", shoal_bin())
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID", "SHOAL_CLUSTER_FILE"):
        os.environ.pop(k, None)
    from shoal.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    proc = None
    try:
        a = cluster.add_node(num_cpus=1)
        b = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ck, state = tmp_path / "ck", tmp_path / "state"
        ck.mkdir()
        env = dict(os.environ, SHOAL_ADDRESS=cluster._info["address"], SHOAL_SECRET=cluster.secret,
                   PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.Popen(
            [shoal_bin(), "train", "--nnodes", "2:3", "--nproc-per-node", "1", "--max-restarts", "1", "--state-dir", str(state),
             "--", sys.executable, os.path.join(ROOT, "examples", "train", "elastic_numpy.py"), "--steps", "240",
             "--step-time", "0.05", "--ckpt-dir", str(ck), "--ckpt-every", "10"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(tmp_path))
        out = _Output(proc, capsys)
        out.wait_for("3 ranks running (attempt 0)")
        out.wait_for("RESUME rank=2 world=3 step=0")
        time.sleep(1.5)  # past a checkpoint or two
        cluster.remove_node(b, allow_graceful=False)  # b's agent and its rank are SIGKILLed
        out.wait_for("2 ranks running (attempt 1)")
        out.wait_for("RESUME rank=1 world=2")
        c = cluster.add_node(num_cpus=1)  # a replacement joins
        out.wait_for("3 ranks running (attempt 2)")
        rc = proc.wait(timeout=120)
        out.wait_for("FINAL world=3")
        out = out.text()
        assert rc == 0, out[-4000:]
        # the shrink was a restart after a failure (1 of 1); the growth is not one
        assert "elastic: 2 ranks instead of 3 on the nodes left" in out, out[-4000:]
        assert "elastic: the live nodes have room for 3 ranks, 2 run" in out, out[-4000:]
        assert "elastic: 3 ranks instead of 2 on the nodes there are now" in out, out[-4000:]
        # every rank of the grown gang stopped at one step, and the next attempt resumed there
        due = {l.split("step=")[1].split()[0] for l in out.splitlines() if "DUE rank=" in l and "world=2" in l}
        assert len(due) == 1, out[-4000:]
        step = due.pop()
        assert sum(f"RESUME rank={r} world=3 step={step} from={ck}/step{step}.npz" in out for r in range(3)) == 3, out[-4000:]
        assert "FINAL world=3 steps=240" in out and "agree=True" in out, out[-4000:]
        # the history says why each attempt ended
        hist = subprocess.run([shoal_bin(), "train", "history", "--state-dir", str(state)], capture_output=True, text=True,
                              timeout=30, env=env)
        assert hist.returncode == 0, hist.stderr
        assert "attempt 0: 3 ranks" in hist.stdout and "failed" in hist.stdout, hist.stdout
        assert "attempt 1: 2 ranks" in hist.stdout and ": grown" in hist.stdout, hist.stdout
        assert "attempt 2: 3 ranks" in hist.stdout and "completed" in hist.stdout, hist.stdout
        nodes = {a.node_id, c.node_id, cluster.head_node.node_id}
        assert all(n in out.split("3 ranks running (attempt 2)")[1].splitlines()[0] for n in nodes), out[-4000:]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cluster.shutdown()


def test_run_elastic_gang_grows_back_when_a_node_joins(tmp_path, capsys):
    # shoal.train.run(num_workers=(2, 3)) on a head of 1 CPU and one node of 1 CPU: 2 workers;
    # a node joins; the gang is asked for a checkpoint ("grow"), stops at one step and goes on
    # there with 3 workers, ending with one process's weights; max_failures=0: a growth is no failure
    os.environ.setdefault("SHOAL_BIN", shoal_bin())
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID", "SHOAL_CLUSTER_FILE"):
        os.environ.pop(k, None)
    examples = os.path.join(ROOT, "examples", "train")
    old_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = examples + os.pathsep + os.path.join(ROOT, "python") + (os.pathsep + old_path if old_path else "")
    sys.path.insert(0, examples)
    from shoal.cluster_utils import Cluster
    import shoal
    import shoal.train as st
    import elastic_numpy
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        shoal.init(address=cluster.address)
        ck, state = tmp_path / "ck", tmp_path / "state"
        ck.mkdir()
        joined = []

        def join_later():  # once the 2-worker gang has made progress
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(f.name.startswith("step") for f in ck.iterdir()):
                time.sleep(0.1)
            joined.append(cluster.add_node(num_cpus=1))
        t = threading.Thread(target=join_later, daemon=True)
        t.start()
        # 400 steps of 50 ms: room for the node's start, the controller's look (every 2 s), the
        # grow checkpoint and 3 workers' start before the end, also beside another pytest worker
        out = st.run(elastic_numpy.train, num_workers=(2, 3), max_failures=0, state_dir=str(state),
                     config={"ckpt_dir": str(ck), "steps": 400, "step_time": 0.05})
        t.join(10)
        err = capsys.readouterr().err
        assert out[0] == {"world": 3, "rel_diff": out[0]["rel_diff"]} and out[0]["rel_diff"] < 1e-9, (out, err[-3000:])
        assert out[1:] == [None, None], out
        assert "elastic: the cluster has room for 3 workers, 2 run" in err, err[-3000:]
        hist = subprocess.run([shoal_bin(), "train", "history", "--state-dir", str(state)], capture_output=True, text=True, timeout=30)
        assert hist.returncode == 0, hist.stderr
        assert "attempt 0: 2 ranks" in hist.stdout and ": grown" in hist.stdout, hist.stdout
        step = hist.stdout.split('{"reason":"grow","step":')[1].split("}")[0]  # the checkpoint asked for
        assert f"attempt 1: 3 ranks" in hist.stdout and f"from {ck}/step{step}.npz" in hist.stdout, hist.stdout
        assert "completed (exit 0)" in hist.stdout.split("attempt 1:")[1], hist.stdout
    finally:
        sys.path.remove(examples)
        if old_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_path
        shoal.shutdown()
        cluster.shutdown()
