#!/usr/bin/env bash
# The C compiler of the release build (scripts/release.sh sets CC to this script): `zig cc` for
# ZIG_TARGET (for instance x86_64-linux-gnu.2.17), so that every cgo object and the final link
# are built against glibc 2.17's symbol versions whatever glibc this machine has. zig comes from
# PyPI's `ziglang` package (ZIG, default `python3 -m ziglang`).
#
# One flag needs handling: go-nvml's cgo LDFLAGS pass -Wl,--unresolved-symbols=ignore-in-object-files,
# because its nvml* functions live in libnvidia-ml.so.1, which go-nvml opens at run time with
# dlopen(RTLD_GLOBAL) and the binary must not need (most nodes have no NVIDIA driver). zig's
# linker front end refuses that flag (and every other way of allowing undefined symbols in an
# executable). So this script drops it and, on the link that had it, links instead against a stub
# shared library that defines exactly the nvml* symbols the objects leave undefined, with lazy
# binding (-z lazy; zig defaults to -z now, which would resolve them at start-up); after the link
# it removes the stub's DT_NEEDED entry with patchelf. The result is what GNU ld makes with the
# original flag: undefined nvml* symbols that resolve through libnvidia-ml.so.1 once go-nvml has
# opened it, and no dependency on any NVIDIA library. Any other undefined symbol still fails the
# link.
set -euo pipefail

target=${ZIG_TARGET:?ZIG_TARGET must name the zig target, for instance x86_64-linux-gnu.2.17}
read -r -a zig <<<"${ZIG:-python3 -m ziglang}"

args=() nvml=0 link=1 out=""
prev=""
for a in "$@"; do
  case "$a" in
    -Wl,--unresolved-symbols=ignore-in-object-files) nvml=1; prev=""; continue ;;
    -c | -E | -S | -M | -MM) link=0 ;;
  esac
  [[ $prev == -o ]] && out=$a
  args+=("$a")
  prev=$a
done

if ((nvml == 0 || link == 0)); then
  exec "${zig[@]}" cc -target "$target" "${args[@]}"
fi

# the nvml* symbols the link's objects leave undefined (nm reads any ELF through elf64-little)
objs=()
for a in "${args[@]}"; do [[ $a == *.o && -f $a ]] && objs+=("$a"); done
syms=$( ((${#objs[@]})) && nm -u --format=just-symbols "${objs[@]}" 2>/dev/null | grep -E '^nvml[A-Za-z0-9_]*$' | sort -u || true)
if [[ -z $syms ]]; then
  # a link with go-nvml's flag but no nvml reference (cgo's own test links): nothing to stub
  exec "${zig[@]}" cc -target "$target" "${args[@]}"
fi
stubdir=$(mktemp -d)
trap 'rm -rf "$stubdir"' EXIT
stubname=libshoal-nvml-stub.so
while read -r s; do echo "void $s(void) {}"; done <<<"$syms" >"$stubdir/stub.c"
"${zig[@]}" cc -target "$target" -shared -fPIC -o "$stubdir/$stubname" -Wl,-soname,$stubname "$stubdir/stub.c"
"${zig[@]}" cc -target "$target" "${args[@]}" -Wl,-z,lazy "$stubdir/$stubname"
[[ -n $out ]] || { echo "zig-cc.sh: a link with go-nvml's flag but no -o output" >&2; exit 1; }
patchelf --remove-needed "$stubname" "$out"
