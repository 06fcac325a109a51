#!/usr/bin/env bash
# Gang launch and restart on the 3-node Slurm test cluster, shoal train next to torchrun, in one run
# (run it under `flock /tmp/shoal-slurm.lock`). For each launcher, ROUNDS times (default 3):
#   launch  = from the launcher's start to every rank past init_process_group("gloo")
#   restart = from rank 2's SIGKILL to every rank of the new attempt past init_process_group
#             (respawn = to every new rank process started, before Python imports torch)
# shoal: `srun shoal launch -- shoal train --nproc-per-node 1 --max-restarts 1`, timed from
# `shoal train` (the cluster is up; "with launch" adds `shoal launch`'s start-up, from srun).
# torchrun: `srun -N3 python -m torch.distributed.run --nnodes 3 --nproc-per-node 1
# --rdzv-backend c10d --max-restarts 1` (torchrun's own entry point without pyenv's shim),
# timed from srun, and ended after 90 s (a torchrun whose restart failed waits for its
# rendezvous much longer). Both use gloo on eth0 (GLOO_SOCKET_IFNAME: the test nodes share one host
# name; torchrun's c10d store is told which node hosts it with --rdzv-conf is_host, since the
# nodes' host name resolves to 127.0.0.1). shoal's restart runs in the ranks' warm spares (torch
# imported already, the default --preload auto); a third arm, `shoal train --preload ''`,
# restarts cold, as torchrun does. (The test nodes reach no DNS server; slurm-cluster.sh puts
# the names of their IPv4-mapped addresses, which c10d looks up, in /etc/hosts.)
# Prints medians and the ratios; docs/benchmarks.md records a run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
export SLURM_CONF=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/slurm.conf
export PATH=$ROOT/bin:$PATH PYTHONPATH=$ROOT/python${PYTHONPATH:+:$PYTHONPATH}
export SHOAL_RENDEZVOUS_DIR=$(mktemp -d /tmp/shoal-rdv.XXXXXX)
WORK=$(mktemp -d /tmp/shoal-bench-train.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
python3 -c "import torch" || { echo "bench: torch is not installed (scripts/deps.sh)"; exit 1; }
./scripts/slurm-cluster.sh up >/dev/null || exit 1
RANK_PY=$ROOT/scripts/bench_train_rank.py

run() { # NAME BODY: an sbatch job on 3 nodes, waited for
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --time=4 --output=%s/%s.out\nexport GLOO_SOCKET_IFNAME=eth0 BENCH_DIR=%s\n%s\n' "$WORK" "$1" "$WORK" "$2" > "$WORK/$1.sbatch"
  timeout 300 sbatch --wait "$WORK/$1.sbatch" >/dev/null 2>&1
}

# times FILE T0-LABEL: "launch respawn restart processes startup" in seconds (nan where the run
# did not get that far), from the BENCH lines and the T0 line
times() {
  python3 - "$1" "$2" <<'PY'
import re, statistics, sys
text = open(sys.argv[1]).read()
t0 = float(re.search(rf"{sys.argv[2]} ([0-9.]+)", text).group(1))
ev = {}
for kind, att, rank, t in re.findall(r"BENCH (\w+) attempt=(\d) rank=(\d) t=([0-9.]+)", text):
    ev.setdefault((kind, int(att)), []).append(float(t))
def last(kind, att, base):
    v = ev.get((kind, att), [])
    return f"{max(v) - base:.3f}" if len(v) == 3 and base is not None else "nan"
kill = ev.get(("KILL", 0), [None])[0]
up = [i - s for i, s in zip(sorted(ev.get(("INIT", 0), [])), sorted(ev.get(("START", 0), [])))]
print(last("INIT", 0, t0), last("START", 1, kill), last("INIT", 1, kill), last("START", 0, t0),
      f"{statistics.median(up):.3f}" if up else "nan")
PY
}

declare -a S_L S_LL S_RS S_R S_P S_U T_L T_RS T_R T_P T_U C_RS C_R C_L
S_WARM=0
for i in $(seq "$ROUNDS"); do
  run "shoal$i" "T_SRUN=\$(date +%s.%N)
srun shoal launch -- bash -c \"echo T_SRUN \$T_SRUN; echo T_TRAIN \\\$(date +%s.%N); exec shoal train --nproc-per-node 1 --max-restarts 1 -- python3 $RANK_PY\""
  read -r l rs r p u <<<"$(times "$WORK/shoal$i.out" T_TRAIN)"
  read -r ll _ _ _ _ <<<"$(times "$WORK/shoal$i.out" T_SRUN)"
  S_L+=("$l"); S_LL+=("$ll"); S_RS+=("$rs"); S_R+=("$r"); S_P+=("$p"); S_U+=("$u")
  grep -q "3 ranks running (attempt 1, 3 from warm spares)" "$WORK/shoal$i.out" && S_WARM=$((S_WARM + 1))
  run "shoalcold$i" "srun shoal launch -- bash -c \"echo T_TRAIN \\\$(date +%s.%N); exec shoal train --nproc-per-node 1 --max-restarts 1 --preload '' -- python3 $RANK_PY\""
  read -r l rs r _ _ <<<"$(times "$WORK/shoalcold$i.out" T_TRAIN)"
  C_L+=("$l"); C_RS+=("$rs"); C_R+=("$r")
  run "torchrun$i" "echo T_SRUN \$(date +%s.%N)
timeout 90 srun bash -c 'exec python3 -m torch.distributed.run --nnodes 3 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 198.18.0.11:29500 --rdzv-id bench$i --rdzv-conf is_host=\$([ \$SLURMD_NODENAME = node1 ] && echo 1 || echo 0),join_timeout=60 --max-restarts 1 --local-addr \$(getent ahostsv4 \$SLURMD_NODENAME | head -1 | cut -d\" \" -f1) $RANK_PY'"
  read -r l rs r p u <<<"$(times "$WORK/torchrun$i.out" T_SRUN)"
  T_L+=("$l"); T_RS+=("$rs"); T_R+=("$r"); T_P+=("$p"); T_U+=("$u")
  echo "round $i: shoal processes ${S_P[-1]} s, launch ${S_L[-1]} s (with shoal launch ${S_LL[-1]} s), restart ${S_R[-1]} s (respawn ${S_RS[-1]} s); shoal --preload '' launch ${C_L[-1]} s, restart ${C_R[-1]} s (respawn ${C_RS[-1]} s); torchrun processes ${T_P[-1]} s, launch ${T_L[-1]} s, restart ${T_R[-1]} s (respawn ${T_RS[-1]} s)"
done
med() { # the median of the numbers among the arguments ("nan": the run did not get there)
  printf '%s\n' "$@" | grep -v nan | sort -g | awk '{a[NR]=$1} END {if (!NR) print "nan"; else print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}
fails() { local n=0 x; for x in "$@"; do [[ $x == nan ]] && n=$((n + 1)); done; echo "$n"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "nan" || b == "nan" || b == 0) print "-"; else printf "%.2f", a/b }'; }
sp=$(med "${S_P[@]}"); sl=$(med "${S_L[@]}"); sll=$(med "${S_LL[@]}"); srs=$(med "${S_RS[@]}"); sr=$(med "${S_R[@]}"); su=$(med "${S_U[@]}")
tp=$(med "${T_P[@]}"); tl=$(med "${T_L[@]}"); trs=$(med "${T_RS[@]}"); tr_=$(med "${T_R[@]}"); tu=$(med "${T_U[@]}")
cl=$(med "${C_L[@]}"); crs=$(med "${C_RS[@]}"); cr=$(med "${C_R[@]}")
echo
echo "| median of the rounds that got there, 3 nodes x 1 rank, gloo | shoal train (warm spares) | shoal train --preload '' (cold) | torchrun (c10d) | shoal / torchrun |"
echo "| --- | --- | --- | --- | --- |"
echo "| launch: start to every rank process started | $sp s | | $tp s | $(ratio "$sp" "$tp") |"
echo "| launch: start to every rank past init_process_group | $sl s (from srun shoal launch: $sll s) | $cl s | $tl s | $(ratio "$sl" "$tl") |"
echo "| restart: SIGKILL of a rank to every new rank's script running | $srs s | $crs s | $trs s | $(ratio "$srs" "$trs") |"
echo "| restart: SIGKILL of a rank to every new rank past init_process_group | $sr s | $cr s | $tr_ s | $(ratio "$sr" "$tr_") |"
echo "| a rank's own start-up, cold: process start to past init_process_group (torch import, c10d) | $su s | | $tu s | |"
echo "| rounds whose restart did not bring every rank past init_process_group | $(fails "${S_R[@]}") of $ROUNDS | $(fails "${C_R[@]}") of $ROUNDS | $(fails "${T_R[@]}") of $ROUNDS | |"
echo "| rounds whose restart ran in 3 warm spares | $S_WARM of $ROUNDS | | | |"
if [[ ${BENCH_KEEP:-} ]]; then cp "$WORK"/*.out "$BENCH_KEEP"/; fi
