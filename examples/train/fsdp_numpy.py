"""Fully sharded data-parallel training (the FSDP / ZeRO-3 pattern) with numpy and
shoal.collective only, run by `shoal train`:

    shoal train --nproc-per-node 2 -- python fsdp_numpy.py --steps 100
    srun shoal launch -- shoal train --nproc-per-node 1 --max-restarts 3 -- python fsdp_numpy.py --ckpt-dir ~/ck

Every rank holds 1/world of the parameters and of the optimizer state (momentum). Each step:
  1. allgather the parameter shards into the full parameter vector (forward and backward need it),
  2. forward and backward on this rank's shard of the batch,
  3. reduce-scatter (average) the full gradient: each rank gets the gradient of its own shard,
  4. update its shard with SGD + momentum.
With --ckpt-dir every rank writes its shard (parameters and momentum) and rank 0 reports the
step's directory with shoal.train.report once all shards are there; after a restart each rank
reads its shard back from shoal.train.get_checkpoint().

At the end rank 0 trains the same model in one process on the whole batch and prints both
losses: they agree to float64 rounding (the test asks for a relative difference under 1e-9).
"""
import argparse
import os
import sys
import time

import numpy as np

import shoal.train as st
from shoal import collective as col

D_IN, D_HID, N = 8, 16, 480  # 480 samples: equal shards for 1-6 and 8 ranks


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D_IN))
    w = rng.standard_normal((D_IN, 1))
    y = np.sin(x @ w) + 0.05 * rng.standard_normal((N, 1))
    return x, y


def init_params():
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((D_IN, D_HID)) / np.sqrt(D_IN)
    w2 = rng.standard_normal((D_HID, 1)) / np.sqrt(D_HID)
    return np.concatenate([w1.ravel(), np.zeros(D_HID), w2.ravel(), np.zeros(1)])


def unflatten(p):
    i = 0
    out = []
    for shape in ((D_IN, D_HID), (D_HID,), (D_HID, 1), (1,)):
        n = int(np.prod(shape))
        out.append(p[i:i + n].reshape(shape))
        i += n
    return out


def loss_and_grad(p, x, y):
    """Mean squared error of a tanh MLP and its gradient with respect to the flat parameters."""
    w1, b1, w2, b2 = unflatten(p)
    h = np.tanh(x @ w1 + b1)
    out = h @ w2 + b2
    err = out - y
    loss = float(np.mean(err ** 2))
    g_out = 2 * err / len(x)
    g_w2 = h.T @ g_out
    g_b2 = g_out.sum(0)
    g_h = g_out @ w2.T * (1 - h ** 2)
    g_w1 = x.T @ g_h
    g_b1 = g_h.sum(0)
    return loss, np.concatenate([g_w1.ravel(), g_b1, g_w2.ravel(), g_b2])


def single_process(steps, lr, mom):
    x, y = data()
    p = init_params()
    v = np.zeros_like(p)
    for _ in range(steps):
        _, g = loss_and_grad(p, x, y)
        v = mom * v + g
        p = p - lr * v
    return loss_and_grad(p, x, y)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--ckpt-dir", default="")
    ap.add_argument("--ckpt-every", type=int, default=10)
    ap.add_argument("--step-time", type=float, default=0.0, help="sleep per step, to make a run long enough to kill")
    a = ap.parse_args()
    ctx = st.get_context()
    rank, world = ctx.world_rank, ctx.world_size
    group = st.init_collective()
    print(f"START rank={rank} world={world} attempt={ctx.attempt} pid={os.getpid()}", flush=True)
    x, y = data()
    if N % world:
        sys.exit(f"{N} samples do not split evenly over {world} ranks")
    b = N // world
    xs, ys = x[rank * b:(rank + 1) * b], y[rank * b:(rank + 1) * b]

    full = init_params()
    per = -(-len(full) // world)  # shard size; the flat vector is padded to world * per
    padded = np.zeros(per * world)
    padded[:len(full)] = full
    shard = padded[rank * per:(rank + 1) * per].copy()  # this rank's parameters
    vel = np.zeros(per)  # and its momentum
    start = 0
    ck = st.get_checkpoint()
    if ck:
        saved = np.load(os.path.join(ck, f"shard{rank}.npz"))
        shard, vel, start = saved["p"], saved["v"], int(saved["step"]) + 1
        print(f"RESUME rank={rank} from={ck} step={start}", flush=True)

    gathered = np.empty(per * world)
    grad_shard = np.empty(per)
    for step in range(start, a.steps):
        col.allgather(gathered, shard, group_name=group)                 # 1. the full parameters
        loss, g = loss_and_grad(gathered[:len(full)], xs, ys)            # 2. local forward/backward
        gpad = np.zeros(per * world)
        gpad[:len(full)] = g
        col.reducescatter(grad_shard, gpad, group_name=group, op="avg")  # 3. this shard's mean gradient
        vel = a.momentum * vel + grad_shard                              # 4. update the shard
        shard = shard - a.lr * vel
        if a.step_time:
            time.sleep(a.step_time)
        if a.ckpt_dir and (step + 1) % a.ckpt_every == 0:
            d = os.path.join(a.ckpt_dir, f"step{step}")
            os.makedirs(d, exist_ok=True)
            tmp = os.path.join(d, f".shard{rank}.npz")
            np.savez(tmp, p=shard, v=vel, step=step)
            os.replace(tmp, os.path.join(d, f"shard{rank}.npz"))
            col.barrier(group_name=group)  # every shard is on disk before the step counts
            if rank == 0:
                st.report({"step": step, "loss": loss}, checkpoint=d)
    col.allgather(gathered, shard, group_name=group)
    part = np.array([loss_and_grad(gathered[:len(full)], xs, ys)[0]])
    col.allreduce(part, group_name=group, op="avg")  # mean of equal shards' MSE = full-batch MSE
    if rank == 0:
        ref = single_process(a.steps, a.lr, a.momentum)
        rel = abs(part[0] - ref) / ref
        first = loss_and_grad(init_params(), x, y)[0]
        print(f"FSDP world={world} steps={a.steps} first_loss={first:.6f} loss={part[0]:.12f} single_process_loss={ref:.12f} "
              f"rel_diff={rel:.1e} agree={rel < 1e-9}", flush=True)
    col.destroy_group(group)


if __name__ == "__main__":
    main()
