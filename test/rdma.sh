#!/usr/bin/env bash
# End-to-end checks of the run-time libraries behind rdma/ucx and rdma/nccl as a user meets
# them: `shoal transports` with and without UCX, the inter-node choice on fixture nodes, and
# that the shoal binary neither links nor needs libucp, libnccl or libcudart to start.
set -uo pipefail
cd "$(dirname "$0")/.."
SHOAL=${SHOAL:-$PWD/bin/shoal}
FIX=nodeagent/netdev/testdata
pass=0; fail=0
ok()   { pass=$((pass+1)); echo "ok   $1"; }
bad()  { fail=$((fail+1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
has() { grep -q -- "$2" <<<"$1"; }

libs=$(ldd "$SHOAL" 2>&1)
check "binary: no link-time dependency on libucp, libucs, libnccl or libcudart" \
  eval '! has "$libs" "libucp\|libucs\|libnccl\|libcudart"'

out=$("$SHOAL" transports 2>&1); rc=$?
if dpkg-query -W -f='${Status}' libucx0 2>/dev/null | grep -q "install ok installed"; then
  check "transports: UCX works where libucx0 is installed" eval '[ $rc -eq 0 ] && has "$out" "^ucx   available      UCX 1\."'
else
  check "transports: UCX reported missing without libucx0" eval '[ $rc -eq 0 ] && has "$out" "^ucx   not available"'
fi
check "transports: NCCL missing is reported with the reason, exit 0" \
  eval '[ $rc -eq 0 ] && { has "$out" "^nccl  available" || has "$out" "^nccl  not available.*SHOAL_NCCL_LIB"; }'

out=$(SHOAL_UCX_LIB=/nonexistent/libucp.so.0 "$SHOAL" transports 2>&1); rc=$?
check "transports: a hidden UCX is 'not available' naming the path" \
  eval '[ $rc -eq 0 ] && has "$out" "^ucx   not available.*/nonexistent/libucp.so.0"'
check "run: shoal starts and runs a command with UCX and NCCL hidden" \
  env SHOAL_UCX_LIB=/nonexistent SHOAL_NCCL_LIB=/nonexistent "$SHOAL" run -- true

out=$("$SHOAL" transports --insecure-data-plane --sysfs-root "$FIX/dgx/sys" 2>&1)
check "transports: a node with ACTIVE InfiniBand ports sends to other nodes over ucx (insecure data plane)" \
  eval 'has "$out" "peers on other nodes: ucx (RDMA port mlx5_0/1 is ACTIVE (InfiniBand))"'
out=$("$SHOAL" transports --sysfs-root "$FIX/dgx/sys" 2>&1)
check "transports: with the data plane encrypted (default), InfiniBand still means tcp, and it says why" \
  eval 'has "$out" "peers on other nodes: tcp (.*the data plane is encrypted.*--insecure-data-plane allows ucx"'
out=$(SHOAL_UCX_LIB=/nonexistent "$SHOAL" transports --sysfs-root "$FIX/dgx/sys" 2>&1)
check "transports: InfiniBand without UCX falls back to tcp and says why" \
  eval 'has "$out" "peers on other nodes: tcp (.*but UCX does not work here)"'
out=$("$SHOAL" transports --json --sysfs-root "$FIX/plain/sys" 2>&1)
check "transports --json: a node without RDMA uses tcp" \
  eval 'python3 -c "import json,sys; r=json.loads(sys.argv[1]); assert r[\"inter_node\"][\"backend\"]==\"tcp\", r" "$out"'

if "$SHOAL" transports | grep -q "^ucx   available"; then
  # UCX_TLS=tcp: the stand-in for a NIC between nodes, which is all shoal uses UCX for (ranks
  # on one node meet over shoal's own shm transport). With UCX's shm transports also listed,
  # 3 runs of 20 on this 2-core machine under a parallel `make test` failed with UCX reporting
  # "Endpoint timeout" on a live peer; 0 of 18 with tcp alone.
  out=$(SHOAL_INSECURE_DATA_PLANE=1 SHOAL_UCX=on UCX_TLS=tcp "$SHOAL" bench allreduce --np 3 --min-bytes 16 --max-bytes 1MiB --step-factor 16 --transport ucx 2>&1); rc=$?
  check "bench allreduce: 3 rank processes run collectives over the ucx backend (insecure data plane)" \
    eval '[ $rc -eq 0 ] && has "$out" "^ *1048576 "'
  out=$(SHOAL_UCX=on "$SHOAL" bench allreduce --np 2 --max-bytes 4 --transport ucx 2>&1); rc=$?
  check "bench allreduce: ucx on an encrypted data plane is refused, naming --insecure-data-plane" \
    eval '[ $rc -ne 0 ] && has "$out" "insecure-data-plane"'
  out=$(SHOAL_INSECURE_DATA_PLANE=1 "$SHOAL" bench allreduce --np 2 --max-bytes 4 --transport ucx 2>&1); rc=$?
  check "bench allreduce: ucx forced on a node without RDMA says why and how to force it" \
    eval '[ $rc -ne 0 ] && has "$out" "SHOAL_UCX=on"'
fi

out=$(SHOAL_NCCL_LIB=/nonexistent/libnccl.so.2 "$SHOAL" bench nccl 2>&1); rc=$?
check "bench nccl: without NCCL, exit 1 naming the library" eval '[ $rc -eq 1 ] && has "$out" "/nonexistent/libnccl.so.2"'
if command -v gcc >/dev/null; then
  fake=$(mktemp -d)/libfakenccl.so
  gcc -shared -fPIC -o "$fake" rdma/nccl/testdata/fakenccl.c
  for op in allreduce allgather reducescatter broadcast; do
    out=$(SHOAL_NCCL_LIB=$fake SHOAL_CUDART_LIB=$fake "$SHOAL" bench nccl --op $op --min-bytes 8 --max-bytes 64KiB --step-factor 16 --repeats 2 2>&1); rc=$?
    check "bench nccl --op $op: runs and checks its results (fake NCCL and CUDA: no GPU here)" \
      eval '[ $rc -eq 0 ] && has "$out" "^ *32768 "'
  done
  rm -rf "$(dirname "$fake")"
fi

echo "rdma e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
