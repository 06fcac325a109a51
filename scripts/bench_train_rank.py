"""One rank of scripts/bench-train-launch.sh, the same under `shoal train` and torchrun: it prints
when its process started (before importing torch) and when init_process_group returned, and on
its first run rank 2 kills itself 2 s after every rank is up, so the launcher must restart
the gang."""
import os
import time

START = time.time()
import torch.distributed as dist  # noqa: E402

rank = int(os.environ["RANK"])
# the first run of this rank or a restart: torchrun restarts the ranks of the nodes that did not
# fail without raising their TORCHELASTIC_RESTART_COUNT, so a marker file (BENCH_DIR is shared
# by the nodes) tells instead
marker = os.path.join(os.environ["BENCH_DIR"], f"ran-{os.environ.get('TORCHELASTIC_RUN_ID', '')}-{rank}")
attempt = 1 if os.path.exists(marker) else 0
open(marker, "a").close()
print(f"BENCH START attempt={attempt} rank={rank} t={START:.3f}", flush=True)
dist.init_process_group("gloo", init_method="env://")
print(f"BENCH INIT attempt={attempt} rank={rank} t={time.time():.3f}", flush=True)
dist.barrier()
if attempt == 0:
    if rank == 2:
        time.sleep(2)
        print(f"BENCH KILL attempt={attempt} rank={rank} t={time.time():.3f}", flush=True)
        os.kill(os.getpid(), 9)
    time.sleep(120)  # the launcher stops this rank when rank 2 dies
dist.destroy_process_group()
# torch 2.15 sometimes aborts in its C++ teardown at interpreter exit after a gloo group (see
# examples/train/ddp_torch.py); the figures are printed, so skip that teardown
os._exit(0)
