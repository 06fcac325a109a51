#!/usr/bin/env bash
# Object transfer between two nodes of the Slurm test cluster (scripts/slurm-cluster.sh: network
# namespaces shoal-n1 and shoal-n2 on one machine), against raw TCP between the same namespaces,
# in the same run, and their ratio.
#
#   flock -x /tmp/shoal-bench.lock flock /tmp/shoal-slurm.lock scripts/bench-object-transfer.sh [REPS]
#
# raw TCP   scripts/rawtcp.py: one TCP stream from shoal-n2 to shoal-n1 (the direction objects
#           travel below), 1 GiB from one reused 8 MiB buffer, timed by the receiver from its
#           first byte to its last; median of REPS runs. Also 4 streams at once (256 MiB each,
#           first byte of any to last byte of all), since shoal's TCP transport stripes large
#           messages over 4 streams: the fair peer for shoal is the better of the two.
# shoal     scripts/bench_object_transfer.py under `srun shoal launch --object-store-memory 3g`:
#           a task on node2 returns a numpy array into node2's store; once it is ready, the
#           driver on node1 times ray.get, which pulls the bytes into node1's store in 8 MiB
#           pieces over 2 connections with requests in flight (docs/object-transfer.md) and
#           maps them; median of REPS runs. "four at once" gets four 256 MiB arrays in one
#           ray.get (pulled concurrently).
# Each row is compared with both raw rows. The bar (issue #5): shoal >= 80% of raw TCP; the
# fair peer is 4 streams, since shoal stripes over several. Printed, not enforced: the exit
# status is non-zero only on errors.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REPS=${1:-3}
export SLURM_CONF=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/slurm.conf
export PATH=$ROOT/bin:$PATH PYTHONPATH=$ROOT/python
export SHOAL_RENDEZVOUS_DIR=$(mktemp -d /tmp/shoal-rdv.XXXXXX)
WORK=$(mktemp -d /tmp/shoal-bench-obj.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
[[ -x bin/shoal ]] || make build >/dev/null
scripts/slurm-cluster.sh up >/dev/null

raw=()
for ((i = 0; i < REPS; i++)); do
  port=$((20000 + RANDOM % 20000))
  ip netns exec shoal-n1 python3 scripts/rawtcp.py recv 198.18.0.11 "$port" $((1 << 30)) > "$WORK/raw.out" &
  rpid=$!
  for _ in $(seq 50); do grep -q listening "$WORK/raw.out" 2>/dev/null && break; sleep 0.1; done
  ip netns exec shoal-n2 python3 scripts/rawtcp.py send 198.18.0.11 "$port" $((1 << 30))
  wait "$rpid"
  raw+=("$(tail -1 "$WORK/raw.out" | awk '{print $1}')")
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
raw_med=$(printf '%s\n' "${raw[@]}" | awk '{print $1}' | median)
raw4=()
for ((i = 0; i < REPS; i++)); do
  pids=()
  for s in 0 1 2 3; do
    port=$((20000 + RANDOM % 20000))
    ip netns exec shoal-n1 python3 scripts/rawtcp.py recv 198.18.0.11 "$port" $((1 << 28)) > "$WORK/raw4.$s" &
    pids+=($!)
    for _ in $(seq 50); do grep -q listening "$WORK/raw4.$s" 2>/dev/null && break; sleep 0.1; done
    ports[$s]=$port
  done
  for s in 0 1 2 3; do ip netns exec shoal-n2 python3 scripts/rawtcp.py send 198.18.0.11 "${ports[$s]}" $((1 << 28)) & done
  wait
  raw4+=("$(for s in 0 1 2 3; do tail -1 "$WORK/raw4.$s"; done | awk '{if (NR == 1 || $2 < a) a = $2; if ($3 > b) b = $3} END {printf "%.3f", 4 * 268435456 / (b - a) / 1e9}')")
done
raw4_med=$(printf '%s\n' "${raw4[@]}" | median)

cat > "$WORK/bench.sbatch" <<SB
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 --output=$WORK/bench.out
srun bash -c 'exec shoal launch --object-store-memory 3g --resources "{\"on_\$SLURMD_NODENAME\": 100}" -- python3 $ROOT/scripts/bench_object_transfer.py $REPS'
SB
(cd "$WORK" && timeout 900 sbatch --wait "$WORK/bench.sbatch" >/dev/null) || { cat "$WORK/bench.out"; exit 1; }

echo "object transfer node2 -> node1 (GB/s, median of $REPS; load $(cut -d' ' -f1-3 /proc/loadavg); raw TCP runs: ${raw[*]}; 4 streams: ${raw4[*]})"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
row() { printf '| %-38s | %8s | %10s | %10s |\n' "$1" "$2" "$(ratio "$2" "$raw_med")" "$(ratio "$2" "$raw4_med")"; }
printf '| %-38s | %8s | %10s | %10s |\n' case GB/s "vs 1 raw" "vs 4 raw"
row "raw TCP, one stream, 1 GiB" "$raw_med"
row "raw TCP, 4 streams, 4 x 256 MiB" "$raw4_med"
while read -r _ name _ rate _; do
  row "shoal ray.get, $name" "$rate"
done < <(grep '^RESULT' "$WORK/bench.out")
