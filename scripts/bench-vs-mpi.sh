#!/usr/bin/env bash
# shoal's collectives vs OpenMPI on this machine, in one run, with the same rank counts, sizes,
# warm-up and timing rule (median of REPEATS runs of the slowest rank's time per operation; the
# iteration count per size is the same formula in both): shoal shm vs OpenMPI's vader (shared
# memory), shoal tcp on loopback vs OpenMPI's tcp BTL. Prints, per rank count and transport,
# bytes, both times, both busbw and the ratios (busbw: shoal/mpi, higher is better for shoal;
# time: shoal/mpi, lower is better).
# Ranks are bound to CPUs the same way on both sides (BIND=cpu: rank r on CPU r mod CPUs; BIND=none:
# neither binds).
#   NP="2 4" MIN=4 MAX=268435456 FACTOR=4 REPEATS=5 WARMUP=2 OP=allreduce TRANSPORTS="shm tcp" BIND=cpu scripts/bench-vs-mpi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-"2 4"}; MIN=${MIN:-4}; MAX=${MAX:-268435456}; FACTOR=${FACTOR:-4}
REPEATS=${REPEATS:-5}; WARMUP=${WARMUP:-2}; OP=${OP:-allreduce}; BIND=${BIND:-cpu}
mpibind=core:overload-allowed; [[ $BIND == none ]] && mpibind=none
command -v mpicc >/dev/null && command -v mpirun >/dev/null || { echo "bench-vs-mpi: needs OpenMPI (apt-get install libopenmpi-dev openmpi-bin, or scripts/deps.sh)" >&2; exit 1; }
[[ -x bin/shoal ]] || { echo "bench-vs-mpi: build shoal first (make build)" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mpicc -O2 -o "$work/mpi_allreduce" scripts/mpi_allreduce.c
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-cma}
echo "# $OP: shoal vs OpenMPI $(mpirun --version 2>/dev/null | head -1 | awk '{print $NF}'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg), bind $BIND, shoal $(git rev-parse --short HEAD 2>/dev/null)"
for np in $NP; do
  for tr in ${TRANSPORTS:-shm tcp}; do
    if [[ $tr == shm ]]; then mca=(--mca pml ob1 --mca btl self,vader); else mca=(--mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include lo); fi
    # interleave: shoal, mpi, for each rank count and transport
    # both bind rank r to CPU r mod CPUs (shoal's --bind cpu is mpirun's --bind-to core:overload-allowed)
    ./bin/shoal bench "$OP" --np "$np" --min-bytes "$MIN" --max-bytes "$MAX" --step-factor "$FACTOR" \
      --repeats "$REPEATS" --warmup "$WARMUP" --transport "$tr" --bind "$BIND" | grep -v '^#' | tail -n +2 > "$work/shoal"
    mpirun --oversubscribe -np "$np" --bind-to "$mpibind" "${mca[@]}" "$work/mpi_allreduce" "$OP" "$MIN" "$MAX" "$FACTOR" "$REPEATS" "$WARMUP" \
      2>/dev/null | grep -v '^#' | tail -n +2 > "$work/mpi"
    echo
    echo "## np=$np  shoal $tr vs OpenMPI $([[ $tr == shm ]] && echo vader || echo 'tcp BTL (loopback)')"
    printf '%12s %12s %12s %10s %10s %10s %10s\n' bytes shoal_us mpi_us shoal_bus mpi_bus bus_ratio time_ratio
    join <(awk '{print $1, $2, $4}' "$work/shoal") <(awk '{print $1, $2, $4}' "$work/mpi") |
      awk '{ br = ($5 > 0) ? $3 / $5 : 0; tr = ($4 > 0) ? $2 / $4 : 0;
             printf "%12d %12.2f %12.2f %10.3f %10.3f %10.2f %10.2f\n", $1, $2, $4, $3, $5, br, tr }'
  done
done
