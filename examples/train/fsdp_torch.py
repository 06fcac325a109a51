"""Fully sharded data parallel with torch FSDP2 (torch.distributed.fsdp.fully_shard) under
`shoal train`: NCCL with one GPU per rank, gloo on CPU.

    srun shoal launch -- shoal train --nproc-per-node auto --max-restarts 3 -- python fsdp_torch.py --ckpt-dir ~/ck

Each rank holds a shard of every layer's parameters; FSDP all-gathers a layer's parameters for
its forward and backward and reduce-scatters its gradients. Checkpoints are the full state dict
(gathered on rank 0) reported with shoal.train.report; a restarted gang loads it before sharding.
"""
import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import fully_shard

try:
    import shoal.train as st
except ImportError:  # plain torchrun
    st = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--ckpt-dir", default="")
    ap.add_argument("--ckpt-every", type=int, default=5)
    a = ap.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "") != ""
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
    dev = torch.device("cuda") if cuda else torch.device("cpu")
    print(f"INIT rank={rank} world={world} backend={dist.get_backend()} t={time.time():.3f}", flush=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    start = 0
    ckpt = (st.get_checkpoint() if st else None) or ""
    if ckpt:
        state = torch.load(ckpt, map_location="cpu")
        model.load_state_dict(state["model"])
        start = state["step"] + 1
        print(f"RESUME rank={rank} from={ckpt} step={start}", flush=True)
    model.to(dev)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1 + rank)
    loss = torch.zeros(())
    first = None
    for step in range(start, a.steps):
        x = torch.randn(64, 32, generator=g).to(dev)
        y = x[:, :1] * 2 - x[:, 1:2]
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if first is None:
            first = loss.item()
        if a.ckpt_dir and (step + 1) % a.ckpt_every == 0:
            full = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).cpu() for k, v in model.state_dict().items()}
            if rank == 0:
                os.makedirs(a.ckpt_dir, exist_ok=True)
                path = os.path.join(a.ckpt_dir, f"fsdp-step{step}.pt")
                torch.save({"model": full, "step": step}, path + ".tmp")
                os.replace(path + ".tmp", path)
                if st:
                    st.report({"step": step, "loss": loss.item()}, checkpoint=path)
    t = loss.detach().reshape(1).to(dev)
    dist.all_reduce(t)
    if rank == 0:
        print(f"DONE steps={a.steps} first_loss={first} mean_loss={t.item() / world:.6f}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # torch 2.15 (PyPI, CPU) sometimes aborts at interpreter exit once a gloo group has been
    # used ("terminate called without an active exception", about 1 run in 6, under torchrun
    # as well): its C++ teardown, after main has returned. Everything is saved and flushed by
    # now, so leave without running that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
