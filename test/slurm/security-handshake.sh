#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# A pre-authentication flood on the 3-node Slurm test cluster, from another host and another
# user: VICTIM's job runs a shoal cluster on node1 and node2 whose driver runs tasks one after
# another; INTRUDER, on node3 (another network namespace: another host as far as TCP goes),
# opens connections to every TCP port the head's agent listens on (its control listener and its
# object-transfer listener) that announce 256 MiB frames and stream junk, and connections that
# never finish the handshake. The head agent's RSS must grow by less than FLOOD_RSS_MAX_KB, the
# driver must keep being served, and the job must end with exit code 0. Held under
# /tmp/shoal-slurm.lock (make test-security). Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
. "$PWD/test/security/lib.sh"
FLOOD_BIG=${FLOOD_BIG:-100}
FLOOD_IDLE=${FLOOD_IDLE:-100}
FLOOD_SECS=${FLOOD_SECS:-8}
FLOOD_RSS_MAX_KB=${FLOOD_RSS_MAX_KB:-8192}
TOOL=$ROOT/test/security/handshake_intruder.py
WORK=$(mktemp -d /tmp/handshake-slurm-sec.XXXXXX); chmod 755 "$WORK"
install -d -o "$VICTIM" -m 700 "$WORK/v"
A=""
cleanup() {
  [[ -n $A ]] && scancel "$A" 2>/dev/null
  jobs -p | xargs -r kill 2>/dev/null
  rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"
}
trap cleanup EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }
go build -o "$WORK/driver" ./test/security/handshake_driver || { bad "build the victim's driver"; finish; }
chmod 755 "$WORK/driver"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

secs=$((FLOOD_SECS + 8))
printf '#!/bin/bash\nsrun -N2 -n2 --ntasks-per-node=1 shoal launch -- %s %s\n' "$WORK/driver" "$secs" > "$WORK/v/job.sh"
chown "$VICTIM" "$WORK/v/job.sh"
A=$(as_victim env SLURM_CONF="$SLURM_CONF" sbatch --parsable -N 2 -w node1,node2 --ntasks-per-node=1 \
  --chdir="$WORK/v" --output="$WORK/v/a.out" "$WORK/v/job.sh")
[[ -n $A ]] || { bad "submit the victim's job"; finish; }
for _ in $(seq 300); do grep -q "^ready" "$WORK/v/a.out" 2>/dev/null && break; sleep 0.1; done
grep -q "^ready" "$WORK/v/a.out" || { bad "the victim's driver did not start" "$(cat "$WORK/v/a.out" 2>/dev/null)"; finish; }
head=""
for p in $(shoal_pids "$A" node1); do
  [[ $(stat -c %U "/proc/$p") == "$VICTIM" ]] && ps -o args= -p "$p" | grep -q "shoal launch" && { head=$p; break; }
done
[[ -n $head ]] || { bad "find the head's agent of job $A on node1"; finish; }
ports=$("$CLUSTER" exec node1 ss -ltnpH 2>/dev/null | grep "pid=$head," | awk '{print $4}' | sed 's/.*://' | sort -u)
[[ -n $ports ]] || { bad "find the head agent's TCP ports" "$("$CLUSTER" exec node1 ss -ltnpH 2>&1)"; finish; }
echo "victim's head agent: pid $head, TCP ports $(echo $ports)"
before=$(rss_kb "$head"); peak=$before
fl=()
for port in $ports; do
  "$CLUSTER" exec node3 runuser -u "$INTRUDER" -- python3 "$TOOL" flood 198.18.0.11 "$port" "$FLOOD_SECS" "$FLOOD_BIG" "$FLOOD_IDLE" >"$WORK/flood.$port" 2>&1 &
  fl+=($!)
done
end=$((SECONDS + FLOOD_SECS))
while ((SECONDS < end)); do r=$(rss_kb "$head"); ((r > peak)) && peak=$r; sleep 0.2; done
wait "${fl[@]}"
cat "$WORK"/flood.*
grows=$((peak - before))
echo "head agent RSS: $before kB before the flood, $peak kB at its peak (+$grows kB)"
if ((grows < FLOOD_RSS_MAX_KB)); then ok "a flood from another host grew the head agent's RSS by $grows kB (< $FLOOD_RSS_MAX_KB)"
else bad "a flood from another host grew the head agent's RSS by $grows kB (limit $FLOOD_RSS_MAX_KB)"; fi
for _ in $(seq 600); do [[ -z $(squeue -h -j "$A" 2>/dev/null) ]] && break; sleep 0.1; done
state=$(sacct -n -X -j "$A" -o State,ExitCode 2>/dev/null | head -1)
if grep -q "^served" "$WORK/v/a.out" && ! grep -q "^handshake_driver:" "$WORK/v/a.out"; then
  ok "the victim's driver was served through the flood: $(grep '^served' "$WORK/v/a.out")"
else bad "the victim's driver during the flood" "$(tail -5 "$WORK/v/a.out")"; fi
A_done=$A; A=""
has "$(scontrol show job "$A_done" 2>/dev/null)" "ExitCode=0:0" && ok "the victim's job ended with exit code 0" \
  || bad "the victim's job's end" "$(scontrol show job "$A_done" 2>/dev/null | grep -o 'JobState=[^ ]*\|ExitCode=[^ ]*')" "$state"
finish
