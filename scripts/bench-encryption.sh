#!/usr/bin/env bash
# What encrypting the data plane costs (docs/benchmarks.md, "Encryption"): object transfer and a
# two-rank allreduce between two nodes of the Slurm test cluster (scripts/slurm-cluster.sh:
# network namespaces shoal-n1 and shoal-n2 on one machine, joined by the bridge shoalbr0), with
# the default TLS 1.3 and with --insecure-data-plane, in the same run, alternating ROUNDS times,
# 1 MiB to 256 MiB. Prints one markdown table: per size, the medians of both settings and their
# ratio (encrypted / clear, for rates: 1.00 = free).
#
#   flock -x /tmp/shoal-bench.lock flock /tmp/shoal-slurm.lock scripts/bench-encryption.sh [REPS] [ROUNDS]
#
# object    scripts/bench_encryption.py: a task on node2 returns an array into node2's store; the
#           driver on node1 times ray.get (pulled in 8 MiB pieces over 2 connections of 4 TCP
#           streams, docs/object-transfer.md); median of REPS after one warm-up.
# allreduce `shoal bench allreduce --transport tcp`, rank 0 on node1 and rank 1 on node2, busbw
#           (nccl-tests' definition; median of REPS).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REPS=${1:-3}
ROUNDS=${2:-2}
export SLURM_CONF=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/slurm.conf
export PATH=$ROOT/bin:$PATH PYTHONPATH=$ROOT/python
export SHOAL_RENDEZVOUS_DIR=$(mktemp -d /tmp/shoal-rdv.XXXXXX)
WORK=$(mktemp -d /tmp/shoal-bench-enc.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
[[ -x bin/shoal ]] || make build >/dev/null
scripts/slurm-cluster.sh up >/dev/null

for ((r = 0; r < ROUNDS; r++)); do
  for mode in tls clear; do
    flag=
    [[ $mode == clear ]] && flag=--insecure-data-plane
    cat > "$WORK/$mode.$r.sbatch" <<SB
#!/bin/bash
#SBATCH -N 2 --ntasks-per-node=1 --output=$WORK/$mode.$r.out
srun bash -c 'exec shoal launch $flag --object-store-memory 2g --resources "{\"on_\$SLURMD_NODENAME\": 100}" -- python3 $ROOT/scripts/bench_encryption.py $REPS'
SB
    (cd "$WORK" && timeout 1800 sbatch --wait "$WORK/$mode.$r.sbatch" >/dev/null) || { cat "$WORK/$mode.$r.out"; exit 1; }
    if grep -q AR-ERROR "$WORK/$mode.$r.out"; then cat "$WORK/$mode.$r.out"; exit 1; fi
  done
done

# med KIND COLUMN SIZE MODE: the median over rounds of one column of the KIND lines for SIZE
med() {
  cat "$WORK"/"$4".*.out | awk -v k="$1" -v c="$2" -v s="$3" '$1 == k && $2 == s {print $c}' |
    sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}'; }
mib() { echo "$(($1 >> 20)) MiB"; }
echo "data plane encryption, node1 <-> node2 (medians of $ROUNDS rounds x $REPS; load $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs)"
printf '| %-8s | %-22s | %-22s | %-7s |\n' size "TLS 1.3 (default)" "--insecure-data-plane" "ratio"
printf '| %-8s | %-22s | %-22s | %-7s |\n' --- --- --- ---
for s in 1048576 4194304 16777216 67108864 268435456; do
  a=$(med OBJ 3 $s tls); b=$(med OBJ 3 $s clear)
  printf '| %-8s | %-22s | %-22s | %-7s |\n' "$(mib $s)" "object $a GB/s" "object $b GB/s" "$(ratio "$a" "$b")"
done
for s in 1048576 4194304 16777216 67108864 268435456; do
  a=$(med AR 4 $s tls); b=$(med AR 4 $s clear)
  printf '| %-8s | %-22s | %-22s | %-7s |\n' "$(mib $s)" "allreduce $a GB/s" "allreduce $b GB/s" "$(ratio "$a" "$b")"
done
