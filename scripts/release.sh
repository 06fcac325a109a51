#!/usr/bin/env bash
# make release: builds, from this checkout, what a user or an admin installs (docs/release.md):
#
#   dist/shoal-VERSION-py3-none-manylinux2014_{x86_64,aarch64}.whl   the Python SDK with the shoal
#        binary and libshoalcoll.so in shoal/bin/ and a `shoal` command (shoal/__main__.py)
#   dist/shoal-VERSION-linux-{x86_64,aarch64}.tar.gz   for admins: bin/shoal, the SPANK plugin
#        (and its source), an example shoal.toml and INSTALL
#   dist/SHA256SUMS
#
# Every ELF is built against glibc 2.17 symbol versions with zig cc (scripts/zig-cc.sh), so it
# runs on CentOS 7 and later. VERSION is python/shoal/__init__.py's __version__ (the one place it
# is written); the commit is git's HEAD, "-dirty" when tracked files differ from it.
#
# Environment: SHOAL_RELEASE_ARCHES (default "x86_64 aarch64"), DIST (default dist), PYTHON
# (default python3; it must have ziglang, wheel and setuptools: scripts/deps.sh installs them),
# GOCACHE (the Go build cache; zig's own cache is ~/.cache/zig): a warm cache makes a rebuild
# take seconds, a cold one several minutes per architecture (sqlite3.c).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

die() { echo "release: $*" >&2; exit 1; }

PY=${PYTHON:-python3}
DIST=${DIST:-dist}
ARCHES=${SHOAL_RELEASE_ARCHES:-x86_64 aarch64}
GO=${GO:-go}

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' python/shoal/__init__.py)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([a-z0-9.+-]*)$ ]] ||
  die "python/shoal/__init__.py: no __version__ = \"X.Y.Z\" line (found '$version'); it is the release's version"
commit=$(git rev-parse HEAD 2>/dev/null) || die "not a git checkout: the release records the commit it was built from"
git diff --quiet HEAD -- 2>/dev/null || commit+=-dirty

export ZIG="$PY -m ziglang"
$ZIG version >/dev/null 2>&1 || die "zig not found: $PY -m pip install ziglang (scripts/deps.sh installs it)"
command -v patchelf >/dev/null || die "patchelf not found: apt-get install patchelf (scripts/deps.sh installs it)"
command -v nm >/dev/null || die "nm not found: apt-get install binutils"
$PY -c 'import setuptools, wheel' 2>/dev/null || die "$PY lacks setuptools or wheel: $PY -m pip install setuptools wheel"
[[ -f /usr/include/slurm/spank.h ]] || die "/usr/include/slurm/spank.h not found: the SPANK plugin needs it (apt-get install libslurm-dev)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# spank.h alone on the include path: /usr/include itself would bring this machine's glibc headers
mkdir -p "$work/inc" && ln -s /usr/include/slurm "$work/inc/slurm"

mkdir -p "$DIST"
rm -f "$DIST"/shoal-*.whl "$DIST"/shoal-*.tar.gz "$DIST"/SHA256SUMS
mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)

for arch in $ARCHES; do
  case $arch in
    x86_64) goarch=amd64 ;;
    aarch64) goarch=arm64 ;;
    *) die "SHOAL_RELEASE_ARCHES: unknown architecture '$arch' (x86_64 or aarch64)" ;;
  esac
  target=$arch-linux-gnu.2.17
  b=$work/$arch
  mkdir -p "$b"
  echo "release: $arch: shoal $version ($commit) for $target"
  # netgo: Go's own DNS resolver, so the binary needs no libresolv (docs/release.md says why);
  # os/user stays on cgo (getpwnam_r), so users from LDAP/SSSD resolve through NSS
  goenv=(env CGO_ENABLED=1 GOOS=linux GOARCH=$goarch CC="$repo/scripts/zig-cc.sh" ZIG_TARGET=$target
    CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations")
  ldflags="-X main.version=$version -X main.commit=$commit"
  "${goenv[@]}" $GO build -trimpath -tags netgo -ldflags "$ldflags" -o "$b/shoal" ./cmd/shoal
  "${goenv[@]}" $GO build -trimpath -tags netgo -buildmode=c-shared -o "$b/libshoalcoll.so" ./cmd/libshoalcoll
  rm -f "$b/libshoalcoll.h"
  $ZIG cc -target "$target" -shared -fPIC -O2 -Wall -Wextra -Werror -I "$work/inc" \
    -o "$b/shoal_spank.so" slurm/spank/shoal_spank.c

  # the wheel: a copy of python/ with this architecture's binaries in shoal/bin/
  s=$work/py-$arch
  mkdir -p "$s"
  cp python/pyproject.toml python/setup.py "$s/"
  (cd python && find shoal -name __pycache__ -prune -o -path shoal/bin -prune -o -type f -name '*.py' -print) |
    while read -r f; do mkdir -p "$s/$(dirname "$f")" && cp "python/$f" "$s/$f"; done
  mkdir -p "$s/shoal/bin"
  install -m 0755 "$b/shoal" "$s/shoal/bin/shoal"
  install -m 0755 "$b/libshoalcoll.so" "$s/shoal/bin/libshoalcoll.so"
  SHOAL_WHEEL_PLATFORM=manylinux2014_$arch $PY -m pip wheel -q --no-deps --no-build-isolation -w "$work/whl-$arch" "$s"
  whl=$(ls "$work/whl-$arch"/*.whl)
  [[ $(basename "$whl") == "shoal-$version-py3-none-manylinux2014_$arch.whl" ]] ||
    die "the wheel came out as $(basename "$whl"), not shoal-$version-py3-none-manylinux2014_$arch.whl"
  cp "$whl" "$DIST/"

  # the admin tarball
  name=shoal-$version-linux-$arch
  t=$work/tar/$name
  mkdir -p "$t/bin" "$t/lib" "$t/etc" "$t/src"
  install -m 0755 "$b/shoal" "$t/bin/shoal"
  install -m 0755 "$b/shoal_spank.so" "$t/lib/shoal_spank.so"
  install -m 0644 slurm/spank/shoal_spank.c "$t/src/shoal_spank.c"
  install -m 0644 examples/shoal.toml "$t/etc/shoal.toml.example"
  slurm_ver=$(sed -n 's/^#define SLURM_VERSION_STRING "\(.*\)"/\1/p' /usr/include/slurm/slurm_version.h)
  sed -e "s/@VERSION@/$version/g" -e "s/@COMMIT@/$commit/g" -e "s/@ARCH@/$arch/g" -e "s/@SLURM@/$slurm_ver/g" \
    scripts/release-INSTALL.txt >"$t/INSTALL"
  tar -C "$work/tar" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -cf - "$name" |
    gzip -9n >"$DIST/$name.tar.gz"
done

(cd "$DIST" && sha256sum shoal-*.whl shoal-*.tar.gz >SHA256SUMS)
echo "release: built in $DIST/:"
ls -l "$DIST"
