#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# The admin epilog on the 3-node Slurm test cluster against a hostile second user: VICTIM's job
# A runs a shoal cluster on all nodes; INTRUDER's job B plants records that name VICTIM's
# cluster id, climb out of /dev/shm and /tmp with ../, and follow a symlink /tmp/shoal-* to a
# directory of VICTIM's; VICTIM also has a process whose environment names job B. When job B
# ends, the SPANK plugin's job epilog (`shoal admin epilog --job B --uid INTRUDER_UID` as root, on
# every node) must remove job B's own leftovers and touch nothing of VICTIM's. Held under
# /tmp/shoal-slurm.lock (make test-security). Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
. "$PWD/test/security/lib.sh"
DIR=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}
WORK=$(mktemp -d /tmp/epilog-slurm-sec.XXXXXX); chmod 755 "$WORK"
install -d -o "$VICTIM" -m 700 "$WORK/v"; install -d -o "$INTRUDER" -m 700 "$WORK/i"
VSHM=/dev/shm/victim-slurm.$$; VTMP=/tmp/victim-slurm.$$; VRUNS=/tmp/victim-slurm-runs.$$
RUNID=c0ffee$(printf %06x $$); OWN=0ddba11$(printf %05x $$); LINK=/tmp/shoal-zz$$
A=""; B=""; VID=""
cleanup() {
  [[ -n $A ]] && scancel "$A" 2>/dev/null
  [[ -n $B ]] && scancel "$B" 2>/dev/null
  for f in "$WORK"/v/*.pid "$WORK"/i/*.pid; do [[ -e $f ]] && kill -9 "$(cat "$f")" 2>/dev/null; done
  for _ in $(seq 100); do [[ -z $(squeue -h -j "${A:-0},${B:-0}" 2>/dev/null) ]] && break; sleep 0.1; done
  [[ -n $A ]] && "$ROOT/bin/shoal" admin epilog --job "$A" --uid "$VICTIM_UID" >/dev/null 2>&1
  rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR" "$VSHM" "$VTMP" "$VRUNS" "$LINK" "/dev/shm/shoal-$OWN"
  rm -rf "/tmp/shoal-$INTRUDER_UID"/{0123456789ab,0123456789ac,"$RUNID","$OWN","${VID:-none}"}
}
trap cleanup EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }
rm -f "$DIR"/epilog.d/* 2>/dev/null  # only the SPANK plugin's job epilog runs
[[ -f $DIR/plugstack.conf ]] && grep -q shoal_spank "$DIR/plugstack.conf" || { bad "the SPANK plugin is not configured (make spank)"; finish; }
# sb v|i SCRIPT [sbatch options]: submit as VICTIM or INTRUDER; prints the job id
sb() {
  local who=$1 script=$2 u=$VICTIM; shift 2
  [[ $who == i ]] && u=$INTRUDER
  printf '%s\n' "$script" > "$WORK/$who/job.sh"; chown "$u" "$WORK/$who/job.sh"
  as "$u" env SLURM_CONF="$SLURM_CONF" sbatch --parsable -N 3 --ntasks-per-node=1 --chdir="$WORK/$who" "$@" "$WORK/$who/job.sh"
}
live() {
  local p st; p=$(cat "$1" 2>/dev/null) || return 1
  st=$(cat "/proc/$p/stat" 2>/dev/null) || return 1; st=${st##*) }; [[ ${st%% *} != Z ]]
}

# VICTIM's job A: a shoal cluster on the 3 nodes
A=$(sb v '#!/bin/bash
srun shoal launch -- sh -c "echo CID \$SHOAL_CLUSTER_ID; exec sleep 600"' --output="$WORK/v/a.out")
for _ in $(seq 300); do grep -q "^CID" "$WORK/v/a.out" 2>/dev/null && break; sleep 0.1; done
VID=$(awk '/^CID/{print $2}' "$WORK/v/a.out" 2>/dev/null)
[[ -n $VID ]] || { bad "victim's job A did not start its cluster" "$(cat "$WORK/v/a.out" 2>/dev/null)"; finish; }
sleep 1
vprocs=$(live_procs "$VID")
as_victim sh -c "mkdir -m 700 $VSHM $VTMP $VRUNS $VRUNS/$RUNID && touch $VSHM/x $VTMP/x $VRUNS/$RUNID/x"

# INTRUDER's job B, held until VICTIM's process naming it runs
B=$(sb i '#!/bin/bash
IB=/tmp/shoal-$(id -u)
mkdir -p -m 700 "$IB"; chmod 700 "$IB"
plant() { mkdir -p -m 700 "$IB/$1"; printf "{\"id\":\"%s\",\"slurm_job\":\"%s\"}" "$2" "$SLURM_JOB_ID" > "$IB/$1/${3:-cluster.json}"; }
plant "$VID" "$VID"                                    # the victim'"'"'s cluster id
plant 0123456789ab "../../${VSHM#/dev/shm/}"           # /dev/shm/shoal-../../X is /dev/shm/X
plant 0123456789ac "../../../../${VTMP#/}" member.json # /dev/shm/shoal-../../../../tmp/X is /tmp/X
ln -s "$VRUNS" "$LINK"; plant "$RUNID" "$RUNID"        # /tmp/shoal-zz* -> the victim'"'"'s runs
plant "$OWN" "$OWN"; mkdir -m 700 "/dev/shm/shoal-$OWN"; touch "/dev/shm/shoal-$OWN/arena"  # its own leftovers
srun shoal launch -- sh -c "echo CID \$SHOAL_CLUSTER_ID; setsid sleep 600 </dev/null >/dev/null 2>&1 & sleep 1"' \
  --hold --output="$WORK/i/b.out" --export="ALL,VID=$VID,VSHM=$VSHM,VTMP=$VTMP,VRUNS=$VRUNS,RUNID=$RUNID,OWN=$OWN,LINK=$LINK")
as_victim setsid -f sh -c 'echo $$ > "$0"; exec env SLURM_JOB_ID="$1" SHOAL_WORKER_ID=w1 sleep 600' "$WORK/v/namesB.pid" "$B" </dev/null >/dev/null 2>&1
for _ in $(seq 50); do [[ -s $WORK/v/namesB.pid ]] && break; sleep 0.05; done
scontrol release "$B"
for _ in $(seq 600); do [[ -z $(squeue -h -j "$B" 2>/dev/null) ]] && break; sleep 0.1; done
IID=$(awk '/^CID/{print $2}' "$WORK/i/b.out" 2>/dev/null)
# the epilog runs on each node after the job: wait for job B's own leftovers to go
gone=0
end=$((SECONDS + 30)); while ((SECONDS < end)); do
  if [[ -n $IID && $(live_procs "$IID") == 0 && ! -e /dev/shm/shoal-$OWN && ! -e /tmp/shoal-$INTRUDER_UID/$OWN ]]; then gone=1; break; fi
  sleep 0.2
done
sleep 1  # every node's epilog, not only the first
logs=$(grep -h "shoal: epilog" "$DIR"/log/slurmd-*.log 2>/dev/null | grep "job $B ")
if [[ $gone == 1 ]] && has "$logs" "uid $INTRUDER_UID"; then
  ok "job B's SPANK epilog (with the job's uid) removes its own escaped process and leftovers on every node"
else bad "job B's epilog" "cluster=$IID escaped=$(live_procs "$IID") $(ls -d /dev/shm/shoal-"$OWN" /tmp/shoal-"$INTRUDER_UID"/"$OWN" 2>&1)" \
  "$(cat "$WORK/i/b.out" 2>/dev/null)" "$logs"; fi
if [[ -e $VSHM/x && -e $VTMP/x ]]; then ok "1. a record id with ../ makes the epilog remove nothing outside (/dev/shm, /tmp)"
else bad "1. path traversal" "$VSHM/x: $([[ -e $VSHM/x ]] && echo kept || echo REMOVED)" "$VTMP/x: $([[ -e $VTMP/x ]] && echo kept || echo REMOVED)" "$logs"; fi
st=$(squeue -h -j "$A" -o %T 2>/dev/null)
if [[ $st == RUNNING && $(live_procs "$VID") == "$vprocs" && -e /dev/shm/shoal-$VID ]]; then
  ok "2. a record of job B naming the victim's cluster id leaves job A's cluster running on every node"
else bad "2. another user's cluster id" "job A: $st; processes $vprocs before, $(live_procs "$VID") after" "$(ls -d /dev/shm/shoal-"$VID" 2>&1)" "$logs"; fi
if [[ -e $VRUNS/$RUNID/x ]]; then ok "3. a symlink /tmp/shoal-* to a victim's directory is not followed"
else bad "3. symlinked base" "$VRUNS/$RUNID: REMOVED" "$logs"; fi
if live "$WORK/v/namesB.pid"; then ok "4. a victim's process with SLURM_JOB_ID=B in its environment outlives job B's epilog"
else bad "4. another uid naming the job" "$logs"; fi
finish
