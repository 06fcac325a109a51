#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# A pre-authentication flood on the 3-node Slurm test cluster, from another host and another
# user: VICTIM's job runs a shoal cluster on node1 and node2 whose driver runs tasks one after
# another; INTRUDER, on node3 (another network namespace: another host as far as TCP goes),
# opens connections to every TCP port the head's agent listens on (its control listener and its
# object-transfer listener) that announce 256 MiB frames and stream junk, and connections that
# never finish the handshake. The head agent's RSS must grow by less than FLOOD_RSS_MAX_KB, the
# driver must keep being served, and the job must end with exit code 0. Before the flood,
# INTRUDER replays, from node3, what node2's agent sent each of those ports when it joined (taken
# from a tcpdump capture on the bridge, as anyone on the network could record it): refused. Held under
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
A=""; TD=""
cleanup() {
  [[ -n $A ]] && scancel "$A" 2>/dev/null
  [[ -n $TD ]] && kill "$TD" 2>/dev/null
  jobs -p | xargs -r kill 2>/dev/null
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"
}
trap cleanup EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }
go build -o "$WORK/driver" ./test/security/handshake_driver || { bad "build the victim's driver"; finish; }
chmod 755 "$WORK/driver"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

command -v tcpdump >/dev/null || { bad "tcpdump is not installed (scripts/deps.sh installs it)"; finish; }
tcpdump -i shoalbr0 -s 0 -U -w "$WORK/join.pcap" 2> "$WORK/tcpdump.err" &
TD=$!
for _ in $(seq 50); do grep -q "listening on" "$WORK/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
secs=$((FLOOD_SECS + 40))  # the replays, then the flood (its tool takes up to 10 s to wind down)
# --observability off: the flood's cost alone (see test/security/handshake.sh)
printf '#!/bin/bash\nsrun -N2 -n2 --ntasks-per-node=1 shoal launch --observability off -- %s %s\n' "$WORK/driver" "$secs" > "$WORK/v/job.sh"
chown "$VICTIM" "$WORK/v/job.sh"
A=$(as_victim env SLURM_CONF="$SLURM_CONF" sbatch --parsable -N 2 -w node1,node2 --ntasks-per-node=1 \
  --chdir="$WORK/v" --output="$WORK/v/a.out" "$WORK/v/job.sh")
[[ -n $A ]] || { bad "submit the victim's job"; finish; }
for _ in $(seq 300); do grep -q "^ready" "$WORK/v/a.out" 2>/dev/null && break; sleep 0.1; done
grep -q "^ready" "$WORK/v/a.out" || { bad "the victim's driver did not start" "$(cat "$WORK/v/a.out" 2>/dev/null)"; finish; }
sleep 1; kill "$TD"; wait "$TD" 2>/dev/null; TD=""
head=""
for p in $(shoal_pids "$A" node1); do
  [[ $(stat -c %U "/proc/$p") == "$VICTIM" ]] && ps -o args= -p "$p" | grep -q "shoal launch" && { head=$p; break; }
done
[[ -n $head ]] || { bad "find the head's agent of job $A on node1"; finish; }
ports=$("$CLUSTER" exec node1 ss -ltnpH 2>/dev/null | grep "pid=$head," | awk '{print $4}' | sed 's/.*://' | sort -u)
[[ -n $ports ]] || { bad "find the head agent's TCP ports" "$("$CLUSTER" exec node1 ss -ltnpH 2>&1)"; finish; }
echo "victim's head agent: pid $head, TCP ports $(echo $ports)"
# --- replays of what node2 sent the head when it joined, from another host and user
# stream PCAP SRC DST PORT OUT: the payload of the first TCP connection SRC -> DST:PORT, in order
stream() {
  python3 - "$@" <<'PY'
import struct, sys
pcap, src, dst, port, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
b = open(pcap, "rb").read()
end = "<" if b[:4] == bytes.fromhex("d4c3b2a1") else ">"
i, first, segs = 24, None, {}
while i + 16 <= len(b):
    n = struct.unpack(end + "I", b[i + 8:i + 12])[0]
    p, i = b[i + 16:i + 16 + n], i + 16 + n
    if len(p) < 34 or p[12:14] != b"\x08\x00" or p[23] != 6:
        continue
    ip = p[14:]
    ihl = (ip[0] & 15) * 4
    s_, d_ = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
    tcp = ip[ihl:]
    sport, dport, seq = struct.unpack(">HHI", tcp[:8])
    if (s_, d_, dport) != (src, dst, port):
        continue
    if first is None:
        first = sport
    if sport != first:
        continue
    payload = tcp[(tcp[12] >> 4) * 4:struct.unpack(">H", ip[2:4])[0] - ihl]
    if payload:
        segs.setdefault(seq, payload)
data = b"".join(segs[k] for k in sorted(segs))
open(out, "wb").write(data)
print(len(data))
PY
}
for port in $ports; do
  f=$WORK/replay.$port
  n=$(stream "$WORK/join.pcap" 198.18.0.12 198.18.0.11 "$port" "$f") || n=0
  if [[ ${n:-0} -le 0 ]]; then echo "no connection node2 -> node1:$port in the capture"; continue; fi
  chmod 644 "$f"
  v=$("$CLUSTER" exec node3 runuser -u "$INTRUDER" -- python3 "$TOOL" replay-client 198.18.0.11 "$port" "$f" 2>&1)
  if [[ $v == refused ]]; then ok "a replay of node2's recorded connection to the head's port $port ($n bytes) is refused"
  else bad "a replay of node2's recorded connection to the head's port $port was $v"; fi
  replayed=1
done
[[ -n ${replayed:-} ]] || bad "the capture held no connection of node2 to the head" "$(tcpdump -nr "$WORK/join.pcap" 2>/dev/null | head -5)"
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
