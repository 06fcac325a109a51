# shellcheck shell=bash
# What the YARN test scripts share: paths, ok/bad/has/finish, and the MiniYARNCluster, started
# when none runs (and stopped at the end by yarn_cleanup, which the script's EXIT trap calls).
# Source it from the repository root: `. "$PWD/test/yarn/lib.sh"`; sets ROOT, SHOAL, MC, PY and
# started, and exports the cluster's environment (YARN_CONF_DIR ...).
ROOT=$PWD
SHOAL=$ROOT/bin/shoal
MC=$ROOT/test/yarn/minicluster.sh
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; (($#)) && printf '     %s\n' "$@"; return 0; }
has() { grep -q -- "$2" <<<"$1"; }
finish() { echo "$pass passed, $fail failed"; ((fail == 0)); exit; }

[[ -x $SHOAL ]] || { bad "bin/shoal is missing; run make build"; finish; }
started=0
if ! "$MC" status; then
  "$MC" up || { bad "start the MiniYARNCluster (test/yarn/minicluster.sh up)"; finish; }
  started=1
fi
eval "$("$MC" env)"
PY=$(python3 -c 'import sys; print(sys.executable)') # containers do not get this shell's PATH

# yarn_cleanup: stops the MiniYARNCluster if this script started it
yarn_cleanup() { ((started)) && "$MC" down >/dev/null 2>&1; return 0; }
