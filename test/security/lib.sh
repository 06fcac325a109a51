# shellcheck shell=bash
# What the security tests share; sourced after `cd` to the repository root. They act as real Unix
# users: VICTIM runs shoal, INTRUDER is another user on the same node who attacks it. Both are
# created here (useradd, so the tests need root; without it they skip with that reason).
# Gives ok/bad/has/finish (the last line of a run is "N passed, N failed"), as_victim and
# as_intruder (run a command as that user with this checkout's binary and SDK on its paths).
ROOT=$PWD
export PATH=$ROOT/bin:$PATH
VICTIM=${SHOAL_TEST_VICTIM:-shoalvictim}
INTRUDER=${SHOAL_TEST_INTRUDER:-shoalintruder}
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; (($#)) && printf '     %s\n' "$@"; return 0; }
has() { grep -q -- "$2" <<<"$1"; }
finish() { echo "$pass passed, $fail failed"; ((fail == 0)); exit; }
if [[ $(id -u) != 0 ]]; then echo "skip: the security tests create Unix users and need root"; finish; fi
for u in "$VICTIM" "$INTRUDER"; do
  id -u "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u" || { echo "useradd $u failed"; exit 1; }
done
VICTIM_UID=$(id -u "$VICTIM"); INTRUDER_UID=$(id -u "$INTRUDER")
export VICTIM INTRUDER VICTIM_UID INTRUDER_UID
# as USER CMD...: CMD as USER, in USER's home, with this checkout's shoal and Python SDK
as() {
  local u=$1; shift
  runuser -u "$u" -- env -i HOME="$(getent passwd "$u" | cut -d: -f6)" USER="$u" LOGNAME="$u" \
    PATH="$ROOT/bin:/usr/local/bin:/usr/bin:/bin" PYTHONPATH="$ROOT/python" \
    ${SHOAL_TMPDIR:+SHOAL_TMPDIR=$SHOAL_TMPDIR} "$@"
}
as_victim()   { as "$VICTIM" "$@"; }
as_intruder() { as "$INTRUDER" "$@"; }
