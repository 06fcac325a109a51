"""shoal.train (Python) and `shoal train` (CLI) on real local clusters: the environment each rank
gets, results in rank order, restarts from the last reported checkpoint, the failing rank's exit
code and output, signals, and gangs the cluster cannot hold. The 3-node versions are in
test/slurm/train.sh."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_script, shoal_bin

from shoal import train as st


def test_layout_numbers_ranks_by_node_then_gpu():
    placed = [{"node": "n2", "gpus": [1]}, {"node": "n1", "gpus": [3]}, {"node": "n2", "gpus": [0]},
              {"node": "n1", "gpus": [2]}]
    got = [(r["actor"], r["node"], r["local_rank"], r["node_rank"], r["local_world_size"], r["node_gpus"])
           for r in st.layout(placed, ["n1", "n2"])]
    assert got == [(3, "n1", 0, 0, 2, [2, 3]), (1, "n1", 1, 0, 2, [2, 3]),
                   (2, "n2", 0, 1, 2, [0, 1]), (0, "n2", 1, 1, 2, [0, 1])]


def test_context_and_checkpoint_outside_a_gang(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "SHOAL_TRAIN_CHECKPOINT", "SHOAL_TRAIN_REPORT_FD"):
        monkeypatch.delenv(k, raising=False)
    assert st.get_context().world_size == 1 and st.get_checkpoint() is None
    with pytest.raises(RuntimeError, match="only in a worker"):
        st.report({"loss": 1.0})
    with pytest.raises(TypeError, match="must be a dict"):
        st.report(1.0)


ENV_RUN = r"""
import os, shoal, shoal.train as st
os.environ["SLURM_PROCID"] = "7"     # a driver inside a Slurm step; workers must not see it
shoal.init()
def fn(config):
    c = st.get_context()
    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
            "TORCHELASTIC_RESTART_COUNT", "OMP_NUM_THREADS", "SLURM_PROCID")
    return (c.world_rank, c.local_rank, c.world_size, config["x"], {k: os.environ.get(k) for k in keys})
out = st.run(fn, num_workers=3, resources_per_worker={"CPU": 1}, config={"x": 42})
print("OUT", repr(out))
"""


def test_run_gives_each_worker_the_torch_environment():
    r = run_script(ENV_RUN, "--num-cpus", "4")
    assert r.returncode == 0, r.stderr
    out = eval(r.stdout.split("OUT ", 1)[1])  # noqa: S307 - our own repr
    assert [o[:4] for o in out] == [(0, 0, 3, 42), (1, 1, 3, 42), (2, 2, 3, 42)]
    envs = [o[4] for o in out]
    assert len({(e["MASTER_ADDR"], e["MASTER_PORT"]) for e in envs}) == 1
    assert envs[0]["MASTER_ADDR"] == "127.0.0.1" and int(envs[0]["MASTER_PORT"]) > 0
    for i, e in enumerate(envs):
        assert (e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"], e["LOCAL_WORLD_SIZE"], e["NODE_RANK"]) == (str(i), str(i), "3", "3", "0")
        assert e["TORCHELASTIC_RESTART_COUNT"] == "0" and e["OMP_NUM_THREADS"] == "1"
        assert e["SLURM_PROCID"] is None


RESTART_RUN = r"""
import json, os, sys, tempfile, time, shoal, shoal.train as st
shoal.init()
d = tempfile.mkdtemp()
def fn(config):
    c = st.get_context()
    ck = st.get_checkpoint()
    start = json.load(open(ck))["step"] + 1 if ck else 0
    for step in range(start, 10):
        if c.world_rank == 0 and step % 3 == 2:
            p = os.path.join(config["dir"], f"step{step}.json")
            with open(p + ".tmp", "w") as f:
                json.dump({"step": step}, f)
            os.replace(p + ".tmp", p)
            st.report({"step": step}, checkpoint=p)
        if c.attempt == 0 and step == 4:
            if c.world_rank == 1:
                while not os.path.exists(os.path.join(config["dir"], "step2.json")):
                    time.sleep(0.01)
                time.sleep(0.5)
                os._exit(3)            # the worker process dies
            time.sleep(60)             # rank 0 waits to be stopped
    return (c.world_rank, c.attempt, start, ck)
print("OUT", repr(st.run(fn, num_workers=2, max_failures=2, config={"dir": d})))
"""


def test_run_restarts_the_gang_from_the_last_checkpoint():
    t0 = time.time()
    r = run_script(RESTART_RUN, "--num-cpus", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    out = eval(r.stdout.split("OUT ", 1)[1])  # noqa: S307
    assert [o[:3] for o in out] == [(0, 1, 3), (1, 1, 3)], out
    assert out[0][3].endswith("step2.json")
    assert "restarting the gang from checkpoint" in r.stdout
    assert time.time() - t0 < 50, "rank 0 (sleeping 60 s) was not stopped when rank 1 died"


FAIL_RUN = r"""
import shoal, shoal.train as st
shoal.init()
def fn():
    if st.get_context().world_rank == 1:
        raise ValueError("bad batch at step 3")
    return 1
try:
    st.run(fn, num_workers=2, max_failures=1)
except st.TrainingFailedError as e:
    print("FAILED", e.rank, e.attempts, isinstance(e.__cause__, ValueError), "bad batch at step 3" in str(e.__cause__))
"""


def test_run_raises_when_no_restart_is_left():
    r = run_script(FAIL_RUN, "--num-cpus", "2")
    assert r.returncode == 0, r.stderr
    assert "FAILED 1 2 True True" in r.stdout, r.stdout
    assert r.stdout.count("restarting the gang") == 1


INFEASIBLE_RUN = r"""
import shoal, shoal.train as st
shoal.init()
try:
    st.run(lambda: 1, num_workers=3, resources_per_worker={"CPU": 2})
except shoal.exceptions.TaskUnschedulableError as e:
    print("REFUSED", e)
"""


def test_run_refuses_a_gang_the_cluster_can_never_hold():
    r = run_script(INFEASIBLE_RUN, "--num-cpus", "4")
    assert r.returncode == 0, r.stderr
    assert "REFUSED shoal.train.run: the cluster can never hold 3 workers of {'CPU': 2.0} (PACK)" in r.stdout, r.stdout


def shoal_train(*args, timeout=120, env=None):
    e = dict(os.environ)
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID"):
        e.pop(k, None)
    e["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([shoal_bin(), "train", *args], capture_output=True, text=True, timeout=timeout, env=e)


def test_cli_environment_and_slurm_variables_removed():
    code = ("import os; print('ENV', *(os.environ.get(k) for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',"
            " 'MASTER_PORT', 'SLURM_PROCID', 'SLURM_LOCALID', 'TORCHELASTIC_MAX_RESTARTS')))")
    r = shoal_train("--nproc-per-node", "2", "--max-restarts", "2", "--", sys.executable, "-c", code,
                    env={"SLURM_PROCID": "5", "SLURM_LOCALID": "1"})
    assert r.returncode == 0, r.stderr
    lines = sorted(l.split("ENV ", 1)[1] for l in r.stdout.splitlines() if "ENV " in l)
    assert len(lines) == 2
    port = lines[0].split()[4]
    assert lines == [f"0 0 2 127.0.0.1 {port} None None 2", f"1 1 2 127.0.0.1 {port} None None 2"]
    assert "[rank0]: ENV" in r.stdout and "[rank1]: ENV" in r.stdout


CKPT_RANK = r"""
import os, sys, time, shoal.train as st
rank, attempt = int(os.environ["RANK"]), int(os.environ["TORCHELASTIC_RESTART_COUNT"])
print("START", rank, attempt, st.get_checkpoint(), flush=True)
if attempt == 0:
    if rank == 0:
        st.report({"step": 10}, checkpoint="/ckpt/step10")
        time.sleep(60)
    time.sleep(1)
    print("rank", rank, "gives up", flush=True)
    sys.exit(7)
"""


def test_cli_restart_from_the_reported_checkpoint_then_the_exit_code():
    t0 = time.time()
    r = shoal_train("--nproc-per-node", "2", "--max-restarts", "1", "--", sys.executable, "-c", CKPT_RANK)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "[rank1]: START 1 1 /ckpt/step10" in r.stdout and "[rank0]: START 0 1 /ckpt/step10" in r.stdout
    assert "rank 1 on" in r.stderr and "failed (exit code 7); restarting the gang from checkpoint /ckpt/step10 (restart 1 of 1)" in r.stderr
    assert time.time() - t0 < 40, "rank 0 (sleeping 60 s) was not stopped"
    # no restart left: shoal train exits with the rank's code and shows its last output
    r = shoal_train("--nproc-per-node", "2", "--", sys.executable, "-c", CKPT_RANK)
    assert r.returncode == 7, r.stderr
    assert "failed (exit code 7) and no restarts are left (0 of 0 used); its last output:" in r.stderr
    assert "    rank 1 gives up" in r.stderr


def test_cli_refuses_an_impossible_gang():
    r = shoal_train("--nproc-per-node", "3", "--cpus-per-rank", "64", "--", "true")
    assert r.returncode != 0
    assert "cannot place the ranks: the cluster can never hold 3 ranks of {CPU:64} (PACK)" in r.stderr, r.stderr
    r = shoal_train("--nproc-per-node", "two", "--", "true")
    assert r.returncode == 2 and "--nproc-per-node \"two\": use a positive number" in r.stderr
    r = shoal_train("--preload", "to rch", "--", "true")
    assert r.returncode == 2 and "--preload \"to rch\": \"to rch\" is not a Python module name" in r.stderr, r.stderr


TERM_RANK = r"""
import os, signal, sys, time
def bye(*_):
    open(os.path.join(sys.argv[1], "saved-" + os.environ["RANK"]), "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("UP", os.environ["RANK"], flush=True)
time.sleep(60)
"""


def test_cli_sigterm_reaches_every_rank_and_stops_without_restart(tmp_path):
    e = dict(os.environ)
    for k in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID"):
        e.pop(k, None)
    p = subprocess.Popen([shoal_bin(), "train", "--nproc-per-node", "2", "--max-restarts", "3", "--", sys.executable,
                          "-c", TERM_RANK, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    up = 0
    deadline = time.time() + 60
    while up < 2 and time.time() < deadline:
        line = p.stdout.readline()
        up += "UP" in line
    assert up == 2
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert sorted(os.listdir(tmp_path)) == ["saved-0", "saved-1"]
    assert "restarting" not in err
    assert p.returncode == 128 + signal.SIGTERM


def test_cli_torch_gloo_ddp_gradients_agree():
    pytest.importorskip("torch")
    r = shoal_train("--nproc-per-node", "2", "--", sys.executable, os.path.join(ROOT, "examples", "train", "ddp_torch.py"),
                    "--steps", "3", timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert r.stdout.count("identical_across_ranks=True") == 2 and r.stdout.count("agree=True") == 2, r.stdout


def test_cli_torch_fsdp2_on_gloo_learns():
    pytest.importorskip("torch")
    r = shoal_train("--nproc-per-node", "2", "--", sys.executable, os.path.join(ROOT, "examples", "train", "fsdp_torch.py"),
                    "--steps", "30", timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    line = [l for l in r.stdout.splitlines() if "DONE steps=30" in l][0]
    first = float(line.split("first_loss=")[1].split()[0])
    last = float(line.split("mean_loss=")[1])
    assert last < first / 2, line


def test_cli_numpy_fsdp_matches_one_process():
    r = shoal_train("--nproc-per-node", "2", "--", sys.executable, os.path.join(ROOT, "examples", "train", "fsdp_numpy.py"),
                    "--steps", "50", timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "FSDP world=2 steps=50" in r.stdout and "agree=True" in r.stdout, r.stdout


COLL_RUN = r"""
import numpy as np, shoal, shoal.train as st
from shoal import collective as col
shoal.init()
def fn():
    g = st.init_collective()
    a = np.full(4, float(st.get_context().world_rank + 1))
    col.allreduce(a, group_name=g)
    col.destroy_group(g)
    return float(a[0])
print("SUMS", st.run(fn, num_workers=3))
"""


def test_run_workers_use_shoal_collective():
    r = run_script(COLL_RUN, "--num-cpus", "3")
    assert r.returncode == 0, r.stderr
    assert "SUMS [6.0, 6.0, 6.0]" in r.stdout, r.stdout


TERM_RUN = r"""
import os, signal, sys, time, shoal, shoal.train as st
shoal.init()
def fn(config):
    c = st.get_context()
    if c.attempt == 0:
        if c.world_rank == 1:
            time.sleep(1)
            raise ValueError("rank 1 fails")
        def term(*_):
            open(os.path.join(config["dir"], f"saved-{c.world_rank}-{os.getpid()}"), "w").close()
            sys.exit(0)
        signal.signal(signal.SIGTERM, term)
        time.sleep(60)
    return c.attempt
print("OUT", st.run(fn, num_workers=2, max_failures=1, config={"dir": sys.argv[1]}))
"""


def test_run_gives_the_other_workers_sigterm_before_the_kill(tmp_path):
    t0 = time.time()
    r = run_script(TERM_RUN.replace("sys.argv[1]", repr(str(tmp_path))), "--num-cpus", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "OUT [1, 1]" in r.stdout, r.stdout
    saved = os.listdir(tmp_path)
    assert len(saved) == 1 and saved[0].startswith("saved-0-"), saved
    assert time.time() - t0 < 50, "rank 0 (sleeping 60 s) was not stopped"


SPARE_RANK = r"""
import os, sys, time
a, r = int(os.environ["TORCHELASTIC_RESTART_COUNT"]), os.environ["RANK"]
print("RANK", r, "ATTEMPT", a, "PRELOADED", "fractions" in sys.modules, "ENV", os.environ["MASTER_PORT"],
      os.environ["OMP_NUM_THREADS"], flush=True)
if a == 0:
    if r == "1":
        while not os.path.exists(sys.argv[1]):  # the driver says when (once the spares run)
            time.sleep(0.05)
        sys.exit(3)
    time.sleep(60)
if len(sys.argv) > 2:
    open(os.path.join(sys.argv[2], "up-" + r), "w").close()
    time.sleep(60)
"""

# a driver inside a cluster that runs `shoal train` and then counts what is left of its ranks
# and spares (processes with the rank's report pipe variable and this cluster's id)
LEFT_DRIVER = r"""
import os, signal, subprocess, sys, time
cid = os.environ["SHOAL_CLUSTER_ID"]
def left():
    n = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
            state = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and f"SHOAL_CLUSTER_ID={cid}".encode() in env and b"SHOAL_TRAIN_REPORT_FD=3" in env:
            n += 1
    return n
cmd = [os.environ["SHOAL_BIN"], "train", "--nproc-per-node", "2", "--max-restarts", "2", "--preload", "fractions", "--spare-wait", "1s",
       "--", sys.executable, "-c", os.environ["RANK_CODE"]]
import tempfile
d = tempfile.mkdtemp()
go = os.path.join(d, "go")
p = subprocess.Popen(cmd + [go], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 90
while left() < 4 and time.time() < deadline:  # attempt 0's ranks and the spares for attempt 1
    time.sleep(0.1)                            # (made once the machine has a CPU to spare)
open(go, "w").close()
out, err = p.communicate(timeout=120)
print("RUN1", p.returncode, out, err, flush=True)
print("LEFT1", left(), flush=True)
# SIGTERM (as scancel) while the ranks and their spares run
d = tempfile.mkdtemp()
open(os.path.join(d, "go"), "w").close()  # rank 1 fails at once this time
p = subprocess.Popen(cmd + [os.path.join(d, "go"), d], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 90
while (len(os.listdir(d)) < 3 or left() < 4) and time.time() < deadline:  # attempt 1's ranks and the spares for attempt 2
    time.sleep(0.1)
print("RUNNING", left(), flush=True)
p.send_signal(signal.SIGTERM)
p.wait(60)
time.sleep(0.5)
print("LEFT2", left(), p.returncode, flush=True)
"""


def test_cli_restart_runs_from_warm_spares_and_leaves_nothing():
    r = run_script(LEFT_DRIVER, "--num-cpus", "2", timeout=240,
                   env={"SHOAL_BIN": shoal_bin(), "RANK_CODE": SPARE_RANK})
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout
    # attempt 0 starts cold; attempt 1 runs in the spares, which had imported the preload module
    assert "[rank0]: RANK 0 ATTEMPT 0 PRELOADED False" in out and "[rank1]: RANK 1 ATTEMPT 0 PRELOADED False" in out, out
    assert "[rank0]: RANK 0 ATTEMPT 1 PRELOADED True" in out and "[rank1]: RANK 1 ATTEMPT 1 PRELOADED True" in out, out
    assert "2 ranks running (attempt 1, 2 from warm spares)" in out, out
    # the new attempt's MASTER_PORT reached the spares; OMP_NUM_THREADS (set when they started) is the rank's
    envs = {l.split("ENV ")[1] for l in out.split("RUN1")[0].splitlines() if "RANK " in l and "ATTEMPT 1" in l}
    assert len(envs) == 1 and envs.pop().endswith(" 1"), out
    assert "RUN1 0" in out and "LEFT1 0" in out, out       # the spares made for attempt 2 went with the gang
    assert "RUNNING 4" in out and "LEFT2 0 143" in out, out  # SIGTERM: ranks and spares gone, no restart


CKPT_LOST_RANK = r"""
import os, signal, sys, time, shoal.train as st
a, r = int(os.environ["TORCHELASTIC_RESTART_COUNT"]), int(os.environ["RANK"])
print("START", r, a, st.get_checkpoint(), flush=True)
if a == 0:
    if r == 0:
        time.sleep(1)
        st.report({"step": 1}, checkpoint="/ck/1")
        os.kill(os.getppid(), signal.SIGKILL)   # rank 0's actor is lost right after report() returned
    time.sleep(60)
"""


def test_cli_checkpoint_reported_just_before_rank_0_is_lost_is_kept():
    r = shoal_train("--nproc-per-node", "2", "--max-restarts", "1", "--preload", "", "--", sys.executable, "-c", CKPT_LOST_RANK)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "failed (its process or node was lost); restarting the gang from checkpoint /ck/1" in r.stderr, r.stderr
    assert "START 0 1 /ck/1" in r.stdout and "START 1 1 /ck/1" in r.stdout, r.stdout


ELASTIC_RUN = r"""
import shoal, shoal.train as st
shoal.init()

@shoal.remote(num_cpus=1)
class Holder:
    def ping(self):
        return 1

holder = Holder.options(name="holder").remote()
shoal.get(holder.ping.remote())        # one of the 3 CPUs is taken: room for 2 workers

def fn():
    ctx = st.get_context()
    if ctx.get_attempt() == 0 and ctx.get_world_rank() == 0:
        shoal.kill(shoal.get_actor("holder"))   # the room comes back ...
        raise RuntimeError("a failure after the room came back")  # ... and the gang restarts
    return (ctx.get_attempt(), ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_world_size())

print("OUT", st.run(fn, num_workers=(2, 3), max_failures=1, elastic_wait=1.0))
"""


def test_run_elastic_gang_takes_the_room_there_is_and_grows_back():
    r = run_script(ELASTIC_RUN, "--num-cpus", "3")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "attempt 0 runs 2 workers (elastic 2-3)" in r.stdout, r.stdout
    assert "attempt 1 runs 3 workers (elastic 2-3)" in r.stdout, r.stdout
    out = eval(r.stdout.split("OUT ", 1)[1])  # noqa: S307
    assert out == [(1, 0, 3, 3), (1, 1, 3, 3), (1, 2, 3, 3)], out


def test_run_refuses_bad_elastic_sizes():
    for bad in ((3, 2), (0, 2), (1, 2, 3), "2:3", True):
        with pytest.raises(ValueError, match="num_workers"):
            st.run(lambda: 1, num_workers=bad)


def test_run_refuses_spare_nodes_and_requeue_outside_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ValueError, match="shoal train --spare-nodes K"):
        st.run(lambda: 1, num_workers=2, spare_nodes=1)
    with pytest.raises(ValueError, match=r"requeue=True\): not in a Slurm job"):
        st.run(lambda: 1, requeue=True)
    for bad in ("NOPE", "KILL", 1.5):
        with pytest.raises(ValueError, match="warn_signal"):
            st.run(lambda: 1, warn_signal=bad)
    for bad in (0, -1, "60"):
        with pytest.raises(ValueError, match="checkpoint_timeout"):
            st.run(lambda: 1, checkpoint_timeout=bad)


# a run whose attempt 0 fails after two checkpoints; the same driver again (a new allocation
# of the job, as after a requeue) resumes from the newest one in the history
HISTORY_RUN = r"""
import json, os, sys, shoal, shoal.train as st
d, ck = sys.argv[1], sys.argv[2]
shoal.init()
def fn(config):
    c = st.get_context()
    start = st.get_checkpoint()
    first = json.load(open(start))["step"] if start else 0
    for step in range(first, first + 6):
        if c.world_rank == 0 and step % 2 == 1:
            p = os.path.join(config["ck"], f"step{step}.json")
            with open(p + ".tmp", "w") as f:  # whole or not at all: the other rank may be reading
                json.dump({"step": step}, f)  # the one it resumes from, which this rank writes again
            os.replace(p + ".tmp", p)
            st.report({"step": step, "loss": 1.0 / (step + 1)}, checkpoint=p)
        # rank 0 fails, after its report of step 3 returned (report() waits for the driver to
        # take it): had rank 1 failed too, its failure could end the attempt before that report
        # arrived (seen under load), and the resume would be from step 1
        if config["fail"] and c.attempt == 0 and step == 3 and c.world_rank == 0:
            raise RuntimeError("boom")
    return (c.attempt, first, start)
out = st.run(fn, num_workers=2, max_failures=1, state_dir=d, config={"ck": ck, "fail": len(sys.argv) > 3})
print("OUT", repr(out), flush=True)
"""


def test_run_history_in_state_dir_and_resume_in_a_new_allocation(tmp_path):
    d, ck = tmp_path / "state", tmp_path / "ck"
    ck.mkdir()
    code = HISTORY_RUN.replace("sys.argv[1], sys.argv[2]", f"{str(d)!r}, {str(ck)!r}")
    r = run_script(code.replace("len(sys.argv) > 3", "True"), "--num-cpus", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    assert f"run state in {d} (state_dir" in r.stderr and "0 earlier attempts; starting from the start" in r.stderr, r.stderr
    out = eval(r.stdout.split("OUT ", 1)[1])  # noqa: S307
    assert out == [(1, 3, str(ck / "step3.json"))] * 2, out
    # a new allocation: the newest checkpoint of the history, attempts numbered on
    r = run_script(code.replace("len(sys.argv) > 3", "False"), "--num-cpus", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    assert f"2 earlier attempts; starting from checkpoint {ck / 'step7.json'}" in r.stderr, r.stderr
    out = eval(r.stdout.split("OUT ", 1)[1])  # noqa: S307
    assert out == [(0, 7, str(ck / "step7.json"))] * 2, out
    h = subprocess.run([shoal_bin(), "train", "history", "--state-dir", str(d), "--json"], capture_output=True, text=True)
    assert h.returncode == 0, h.stderr
    allocs = json.loads(h.stdout)
    assert [a["end_reason"] for a in allocs] == ["completed", "completed"], allocs
    a0, a1 = allocs[0]["attempts"], allocs[1]["attempts"]
    assert [(a["attempt"], a["world_size"], a["end_reason"], a.get("resumed_from", "")) for a in a0 + a1] == [
        (0, 2, "failed", ""), (1, 2, "completed", str(ck / "step3.json")), (2, 2, "completed", str(ck / "step7.json"))]
    assert "RuntimeError: boom" in a0[0]["detail"] and a0[0]["layout"].endswith(": ranks 0-1")
    assert [(c["step"], c["path"]) for c in a0[0]["checkpoints"]] == [(1, str(ck / "step1.json")), (3, str(ck / "step3.json"))]
    assert [c["step"] for c in a0[1]["checkpoints"]] == [3, 5, 7] and [c["step"] for c in a1[0]["checkpoints"]] == [7, 9, 11]


# in a Slurm job (SLURM_JOB_ID; no slurmctld here): the time-limit warning (USR1 to every process,
# as --signal=USR1@T sends it) makes checkpoint_due() true in every worker, which survive it; rank
# 0's checkpoint is in the history; without requeue the gang goes on. Then requeue=True, whose
# `scontrol requeue` fails here, and a SIGTERM that is not a preemption, which ends the driver as before.
WARN_RUN = r"""
import json, os, signal, sys, threading, time, shoal, shoal.train as st
d, ck, mode = sys.argv[1], sys.argv[2], sys.argv[3]
shoal.init()
def fn(config):
    c = st.get_context()
    open(os.path.join(config["ck"], f"pid-{c.world_rank}"), "w").write(str(os.getpid()))
    seen = None
    for step in range(600):
        due = st.checkpoint_due()
        if due and seen is None:
            seen = (step, due)
            if c.world_rank == 0:
                p = os.path.join(config["ck"], f"step{step}.json")
                json.dump({"step": step}, open(p, "w"))
                st.report({"step": step, "reason": due}, checkpoint=p)
            if config["mode"] != "warn":
                return seen
        if seen and step > seen[0] + 30:  # past stop_grace: the gang goes on
            return (seen[1], st.checkpoint_due(), os.getpid())
        time.sleep(0.05)
    return None
def signal_all(sig):
    pids = []
    while len(pids) < 2:
        pids = [int(open(os.path.join(ck, f)).read() or 0) for f in os.listdir(ck) if f.startswith("pid-")]
        time.sleep(0.05)
    time.sleep(0.3)
    for p in os.listdir("/proc"):  # as Slurm: every process of the step (the run's history too)
        try:
            if p.isdigit() and b"run-state" in open(f"/proc/{p}/cmdline", "rb").read() \
                    and b"SLURM_JOB_ID=424242" in open(f"/proc/{p}/environ", "rb").read():
                pids.append(int(p))
        except OSError:
            pass
    for p in pids + [os.getpid()]:
        os.kill(p, sig)
threading.Thread(target=signal_all, args=(signal.SIGTERM if mode == "term" else signal.SIGUSR1,), daemon=True).start()
try:
    out = st.run(fn, num_workers=2, state_dir=d, requeue=mode == "requeue", stop_grace=0.5, config={"ck": ck, "mode": mode})
    print("OUT", repr(out), flush=True)
except st.TrainingFailedError as e:
    print("FAILED", e, flush=True)
"""


def _warn_run(tmp_path, mode):
    d, ck = tmp_path / f"state-{mode}", tmp_path / f"ck-{mode}"
    ck.mkdir()
    code = WARN_RUN.replace("sys.argv[1], sys.argv[2], sys.argv[3]", f"{str(d)!r}, {str(ck)!r}, {mode!r}")
    r = run_script(code, "--num-cpus", "2", env={"SLURM_JOB_ID": "424242", "SLURM_RESTART_COUNT": "0"})
    h = subprocess.run([shoal_bin(), "train", "history", "--state-dir", str(d), "--json"], capture_output=True, text=True)
    return r, json.loads(h.stdout) if h.returncode == 0 else h.stderr, ck


def test_run_time_limit_warning_makes_a_checkpoint_due_in_every_worker(tmp_path):
    r, allocs, ck = _warn_run(tmp_path, "warn")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "the time-limit warning: a checkpoint is due; asking every worker for one" in r.stderr, r.stderr
    out = eval(r.stdout.split("OUT ", 1)[1])  # noqa: S307
    # every worker saw it, survived USR1, and rank 0's report cleared it
    assert [o[:2] for o in out] == [("time_limit", None), ("time_limit", "time_limit")], out
    a = allocs[0]["attempts"][0]
    assert allocs[0]["job_id"] == "424242" and allocs[0]["end_reason"] == "completed" and a["end_reason"] == "completed"
    assert len(a["checkpoints"]) == 1 and a["checkpoints"][0]["metrics"]["reason"] == "time_limit", a


def test_run_requeue_that_fails_and_a_sigterm_that_is_not_a_preemption(tmp_path):
    r, allocs, ck = _warn_run(tmp_path, "requeue")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "FAILED shoal.train.run: time-limit warning: the gang is stopped with the last one, " in r.stdout, r.stdout
    assert "scontrol requeue 424242" in r.stdout, r.stdout
    a = allocs[0]["attempts"][0]
    assert allocs[0]["end_reason"] == "time-limit" and a["end_reason"] == "time-limit" and a["checkpoints"][0]["step"] >= 0, allocs
    r, allocs, ck = _warn_run(tmp_path, "term")
    assert r.returncode == 128 + signal.SIGTERM, r.stderr + r.stdout
    assert "cannot tell a preemption from a cancel" in r.stderr and "OUT" not in r.stdout, r.stderr
    assert allocs[0]["end_reason"] == "cancelled" and allocs[0]["attempts"][0]["end_reason"] == "cancelled", allocs


def test_run_names_a_state_dir_it_cannot_make():
    r = run_script("import shoal, shoal.train as st\nshoal.init()\nst.run(lambda: 1, state_dir='/proc/nope/state')\n",
                   "--num-cpus", "1")
    assert r.returncode != 0
    assert "the run's history could not be opened" in r.stderr and "/proc/nope/state" in r.stderr, r.stderr
    assert "give state_dir= a directory every allocation of the job can write" in r.stderr, r.stderr
