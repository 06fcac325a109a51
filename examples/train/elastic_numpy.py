"""Data-parallel training that any world size can resume, with numpy and shoal.collective only:
the example for elastic gangs (`shoal train --nnodes MIN:MAX`), which shrink when a node is lost
and grow back when one joins.

    shoal train --nnodes 2:4 --nproc-per-node 1 --max-restarts 3 -- python elastic_numpy.py --ckpt-dir ~/ck

or from Python, shoal.train.run(elastic_numpy.train, num_workers=(2, 4), config={"ckpt_dir": ...}).

Every rank holds the whole model (a linear regression trained with SGD and momentum), takes an
equal slice of each step's fixed batch and averages its gradient with the others (allreduce),
so every world size trains the same weights. A checkpoint is the whole model and the step:
saved by rank 0 every --ckpt-every steps, and at once when shoal train asks for one
(shoal.train.checkpoint_due(): a node joined, the time-limit warning, a preemption), after
which every rank exits and shoal train restarts the gang, larger or on a new allocation, from
it (shoal.train.get_checkpoint()).

At the end rank 0 trains the same model in one process on the whole batch and prints both
weights' relative difference (the test asks for under 1e-9).
"""
import argparse
import os
import time

import numpy as np

import shoal.train as st
from shoal import collective as col

D, B = 8, 24  # 24 samples a step: equal slices for 1, 2, 3, 4, 6 and 8 ranks


def batch(step):
    rng = np.random.default_rng(1000 + step)
    x = rng.standard_normal((B, D))
    return x, x @ np.arange(1.0, D + 1) + 0.1 * rng.standard_normal(B)


def grad(w, x, y):
    return 2 * x.T @ (x @ w - y) / len(x)


def single_process(steps, lr, mom):
    w, v = np.zeros(D), np.zeros(D)
    for step in range(steps):
        v = mom * v + grad(w, *batch(step))
        w = w - lr * v
    return w


def save(ckdir, step, w, v):
    path = os.path.join(ckdir, f"step{step}.npz")
    np.savez(path + ".tmp.npz", w=w, v=v, step=step)
    os.replace(path + ".tmp.npz", path)
    return path


def train(config):
    """One worker's training (config: ckpt_dir, and optionally steps, lr, momentum, ckpt_every,
    step_time). Returns, on rank 0 of the attempt that finishes, the world size and the relative
    difference from one process's weights; None on the other ranks and when it stopped at a
    checkpoint shoal asked for."""
    steps, lr, mom = config.get("steps", 200), config.get("lr", 0.01), config.get("momentum", 0.9)
    ckdir, every, step_time = config["ckpt_dir"], config.get("ckpt_every", 10), config.get("step_time", 0.0)
    ctx = st.get_context()
    rank, world = ctx.world_rank, ctx.world_size
    group = st.init_collective()
    w, v, start = np.zeros(D), np.zeros(D), 0
    ck = st.get_checkpoint()
    if ck:
        saved = np.load(ck)
        w, v, start = saved["w"], saved["v"], int(saved["step"])
    print(f"RESUME rank={rank} world={world} step={start} from={ck}", flush=True)
    n = B // world
    due = np.zeros(1)
    try:
        for step in range(start, steps):
            due[0] = 1.0 if st.checkpoint_due() else 0.0
            col.allreduce(due, group_name=group, op="max")  # every rank stops at the same step
            if due[0]:
                if rank == 0:
                    st.report({"step": step, "reason": st.checkpoint_due()}, checkpoint=save(ckdir, step, w, v))
                col.barrier(group_name=group)
                print(f"DUE rank={rank} world={world} step={step}", flush=True)
                return None
            if rank == 0 and step > start and step % every == 0:
                st.report({"step": step}, checkpoint=save(ckdir, step, w, v))
            x, y = batch(step)
            g = grad(w, x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n])
            col.allreduce(g, group_name=group, op="avg")
            v = mom * v + g
            w = w - lr * v
            if step_time:
                time.sleep(step_time)
        if rank != 0:
            return None
        ref = single_process(steps, lr, mom)
        rel = float(np.abs(w - ref).max() / np.abs(ref).max())
        print(f"FINAL world={world} steps={steps} rel_diff={rel:.1e} agree={rel < 1e-9}", flush=True)
        return {"world": world, "rel_diff": rel}
    finally:
        col.destroy_group(group)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--ckpt-every", type=int, default=10)
    ap.add_argument("--step-time", type=float, default=0.0, help="sleep per step, to make a run long enough to change")
    train(vars(ap.parse_args()))


if __name__ == "__main__":
    main()
