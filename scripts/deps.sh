#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian packages, Python packages, and the Python
# SDK in editable mode. Fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(slurm-client libslurm-dev util-linux iproute2)
# YARN tests: the MiniYARNCluster harness (test/yarn) is built with Maven and runs on JDK 17
APT_PKGS+=(openjdk-17-jdk-headless maven curl)
# collectives: OpenMPI is the peer that scripts/bench-vs-mpi.sh measures against
APT_PKGS+=(libopenmpi-dev openmpi-bin)
# UCX: the rdma/ucx backend (opened with dlopen) and ucx_perftest for its benchmark
APT_PKGS+=(libucx-dev ucx-utils)
# the capture test (test/slurm/security-capture.sh) records the test cluster's bridge
APT_PKGS+=(tcpdump)
# scripts/chaos.sh: packet loss in a node's namespace (nft's random drop; this kernel has no sch_netem)
APT_PKGS+=(nftables)
# ... and a delayed link: iptables-legacy's NFQUEUE target hands packets to test/netdelay
APT_PKGS+=(iptables)
# the release (scripts/release.sh, docs/release.md): patchelf and nm for scripts/zig-cc.sh;
# objdump and readelf for its check, which runs the aarch64 binary under qemu-user with Debian's
# aarch64 glibc
APT_PKGS+=(patchelf binutils qemu-user libc6-arm64-cross)
# the dashboard's page in a headless browser, and promtool for /metrics (test/obs)
APT_PKGS+=(chromium prometheus)
PIP_PKGS=(numpy msgpack cloudpickle pytest wheel setuptools ml_dtypes)
# the release: zig (the C compiler and linker for glibc 2.17) and auditwheel (the manylinux check)
PIP_PKGS+=(ziglang auditwheel)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
need=()
for p in "${PIP_PKGS[@]}"; do
  "$PY" -c "import $p" 2>/dev/null || need+=("$p")
done
"$PY" -c "import xdist" 2>/dev/null || need+=(pytest-xdist) # make test-python's two workers
if ((${#need[@]})); then
  echo "deps: installing Python packages: ${need[*]}"
  "$PY" -m pip install -q "${need[@]}"
fi
# torch, for the training tests (gloo on CPU). PyPI's only Linux x86_64 wheel is built with CUDA:
# `import torch` needs its nvidia-* libraries even on a CPU-only machine (with --no-deps it fails
# loading libcublasLt), so the full install it is: about 60 s and 5.3 GB here (measured 2026-11-29).
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "deps: installing torch (about a minute)"
  "$PY" -m pip install -q torch
fi
# submitit, the peer scripts/bench-preempt.sh compares shoal train --requeue with
if ! "$PY" -c "import submitit" 2>/dev/null; then
  "$PY" -m pip install -q submitit
fi
if ! "$PY" -c "import shoal, os, sys; sys.exit(0 if os.path.realpath(shoal.__file__).startswith(os.path.realpath('python')) else 1)" 2>/dev/null; then
  echo "deps: installing the Python SDK (pip install -e python)"
  "$PY" -m pip install -q --no-build-isolation --no-deps -e python >/dev/null
fi
