#!/usr/bin/env bash
# Measures shoal's UCX transport (go test -bench in rdma/ucx) beside UCX's own ucx_perftest
# on the same machine in one run, over UCX_TLS=tcp and tcp,shm, and prints a markdown table
# with the ratio shoal / perftest. perftest runs with -e (endpoints with peer error handling,
# as shoal's are; UCX then avoids sysv/posix shared memory) and, for reference, without.
# Bandwidth: 1 MiB stream messages one way (shoal: two workers of one process). Latency: 8 B
# ping-pong between two processes, half the round trip. Needs ucx-utils (scripts/deps.sh).
#   scripts/bench-ucx.sh            # about a minute
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ucx_perftest >/dev/null || { echo "bench-ucx: ucx_perftest missing: apt-get install ucx-utils" >&2; exit 1; }
PORT=${PORT:-13337}
BW_SIZE=1048576
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# perftest TLS TEST SIZE ITERS -> its "Final:" line (iters, lat typical/avg/overall us,
# bw avg/overall MiB/s, msgrate avg/overall)
perftest() {
  local tls=$1 test=$2 size=$3 iters=$4 e=${5:-}
  UCX_TLS=$tls ucx_perftest -p "$PORT" $e >"$tmp/server.log" 2>&1 &
  local srv=$!
  sleep 0.5
  UCX_TLS=$tls ucx_perftest 127.0.0.1 -p "$PORT" $e -t "$test" -s "$size" -n "$iters" 2>&1 | awk '/^Final:/{print}'
  wait "$srv" || true
}

echo "machine: $(nproc) CPUs, $(awk '/model name/{$1=$2=$3="";print;exit}' /proc/cpuinfo | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC'); UCX $(ucx_info -v | awk '/Version/{print $3}')"
go test -run '^$' -bench 'StreamBW/.*/1024KiB|StreamLatProcess' -benchtime 2s ./rdma/ucx >"$tmp/go.txt"

echo
echo "| UCX_TLS | measure | shoal (rdma/ucx) | ucx_perftest -e | shoal / perftest -e | ucx_perftest (no error handling) |"
echo "| --- | --- | --- | --- | --- | --- |"
for tls in tcp tcp,shm; do
  bw_e=$(perftest "$tls" stream_bw $BW_SIZE 2000 -e | awk '{printf "%.0f", $7*1.048576}')
  lat_e=$(perftest "$tls" stream_lat 8 10000 -e | awk '{printf "%.1f", $5}')
  bw_n=$(perftest "$tls" stream_bw $BW_SIZE 2000 | awk '{printf "%.0f", $7*1.048576}')
  lat_n=$(perftest "$tls" stream_lat 8 10000 | awk '{printf "%.1f", $5}')
  bw_go=$(awk -v m="$tls" 'index($1, "StreamBW/"m"/1024KiB-") {printf "%.0f", $5; exit}' "$tmp/go.txt")
  lat_go=$(awk -v m="$tls" 'index($1, "StreamLatProcess/"m"-") {printf "%.1f", $3/2000; exit}' "$tmp/go.txt")
  echo "| $tls | stream bandwidth, 1 MiB messages (MB/s) | $bw_go | $bw_e | $(awk -v a="$bw_go" -v b="$bw_e" 'BEGIN{printf "%.2f", a/b}') | $bw_n |"
  echo "| $tls | one-way latency, 8 B ping-pong between processes (us) | $lat_go | $lat_e | $(awk -v a="$lat_go" -v b="$lat_e" 'BEGIN{printf "%.2f", a/b}') | $lat_n |"
done
