#!/usr/bin/env bash
# Squatted directories on the 3-node Slurm test cluster (docs/security.md, "Directories and
# files"), played by real users: INTRUDER makes the victim's /tmp/shoal-<uid> first, or watches
# /dev/shm for a head's store and makes the member's store directory (/dev/shm/shoal-<id>-node2)
# before the member does. VICTIM's `srun shoal launch` must fail with an error naming the path
# and the intruder, and leave nothing of the victim's in the intruder's directories. Both
# succeeded against shoal before issue 12. Run under `flock /tmp/shoal-slurm.lock` (make
# test-security does). Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
. "$PWD/test/security/lib.sh"
WORK=$(mktemp -d /tmp/shoal-secdirs.XXXXXX)
chmod 1777 "$WORK"
BASE=/tmp/shoal-$VICTIM_UID
WATCH=
cleanup() {
  [[ -n $WATCH ]] && { touch "$WORK/squatted.stop"; wait "$WATCH" 2>/dev/null; }
  [[ -f $WORK/squatted ]] && while read -r d; do rm -rf "$d"; done < "$WORK/squatted"
  rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR" "$BASE"
  [[ -f $WORK/squatted ]] && while read -r d; do rm -rf "$d"; done < "$WORK/squatted"
}
trap cleanup EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }

# vjob NAME BODY: an sbatch -N 3 script submitted by the victim, waited for; sets $rc and $out
vjob() {
  printf '#!/bin/bash\n#SBATCH -N 3 --ntasks-per-node=1 --output=%s/%s.out\n%s\n' "$WORK" "$1" "$2" > "$WORK/$1.sbatch"
  chmod 644 "$WORK/$1.sbatch"
  (cd "$WORK" && as_victim env SLURM_CONF="$SLURM_CONF" timeout 120 sbatch --wait "$WORK/$1.sbatch" >/dev/null 2>&1); rc=$?
  echo "rc=$rc" > "$WORK/$1.rc"
  out=$(cat "$WORK/$1.out" 2>/dev/null)
}
mine() { find "$1" -mindepth 1 -user "$VICTIM" 2>/dev/null | head -5; }
# vjob_watch NAME BODY PATH...: vjob, while PATHs are watched for files of the victim's (the
# driver sleeps, so that a cluster that did start is seen while it runs); sets $seen too. $out
# is the job's output with NAME.<task>.out: each srun writes its tasks' output there (srun -o,
# written by each node's slurmstepd), since srun's own forwarding can drop the last lines of a
# task whose exit makes --kill-on-bad-exit end the step)
vjob_watch() {
  local name=$1 body=$2; shift 2
  vjob "$name" "$body" &
  local j=$! p
  seen=""
  while kill -0 "$j" 2>/dev/null; do
    for p in "$@"; do seen+=$(find "$p" -mindepth 1 -user "$VICTIM" 2>/dev/null)$'\n'; done
    sleep 0.2
  done
  wait "$j"
  out=$(cat "$WORK/$name".*out 2>/dev/null)
  grep -q '^rc=0$' "$WORK/$name.rc" 2>/dev/null && rc=0 || rc=1
}

# --- 1. /tmp/shoal-<victim uid> made first by the intruder (shared /tmp of the test nodes)
rm -rf "$BASE"
as_intruder mkdir -m 0777 "$BASE"; as_intruder chmod 0777 "$BASE"
vjob_watch base 'srun --kill-on-bad-exit=1 -o '"$WORK"'/base.%t.out shoal launch --join-timeout 30s -- sleep 3' "$BASE"
if ((rc != 0)) && has "$out" "refusing to use $BASE" && has "$out" "$INTRUDER (uid $INTRUDER_UID)"; then
  ok "squatted base: every node's launch refuses it, naming the path and the intruder ($(grep -c "refusing to use $BASE" <<<"$out") of 3 nodes said so)"
else
  bad "squatted base: the job ran in the intruder's directory" "rc=$rc" "$out"
fi
[[ -z ${seen//$'\n'/} ]] && ok "squatted base: nothing of the victim's in it while the job ran (no secret, no record)" ||
  bad "squatted base: the victim's session was in it" "$(sort -u <<<"$seen" | head -5)"
rm -rf "$BASE"

# --- 2. a member's store directory, made by the intruder as soon as the head's store shows the
# cluster's id in /dev/shm
ls -d /dev/shm/shoal-* > "$WORK/before" 2>/dev/null; chmod 644 "$WORK/before"
as_intruder bash -c 'end=$((SECONDS + 90)); while ((SECONDS < end)) && [[ ! -e $2.stop ]]; do
  for d in /dev/shm/shoal-????????????; do
    [[ -d $d && ! -e $d-node2 && $(stat -c %U "$d" 2>/dev/null) == "$1" ]] || continue
    grep -qx "$d" "$3" && continue # only the clusters that start from now on
    mkdir -m 0777 "$d-node2" 2>/dev/null && chmod 0777 "$d-node2" && echo "$d-node2" >> "$2"
  done
done' squat "$VICTIM" "$WORK/squatted" "$WORK/before" &
WATCH=$!
vjob_watch store 'srun --kill-on-bad-exit=1 -o '"$WORK"'/store.%t.out shoal launch --join-timeout 30s -- sleep 3' /dev/shm
squat=$(head -1 "$WORK/squatted" 2>/dev/null)
if [[ -z $squat ]]; then
  bad "store squat: the intruder did not get in first (the race was lost; rerun)" "$out"
elif ((rc != 0)) && has "$out" "refusing to use $squat" && has "$out" "$INTRUDER"; then
  ok "squatted member store: node2's agent refuses it, naming the path and the intruder"
else
  bad "squatted member store: node2's agent used the intruder's directory" "rc=$rc" "$out"
fi
if [[ -n $squat ]]; then
  grep -qx "$squat/arena" <<<"$seen" && bad "squatted member store: the victim's arena was in it while the job ran" ||
    ok "squatted member store: no arena of the victim's in it while the job ran"
fi
touch "$WORK/squatted.stop"; wait "$WATCH" 2>/dev/null; WATCH=
finish
