#!/usr/bin/env bash
# make test-release: checks what scripts/release.sh put in dist/ (docs/release.md):
#   - both wheels, both tarballs and SHA256SUMS are there, named for the one version that
#     python/shoal/__init__.py gives, and the checksums match;
#   - every ELF (shoal, libshoalcoll.so, shoal_spank.so; wheel and tarball) is for its
#     architecture (X86-64 / AArch64), needs no glibc symbol version above 2.17 (objdump -T) and
#     no library outside manylinux2014's list; the wheel's binary is the tarball's;
#   - auditwheel show puts each wheel at manylinux_2_17 (= manylinux2014) or older;
#   - go-nvml's nvml* calls bind lazily to a libnvidia-ml.so.1 opened at run time (a stand-in
#     library that answers "driver not loaded"), and the binary starts without one;
#   - in a fresh virtual environment, with the x86_64 wheel and its dependencies from PyPI (and
#     numpy), from an empty directory with no checkout on PATH or sys.path: `shoal --version`
#     gives the version and commit, and `shoal run -- python -c ...` runs tasks, an actor, numpy
#     objects and a collective (libshoalcoll.so) from the installed package.
#   - the aarch64 binary, under qemu-user with Debian's aarch64 glibc, prints its version, binds
#     nvml* lazily, and is the agent of a `shoal run` whose Python workers run tasks, an actor
#     and numpy objects.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PY=${PYTHON:-python3}
DIST=${DIST:-dist}
DIST=$(cd "$DIST" && pwd)
MAX_GLIBC=2.17

pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { # check "what" cmd...: runs cmd, counts the result
  local what=$1
  shift
  local out
  if out=$("$@" 2>&1); then ok "$what"; else
    bad "$what"
    printf '%s\n' "$out" | tail -20 | sed 's/^/     /'
  fi
}

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' python/shoal/__init__.py)
[[ -n $version ]] || { echo "check-release: no __version__ in python/shoal/__init__.py" >&2; exit 1; }
commit=$(git rev-parse HEAD)
git diff --quiet HEAD -- || commit+=-dirty

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
empty=$work/empty # the working directory of the runs: nothing of a checkout
mkdir -p "$empty"

declare -A machine=([x86_64]="Advanced Micro Devices X86-64" [aarch64]="AArch64")
# manylinux2014 (PEP 599): the libraries a wheel may need from the system, and the dynamic loaders
allowed_needed='^(libc\.so\.6|libpthread\.so\.0|libdl\.so\.2|libm\.so\.6|librt\.so\.1|libresolv\.so\.2|libutil\.so\.1|libnsl\.so\.1|libgcc_s\.so\.1|libstdc\+\+\.so\.6|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$'

max_glibc() { objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1; }

elf_ok() { # elf_ok FILE ARCH: machine, symbol versions, needed libraries
  local f=$1 arch=$2 m v n
  m=$(readelf -h "$f" | sed -n 's/^ *Machine: *//p')
  [[ $m == "${machine[$arch]}" ]] || { echo "$f: machine '$m', want '${machine[$arch]}'"; return 1; }
  v=$(max_glibc "$f")
  [[ -n $v ]] || { echo "$f: objdump -T shows no GLIBC symbol version (not dynamically linked?)"; return 1; }
  [[ $(printf '%s\n%s\n' "$v" "$MAX_GLIBC" | sort -V | tail -1) == "$MAX_GLIBC" ]] ||
    { echo "$f: needs GLIBC_$v, above $MAX_GLIBC:"; objdump -T "$f" | grep "GLIBC_$v"; return 1; }
  for n in $(objdump -p "$f" | awk '$1 == "NEEDED" {print $2}'); do
    [[ $n =~ $allowed_needed ]] || { echo "$f: needs $n, which manylinux2014 does not allow"; return 1; }
  done
  echo "$f: ${machine[$arch]}, GLIBC_$v at most"
}

check "dist/SHA256SUMS matches the files" bash -c "cd '$DIST' && sha256sum --quiet -c SHA256SUMS"

for arch in x86_64 aarch64; do
  whl=$DIST/shoal-$version-py3-none-manylinux2014_$arch.whl
  tgz=$DIST/shoal-$version-linux-$arch.tar.gz
  if [[ ! -f $whl || ! -f $tgz ]]; then
    bad "$arch: $whl and $tgz exist (make release)"
    continue
  fi
  ok "$arch: $(basename "$whl") and $(basename "$tgz") exist"
  w=$work/whl-$arch t=$work/tar-$arch
  mkdir -p "$w" "$t"
  "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$w"
  tar -C "$t" -xzf "$tgz"
  root=$t/shoal-$version-linux-$arch
  for f in bin/shoal lib/shoal_spank.so src/shoal_spank.c etc/shoal.toml.example INSTALL; do
    [[ -s $root/$f ]] || bad "$arch: the tarball has $f"
  done
  [[ -x $root/bin/shoal ]] && ok "$arch: the tarball has bin/shoal, lib/shoal_spank.so, src/, etc/shoal.toml.example, INSTALL"
  check "$arch: INSTALL names version $version, commit $commit and $arch" \
    bash -c "grep -q 'shoal $version (commit $commit) for Linux $arch' '$root/INSTALL' || { head -1 '$root/INSTALL'; exit 1; }"
  check "$arch: the wheel's shoal/bin/shoal is the tarball's bin/shoal" cmp "$w/shoal/bin/shoal" "$root/bin/shoal"
  check "$arch: the wheel's shoal and libshoalcoll.so are executable in the archive" \
    "$PY" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for n in ("shoal/bin/shoal", "shoal/bin/libshoalcoll.so"):
    assert (z.getinfo(n).external_attr >> 16) & 0o111, n' "$whl"
  check "$arch: the wheel installs into platlib, tagged py3-none-manylinux2014_$arch" \
    bash -c "grep -qx 'Root-Is-Purelib: false' '$w/shoal-$version.dist-info/WHEEL' &&
      grep -qx 'Tag: py3-none-manylinux2014_$arch' '$w/shoal-$version.dist-info/WHEEL' &&
      grep -qx 'Version: $version' '$w/shoal-$version.dist-info/METADATA'"
  for f in "$w/shoal/bin/shoal" "$w/shoal/bin/libshoalcoll.so" "$root/lib/shoal_spank.so"; do
    check "$arch: ${f#"$work/"}: ${machine[$arch]}, GLIBC <= $MAX_GLIBC, only manylinux2014 libraries" elf_ok "$f" "$arch"
  done
  aw=$(auditwheel show "$whl" 2>&1) || true
  tag=$(printf '%s\n' "$aw" | tr '\n' ' ' | grep -o 'platform tag: *"manylinux_2_[0-9]*_[a-z0-9_]*"' | grep -o 'manylinux_[0-9a-z_]*' || true)
  minor=$(sed -n "s/^manylinux_2_\([0-9]*\)_$arch\$/\1/p" <<<"$tag")
  if [[ -n $minor ]] && ((minor <= 17)); then ok "$arch: auditwheel show: $tag (manylinux2014 is manylinux_2_17)"; else
    bad "$arch: auditwheel show gives manylinux_2_17_$arch or older"
    printf '%s\n' "$aw" | tail -20 | sed 's/^/     /'
  fi
done

x=$work/tar-x86_64/shoal-$version-linux-x86_64/bin/shoal
if [[ -x $x ]]; then
  check "x86_64: the tarball's shoal --version: 'shoal version $version (commit $commit)'" \
    bash -c "v=\$('$x' --version); [[ \$v == 'shoal version $version (commit $commit)' ]] || { echo \"got: \$v\"; exit 1; }"
  # go-nvml calls nvml* through symbols the link left undefined (scripts/zig-cc.sh): they must
  # bind lazily, to whatever libnvidia-ml.so.1 go-nvml opens, and not be needed at start-up
  mkdir -p "$work/nvml"
  cat >"$work/nvml/fake.c" <<'EOF'
/* a stand-in libnvidia-ml.so.1 whose init answers NVML_ERROR_DRIVER_NOT_LOADED (9) */
int nvmlInit_v2(void) { return 9; }
int nvmlInit(void) { return 9; }
int nvmlInitWithFlags(unsigned int flags) { (void)flags; return 9; }
int nvmlShutdown(void) { return 0; }
EOF
  cc -shared -fPIC -o "$work/nvml/libnvidia-ml.so.1" "$work/nvml/fake.c"
  check "x86_64: no libnvidia-ml.so.1: shoal starts and finds no GPU" \
    bash -c "'$x' --log-level info node info 2>&1 | grep -q 'no NVIDIA GPUs: libnvidia-ml.so.1 not found'"
  check "x86_64: a libnvidia-ml.so.1 on the library path: nvmlInit_v2 binds to it at run time" \
    bash -c "LD_LIBRARY_PATH='$work/nvml' '$x' --log-level info node info 2>&1 | grep -q 'no NVIDIA GPUs: NVIDIA kernel driver not loaded'"
fi

# the aarch64 files under qemu-user with Debian's aarch64 glibc (qemu-user, libc6-arm64-cross):
# the binary is the agent of a one-node cluster whose (x86_64) Python workers run tasks, an
# actor and numpy objects with the aarch64 wheel's SDK, and its nvml* calls bind lazily too
a=$work/tar-aarch64/shoal-$version-linux-aarch64/bin/shoal
sysroot=/usr/aarch64-linux-gnu
if [[ -x $a ]]; then
  if command -v qemu-aarch64 >/dev/null && [[ -e $sysroot/lib/ld-linux-aarch64.so.1 ]]; then
    qa=(env QEMU_LD_PREFIX=$sysroot qemu-aarch64)
    check "aarch64 (qemu): shoal --version: 'shoal version $version (commit $commit)'" \
      bash -c "v=\$(${qa[*]} '$a' --version); [[ \$v == 'shoal version $version (commit $commit)' ]] || { echo \"got: \$v\"; exit 1; }"
    mkdir -p "$work/nvml-aarch64"
    $PY -m ziglang cc -target aarch64-linux-gnu.2.17 -shared -fPIC -o "$work/nvml-aarch64/libnvidia-ml.so.1" "$work/nvml/fake.c"
    check "aarch64 (qemu): no libnvidia-ml.so.1: shoal starts and finds no GPU" \
      bash -c "${qa[*]} '$a' --log-level info node info 2>&1 | grep -q 'no NVIDIA GPUs: libnvidia-ml.so.1 not found'"
    check "aarch64 (qemu): a libnvidia-ml.so.1 on the library path: nvmlInit_v2 binds to it at run time" \
      bash -c "LD_LIBRARY_PATH='$work/nvml-aarch64' ${qa[*]} '$a' --log-level info node info 2>&1 | grep -q 'no NVIDIA GPUs: NVIDIA kernel driver not loaded'"
    cat >"$work/job-aarch64.py" <<'EOF'
import numpy as np
import shoal

shoal.init()

@shoal.remote
def square(x):
    return x * x

@shoal.remote
class Counter:
    def __init__(self):
        self.n = 0
    def add(self):
        self.n += 1
        return self.n

assert shoal.get([square.remote(i) for i in range(8)]) == [i * i for i in range(8)]
c = Counter.remote()
assert shoal.get([c.add.remote() for _ in range(3)]) == [1, 2, 3]
big = np.arange(1_000_000, dtype=np.int64)
assert np.array_equal(shoal.get(shoal.put(big)), big)
print("release-job-ok")
EOF
    check "aarch64 (qemu): shoal run -- python: tasks, an actor, numpy objects with the aarch64 wheel's SDK" \
      bash -c "cd '$empty' && PYTHONPATH='$work/whl-aarch64' timeout 300 ${qa[*]} '$a' run --num-cpus 2 -- $PY '$work/job-aarch64.py' 2>&1 | tee /dev/stderr | grep -qx release-job-ok"
  else
    bad "aarch64 (qemu): qemu-aarch64 and $sysroot: apt-get install qemu-user libc6-arm64-cross (scripts/deps.sh)"
  fi
fi

# the user's way: a fresh venv, the wheel from dist/, its dependencies from PyPI
whl=$DIST/shoal-$version-py3-none-manylinux2014_x86_64.whl
venv=$work/venv
if [[ -f $whl ]] && "$PY" -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check "$whl" numpy; then
  ok "a fresh venv: pip install $(basename "$whl") numpy"
  # no checkout: PATH has the venv and the system, PYTHONPATH and SHOAL_* are unset, cwd is empty
  inenv=(env -i HOME="$HOME" PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8 TMPDIR="${TMPDIR:-/tmp}")
  check "venv: \`shoal\` is the venv's entry point" bash -c "cd '$empty' && [[ \$(${inenv[*]} sh -c 'command -v shoal') == '$venv/bin/shoal' ]]"
  check "venv: shoal --version: 'shoal version $version (commit $commit)'" \
    bash -c "cd '$empty' && v=\$(${inenv[*]} shoal --version) && [[ \$v == 'shoal version $version (commit $commit)' ]] || { echo \"got: \$v\"; exit 1; }"
  check "venv: shoal.__version__ and the installed metadata say $version" \
    bash -c "cd '$empty' && ${inenv[*]} python -c 'import shoal, importlib.metadata as m; assert shoal.__version__ == m.version(\"shoal\") == \"$version\", (shoal.__version__, m.version(\"shoal\"))'"
  cat >"$work/job.py" <<'EOF'
import os, sys
import numpy as np
import shoal
from shoal import _api, collective as col

venv = os.environ["VENV"]
# the SDK and its binary come from the venv, and nothing of a checkout is on the path
assert os.path.realpath(shoal.__file__).startswith(os.path.realpath(venv) + "/"), shoal.__file__
assert os.path.realpath(_api._shoal_binary()).startswith(os.path.realpath(venv) + "/"), _api._shoal_binary()
assert "PYTHONPATH" not in os.environ and "SHOAL_BIN" not in os.environ
for p in sys.path:
    assert not os.path.exists(os.path.join(p, "shoal", "_api.py")) or p.startswith(venv), ("a checkout on sys.path", p)

shoal.init()

@shoal.remote
def square(x):
    return x * x

@shoal.remote
def where():
    import shoal as s
    return s.__file__

@shoal.remote
def total(a):
    return float(a.sum())

@shoal.remote
class Counter:
    def __init__(self):
        self.n = 0
    def add(self, k):
        self.n += k
        return self.n

@shoal.remote(num_cpus=0)
class Rank:
    def allreduce(self, rank, n):
        col.init_group(n, rank, group_name="r", timeout=60)
        a = np.full(1000, rank + 1, dtype=np.float64)
        col.allreduce(a, group_name="r")
        return float(a[0])

assert shoal.get([square.remote(i) for i in range(8)]) == [i * i for i in range(8)]
assert os.path.realpath(shoal.get(where.remote())).startswith(os.path.realpath(venv) + "/")
c = Counter.remote()
assert shoal.get([c.add.remote(1) for _ in range(5)])[-1] == 5
big = np.arange(2_000_000, dtype=np.float64)
ref = shoal.put(big)
assert np.array_equal(shoal.get(ref), big)
assert shoal.get(total.remote(ref)) == float(big.sum())
ranks = [Rank.remote() for _ in range(2)]
assert shoal.get([r.allreduce.remote(i, 2) for i, r in enumerate(ranks)]) == [3.0, 3.0]
print("release-job-ok")
EOF
  check "venv: shoal run -- python job.py: tasks, an actor, numpy objects, a collective, all from the venv" \
    bash -c "cd '$empty' && ${inenv[*]} VENV='$venv' timeout 300 shoal run --num-cpus 4 -- python '$work/job.py' 2>&1 | tee /dev/stderr | grep -qx release-job-ok"
else
  bad "a fresh venv: pip install $(basename "$whl") numpy"
fi

echo "check-release: $pass passed, $fail failed"
((fail == 0))
