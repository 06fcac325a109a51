#!/bin/sh
# Ray's own core test files, run on Ray and on shoal (`import ray` mapped to shoal by
# `pytest -p shoal.compat`), and the table of docs/ray-conformance.md: per file, the tests that pass
# on Ray, of those the ones that pass on shoal, and those counted apart as Ray-internal.
#
#   scripts/ray-conformance.sh DIR [FILE.py ...]
#
# DIR holds Ray's test files (this script fetches nothing: docs/ray-conformance.md says how to get
# them); without FILEs, every test_*.py in DIR. Not part of `make test` (it takes many minutes).
#   RAY_PYTHON   a Python with ray, pytest, pytest-asyncio and pytest-timeout (and shoal's
#                msgpack and cloudpickle), default /tmp/rayvenv-conf/bin/python
#   SIDES        which sides to run, default "ray shoal" (the report reads both from OUT)
#   OUT          where the JUnit XML goes, default /tmp/ray-conformance
#   TEST_TIMEOUT seconds per test on either side, default 120
#   SHOAL_SDK    the shoal Python package to test, default ROOT/python (an older checkout's python/,
#                made with `git archive`, gives a before figure; the binary stays ROOT's)
#   SKIP         test ids deselected on both sides, default test_generators.py::test_generator_oom
#                (it pushes 10 GB through the object store: not on a shared machine) and
#                test_asyncio.py::test_asyncio_exit_actor (it hangs Ray 2.60 past pytest-timeout: its
#                exit_actor() waits for a call that never ends, as Ray documents; Ray-internal anyway)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:?usage: scripts/ray-conformance.sh DIR-WITH-RAYS-TEST-FILES [FILE.py ...]}
shift
[ -d "$DIR" ] || { echo "ray-conformance: $DIR is not a directory of Ray's test files" >&2; exit 2; }
RAY_PYTHON=${RAY_PYTHON:-/tmp/rayvenv-conf/bin/python}
SIDES=${SIDES:-ray shoal}
OUT=${OUT:-/tmp/ray-conformance}
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
SHOAL_SDK=${SHOAL_SDK:-$ROOT/python}
SKIP=${SKIP-test_generators.py::test_generator_oom test_asyncio.py::test_asyncio_exit_actor}
"$RAY_PYTHON" -c 'import ray, pytest, pytest_asyncio, pytest_timeout, msgpack, cloudpickle' 2>/dev/null || {
	echo "ray-conformance: $RAY_PYTHON lacks ray, pytest, pytest-asyncio, pytest-timeout, msgpack or cloudpickle;" >&2
	echo "  make one: python3 -m venv /tmp/rayvenv-conf && /tmp/rayvenv-conf/bin/pip install ray pytest pytest-asyncio pytest-timeout msgpack cloudpickle" >&2
	exit 2
}
[ -x "$ROOT/python/shoal/bin/shoal" ] || { echo "ray-conformance: run make build first" >&2; exit 2; }
if [ $# -eq 0 ]; then
	set -- $(cd "$DIR" && ls test_*.py)
fi
[ -e "$DIR/conftest.py" ] && { echo "ray-conformance: remove $DIR/conftest.py: the fixtures come from scripts/ray_conformance/ray_conformance_shim.py" >&2; exit 2; }
export SHOAL_BIN="$ROOT/python/shoal/bin/shoal"
for side in $SIDES; do
	mkdir -p "$OUT/$side"
	for f in "$@"; do
		echo "== $side: $f" >&2
		case $side in
		ray) pp="$ROOT/scripts/ray_conformance"; plug="" ;;
		shoal) pp="$ROOT/scripts/ray_conformance:$SHOAL_SDK"; plug="-p shoal.compat" ;;
		*) echo "ray-conformance: unknown side $side (ray or shoal)" >&2; exit 2 ;;
		esac
		desel=""
		for s in $SKIP; do
			case $s in "$f::"*) desel="$desel --deselect $s" ;; esac
		done
		(cd "$DIR" && env -u SHOAL_ADDRESS -u SHOAL_SECRET -u RAY_ADDRESS PYTHONPATH="$pp" \
			"$RAY_PYTHON" -m pytest -q -p no:cacheprovider $plug -p ray_conformance_shim \
			--timeout="$TEST_TIMEOUT" --timeout-method=signal -o asyncio_mode=strict \
			--junitxml="$OUT/$side/$f.xml" $desel "$f" >"$OUT/$side/$f.log" 2>&1) || true
		tail -1 "$OUT/$side/$f.log" >&2
	done
done
"$RAY_PYTHON" "$ROOT/scripts/ray_conformance/report.py" ${REPORT_FLAGS:-} "$OUT" "$DIR" "$@"
