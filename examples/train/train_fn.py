"""shoal.train.run from Python: 3 workers, torch's gloo backend inside, restart from checkpoints.

    srun shoal launch -- python3 train_fn.py          (or: shoal run -- python3 train_fn.py)
"""
import os
import shutil
import tempfile

import torch
import torch.distributed as dist

import shoal
import shoal.train


def train_fn(config):
    ctx = shoal.train.get_context()
    dist.init_process_group("gloo", init_method="env://")
    w = torch.zeros(4)
    start = 0
    if shoal.train.get_checkpoint():
        state = torch.load(shoal.train.get_checkpoint())
        w, start = state["w"], state["step"] + 1
    for step in range(start, config["steps"]):
        g = torch.full((4,), float(ctx.world_rank + 1))
        dist.all_reduce(g)          # sum of 1..world_size
        w -= config["lr"] * g / ctx.world_size
        if ctx.world_rank == 0 and step % 5 == 4:
            path = os.path.join(config["dir"], f"step{step}.pt")
            torch.save({"w": w, "step": step}, path)
            shoal.train.report({"step": step}, checkpoint=path)
    dist.destroy_process_group()
    return float(w[0])


if __name__ == "__main__":
    shoal.init()
    ckpt = tempfile.mkdtemp(prefix="shoal-train-", dir=os.path.expanduser("~"))  # every node reads it
    try:
        out = shoal.train.run(train_fn, num_workers=3, resources_per_worker={"CPU": 1}, placement_strategy="SPREAD",
                              max_failures=2, config={"steps": 20, "lr": 0.1, "dir": ckpt})
    finally:
        shutil.rmtree(ckpt)
    print("weights per rank:", out)
