#!/usr/bin/env bash
# The admin epilog against a hostile second user on this node. INTRUDER's Slurm job B ends and
# root runs `shoal admin epilog --job B --uid INTRUDER_UID`, as Slurm's Epilog does; before that,
# INTRUDER planted records and processes to steer it at VICTIM, whose cluster runs in job A:
#   1. a record whose id climbs out of /dev/shm and /tmp ("../../<victim's dir>")
#   2. a record of INTRUDER's own job naming VICTIM's cluster id (visible in /dev/shm)
#   3. a symlink /tmp/shoal-<x> to a directory of VICTIM's, with a record naming an entry in it
#   4. VICTIM's own process whose environment names job B (and shoal)
# None of VICTIM's processes or files may be touched, while INTRUDER's own leftovers (a killed
# cluster's store and session directory, an escaped process) are removed. Each of 1-4 succeeded
# against the epilog before the trust rules (SHOAL_EPILOG_BIN=<old binary> shows it).
# Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/security/lib.sh"
EPILOG_BIN=${SHOAL_EPILOG_BIN:-$ROOT/bin/shoal}
A=$((3000000000 + RANDOM * 1000 + $$ % 1000)); B=$((A + 1))
WORK=$(mktemp -d /tmp/epilog-sec.XXXXXX); chmod 755 "$WORK"
install -d -o "$VICTIM" -m 700 "$WORK/v"; install -d -o "$INTRUDER" -m 700 "$WORK/i"
VSHM=/dev/shm/victim-data.$$; VTMP=/tmp/victim-data.$$; VRUNS=/tmp/victim-runs.$$
LINK=/tmp/shoal-zz$$
cleanup() {
  for f in "$WORK"/v/*.pid "$WORK"/i/*.pid; do [[ -e $f ]] && kill -9 "$(cat "$f")" 2>/dev/null; done
  [[ -n ${vid:-} ]] && as_victim shoal down --cluster "$vid" >/dev/null 2>&1
  [[ -n ${vpid:-} ]] && kill -9 "$vpid" 2>/dev/null
  [[ -n ${ipid:-} ]] && kill -9 "$ipid" 2>/dev/null
  rm -rf "$WORK" "$VSHM" "$VTMP" "$VRUNS" "$LINK" /dev/shm/shoal-"${vid:-none}" /dev/shm/shoal-"${iid:-none}"
  rm -rf /tmp/shoal-"$INTRUDER_UID"/{0123456789ab,"${vid:-none}","${iid:-none}","${runid:-none}"}
  rm -rf /tmp/shoal-"$VICTIM_UID"/"${vid:-none}"
}
trap cleanup EXIT
# bg v|i NAME ENV...: a process of VICTIM or INTRUDER (sleep, in its own session) with ENV; its
# pid in $WORK/v|i/NAME.pid
bg() {
  local who=$1 n=$2 u=$VICTIM; shift 2
  [[ $who == i ]] && u=$INTRUDER
  as "$u" setsid -f sh -c 'echo $$ > "$0"; exec env "$@" sleep 600' "$WORK/$who/$n.pid" "$@" </dev/null >/dev/null 2>&1
  for _ in $(seq 50); do [[ -s $WORK/$who/$n.pid ]] && break; sleep 0.05; done
  sleep 0.1
}
# live PIDFILE: the process is alive (not a zombie)
live() {
  local p st; p=$(cat "$1" 2>/dev/null) || return 1
  st=$(cat "/proc/$p/stat" 2>/dev/null) || return 1; st=${st##*) }; [[ ${st%% *} != Z ]]
}

# VICTIM's cluster in job A (`eval $(shoal up)` in a job, then a driver with its environment)
rec=$(as_victim env SLURM_JOB_ID=$A shoal up --json --num-cpus 1 2>"$WORK/v-up.err")
vid=$(sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' <<<"$rec"); vpid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' <<<"$rec")
[[ -n $vid ]] || { bad "victim's shoal up" "$(cat "$WORK/v-up.err")"; finish; }
bg v driver SLURM_JOB_ID=$A SHOAL_CLUSTER_ID="$vid"
# 4: VICTIM's process that names job B (and shoal) in its environment
bg v namesB SLURM_JOB_ID=$B SHOAL_WORKER_ID=w1
# VICTIM's directories that the planted ids point at
as_victim sh -c "mkdir -m 700 $VSHM $VTMP $VRUNS $VRUNS/c0ffee$(printf %06x $$) && touch $VSHM/x $VTMP/x $VRUNS/c0ffee$(printf %06x $$)/x"
runid=c0ffee$(printf %06x $$)

# INTRUDER's job B: a cluster killed with SIGKILL (its store and session directory stay), an
# escaped process, and the planted records
rec=$(as_intruder env SLURM_JOB_ID=$B shoal up --json --num-cpus 1 2>"$WORK/i-up.err")
iid=$(sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' <<<"$rec"); ipid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' <<<"$rec")
[[ -n $iid ]] || { bad "intruder's shoal up" "$(cat "$WORK/i-up.err")"; finish; }
kill -9 "$ipid"; for _ in $(seq 50); do kill -0 "$ipid" 2>/dev/null || break; sleep 0.05; done
bg i escaped SLURM_JOB_ID=$B SHOAL_CLUSTER_ID="$iid"
IB=/tmp/shoal-$INTRUDER_UID
plant() { # plant SESSION-DIR-NAME ID: a cluster.json of job B in INTRUDER's base
  as_intruder sh -c "mkdir -p -m 700 $IB/$1 && printf '{\"id\":\"%s\",\"slurm_job\":\"%s\"}' '$2' $B > $IB/$1/cluster.json"
}
plant 0123456789ab "../../${VSHM#/dev/shm/}"                   # 1: /dev/shm/shoal-../../X = /dev/shm/X
as_intruder sh -c "mkdir -p -m 700 $IB/0123456789ac && printf '{\"id\":\"%s\",\"slurm_job\":\"%s\"}' '../../../../${VTMP#/}' $B > $IB/0123456789ac/member.json"
plant "$vid" "$vid"                                            # 2: VICTIM's cluster id
as_intruder ln -s "$VRUNS" "$LINK"                             # 3: /tmp/shoal-zz... -> VICTIM's runs
plant "$runid" "$runid"
# and a symlinked session directory pointing at VICTIM's session directory
as_intruder ln -s "/tmp/shoal-$VICTIM_UID/$vid" "$IB/ffffffffffff"

out=$("$EPILOG_BIN" admin epilog --job "$B" --uid "$INTRUDER_UID" 2>&1)

if [[ -e $VSHM/x && -e $VTMP/x ]]; then ok "1. a record id with ../ makes root remove nothing outside (/dev/shm, /tmp)"
else bad "1. path traversal" "$VSHM/x: $([[ -e $VSHM/x ]] && echo kept || echo REMOVED)" "$VTMP/x: $([[ -e $VTMP/x ]] && echo kept || echo REMOVED)" "$out"; fi
if live "$WORK/v/driver.pid" && kill -0 "$vpid" 2>/dev/null && [[ -e /dev/shm/shoal-$vid && -e /tmp/shoal-$VICTIM_UID/$vid/cluster.json ]] \
   && as_victim shoal status --cluster "$vid" >/dev/null 2>&1; then
  ok "2. a record of job B naming the victim's cluster id does not touch the victim's cluster"
else bad "2. another user's cluster id" "driver: $(live "$WORK/v/driver.pid" && echo alive || echo KILLED)" \
  "agent: $(kill -0 "$vpid" 2>/dev/null && echo alive || echo KILLED)" "$(ls -d /dev/shm/shoal-"$vid" /tmp/shoal-"$VICTIM_UID"/"$vid" 2>&1)" "$out"; fi
if [[ -e $VRUNS/$runid/x ]]; then ok "3. a symlink /tmp/shoal-* to a victim's directory is not followed"
else bad "3. symlinked base" "$VRUNS/$runid: REMOVED" "$out"; fi
if live "$WORK/v/namesB.pid"; then ok "4. a victim's process with SLURM_JOB_ID=B in its environment is not killed by job B's epilog"
else bad "4. another uid naming the job" "$out"; fi
# and the epilog still did its work for INTRUDER's job B
if ! live "$WORK/i/escaped.pid" && [[ ! -e /dev/shm/shoal-$iid && ! -e $IB/$iid ]] && has "$out" "not a cluster id"; then
  ok "job B's own leftovers are removed (escaped process, store, session) and the bad records reported"
else bad "job B's epilog" "escaped: $(live "$WORK/i/escaped.pid" && echo ALIVE || echo killed)" "$(ls -d /dev/shm/shoal-"$iid" "$IB/$iid" 2>&1)" "$out"; fi

# the per-user base: a symlink, another owner, mode 0777: no record in it is believed
as_victim shoal down --cluster "$vid" >/dev/null 2>&1; vid=""
rm -rf "$IB"; as_victim ln -s "/tmp/shoal-$VICTIM_UID" "$IB" 2>/dev/null || ln -s "/tmp/shoal-$VICTIM_UID" "$IB"
out=$("$EPILOG_BIN" admin epilog --job "$B" --uid "$INTRUDER_UID" 2>&1)
if [[ -L $IB ]] && has "$out" "symlink"; then ok "a symlinked /tmp/shoal-<uid> is refused and reported"
else bad "symlinked base" "$out"; fi
rm -f "$IB"
finish
