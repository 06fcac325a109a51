"""GPU placement on a node without GPUs, through go-nvml's own mock of a DGX H100 (NVML is the
hardware boundary this machine lacks): what a user asking for num_gpus sees."""
import os
import sys

import pytest

from conftest import run_script

SCRIPT = r'''
import os, shoal as ray
ray.init()
print("GPU", ray.cluster_resources().get("GPU"))

@ray.remote(num_gpus=2)
class Trainer:
    def gpus(self):
        return ray.get_gpu_ids(), os.environ["CUDA_VISIBLE_DEVICES"]

trainers = [Trainer.remote() for _ in range(4)]
sets = ray.get([t.gpus.remote() for t in trainers])
print("SETS", sets)

@ray.remote(num_gpus=1)
def one():
    return ray.get_gpu_ids()

waiting = one.remote()
try:
    ray.get(waiting, timeout=1.0)
    print("WAITED no")
except ray.exceptions.GetTimeoutError:
    print("WAITED yes")
ray.kill(trainers[0])
print("AFTER_KILL", ray.get(waiting, timeout=30))

@ray.remote
def no_gpu():
    out = {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
    for dev in ("/dev/null", "/dev/kmsg"):
        try:
            open(dev, "rb").close()
            out[dev] = "ok"
        except OSError as e:
            out[dev] = e.strerror
    return out
print("NOGPU", ray.get(no_gpu.remote()))

@ray.remote(num_gpus=9)
def greedy():
    return 1
try:
    ray.get(greedy.remote())
except ray.exceptions.TaskUnschedulableError as e:
    print("INFEASIBLE", "GPU" in str(e))
'''


def test_gpu_tasks_and_actors_get_disjoint_gpus_and_are_confined():
    r = run_script(SCRIPT, env={"SHOAL_NVML_MOCK": "dgxh100"})
    assert r.returncode == 0, r.stderr
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    assert out["GPU"] == "8.0"
    sets = eval(out["SETS"])
    ids = [i for s, _ in sets for i in s]
    assert sorted(ids) == list(range(8)), "four 2-GPU actors must hold all 8 GPUs, each once"
    for s, cvd in sets:
        assert len(s) == 2 and cvd == ",".join(map(str, s))
    assert out["WAITED"] == "yes", "a ninth GPU request must wait while all 8 are held"
    freed = eval(out["AFTER_KILL"])
    assert len(freed) == 1 and freed[0] in sets[0][0], "the killed actor's GPUs go to the waiting task"
    nogpu = eval(out["NOGPU"])
    assert nogpu["cuda"] == "" and nogpu["/dev/null"] == "ok"
    if "GPU confinement unavailable" in r.stderr:
        pytest.skip("device confinement is not permitted here: " + r.stderr.strip().splitlines()[-1])
    assert nogpu["/dev/kmsg"] == "Operation not permitted", "a worker without GPUs must be confined to the ordinary devices"
    assert out["INFEASIBLE"] == "True"
