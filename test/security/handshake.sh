#!/usr/bin/env bash
# Handshake and pre-authentication limits (docs/security.md), attacked by another user of the
# node against a victim's `shoal up` agent on its TCP listener:
#  1. a flood before authentication: connections that announce 256 MiB frames and stream junk
#     into them, and connections that never finish the handshake, reopened as the agent drops
#     them. The agent's RSS must grow by less than FLOOD_RSS_MAX_KB, a driver of the victim's
#     keeps being served, and new connections of the victim's still get in.
#  2. replays: the intruder relays one real connection of the victim's (an on-path position)
#     and records both sides; replaying the client's bytes to the agent, answering a new
#     connection of the victim's with the agent's recorded bytes, and relaying a connection
#     while terminating TLS with the intruder's own certificate must all be refused.
# FLOOD_BIG / FLOOD_IDLE / FLOOD_SECS size the flood (run against an older shoal, whose agent
# allocates every announced frame, keep FLOOD_BIG small: each costs 256 MiB there).
set -u
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source test/security/lib.sh
FLOOD_BIG=${FLOOD_BIG:-200}
FLOOD_IDLE=${FLOOD_IDLE:-100}
FLOOD_SECS=${FLOOD_SECS:-8}
FLOOD_RSS_MAX_KB=${FLOOD_RSS_MAX_KB:-8192}
TOOL=$ROOT/test/security/handshake_intruder.py
tmp=$(mktemp -d /tmp/shoal-handshake-test.XXXXXX)
chmod 755 "$tmp"
install -d -o "$INTRUDER" -m 700 "$tmp/intruder"
cleanup() {
  [[ -n ${SECRET:-} ]] && as_victim env SHOAL_ADDRESS="$ADDR" SHOAL_SECRET="$SECRET" shoal down >/dev/null 2>&1
  jobs -p | xargs -r kill 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
# victim_status ADDR: `shoal status` of the victim's against ADDR (tcp:...), with its secret
victim_status() { as_victim env SHOAL_ADDRESS="$1" SHOAL_SECRET="$SECRET" timeout 30 shoal status 2>&1; }
wait_listening() { for _ in $(seq 50); do grep -q listening "$1" 2>/dev/null && return; sleep 0.1; done; }

# --observability off: the flood's cost is measured alone; the recorder would keep a record of each
# of the victim's own tasks that run meanwhile (bounded: obs.DefaultMaxRecords), which is the
# victim's memory, not the intruder's
info=$(as_victim shoal up --num-cpus 2 --object-store-memory 64m --observability off --json) || { bad "shoal up as $VICTIM" "$info"; finish; }
PID=$(field "$info" pid); TCP=$(field "$info" tcp); ADDR=$(field "$info" address); SECRET=$(field "$info" secret)
PORT=${TCP##*:}
echo "victim agent: pid $PID, $TCP"

# --- 1. a flood before authentication
out=$(victim_status "$TCP") && has "$out" "$(field "$info" id)" || bad "victim's status over tcp before the flood" "$out"
go build -o "$tmp/driver" ./test/security/handshake_driver || { bad "build the victim's driver"; finish; }
chmod 755 "$tmp/driver"
as_victim env SHOAL_ADDRESS="$TCP" SHOAL_SECRET="$SECRET" "$tmp/driver" $((FLOOD_SECS + 2)) >"$tmp/driver.out" 2>&1 &
drv=$!
for _ in $(seq 100); do grep -q ready "$tmp/driver.out" && break; sleep 0.1; done
before=$(rss_kb "$PID")
as_intruder python3 "$TOOL" flood 127.0.0.1 "$PORT" "$FLOOD_SECS" "$FLOOD_BIG" "$FLOOD_IDLE" >"$tmp/flood.out" 2>&1 &
fl=$!
peak=$before; newok=0; newtries=0
end=$((SECONDS + FLOOD_SECS))
sleep 1
while ((SECONDS < end)); do
  r=$(rss_kb "$PID" 2>/dev/null || echo 0); ((r > peak)) && peak=$r
  if ((newtries < 3)) && ((SECONDS > end - FLOOD_SECS + 2)); then
    newtries=$((newtries + 1))
    out=$(victim_status "$TCP") && has "$out" "$(field "$info" id)" && newok=$((newok + 1))
  fi
  sleep 0.2
done
wait "$fl"; wait "$drv"; drvrc=$?
cat "$tmp/flood.out"
grows=$((peak - before))
echo "agent RSS: $before kB before the flood, $peak kB at its peak (+$grows kB)"
if ((grows < FLOOD_RSS_MAX_KB)); then ok "a pre-authentication flood grew the agent's RSS by $grows kB (< $FLOOD_RSS_MAX_KB)"
else bad "a pre-authentication flood grew the agent's RSS by $grows kB (limit $FLOOD_RSS_MAX_KB)"; fi
if ((drvrc == 0)) && grep -q "^served" "$tmp/driver.out"; then ok "the victim's driver was served during the flood: $(grep '^served' "$tmp/driver.out")"
else bad "the victim's driver during the flood" "$(cat "$tmp/driver.out")"; fi
if ((newok == newtries && newtries > 0)); then ok "new connections of the victim's got in during the flood ($newok of $newtries)"
else bad "new connections of the victim's during the flood: $newok of $newtries got in"; fi
kill -0 "$PID" 2>/dev/null && ok "the agent survived the flood" || bad "the agent died in the flood"

# --- 2. replays and a man in the middle
rport=$(freeport)
as_intruder python3 "$TOOL" record "$rport" 127.0.0.1 "$PORT" "$tmp/intruder" >"$tmp/record.out" 2>&1 &
rec=$!
wait_listening "$tmp/record.out"
out=$(victim_status "tcp:127.0.0.1:$rport")
has "$out" "$(field "$info" id)" || bad "the victim's status through the intruder's relay (it is transparent)" "$out"
wait "$rec"
verdict=$(as_intruder python3 "$TOOL" replay-client 127.0.0.1 "$PORT" "$tmp/intruder/client" 2>&1)
if [[ $verdict == refused ]]; then ok "the agent refused a replay of a recorded client handshake"
else bad "a replayed client handshake was $verdict"; fi

fport=$(freeport)
as_intruder python3 "$TOOL" fake-agent "$fport" "$tmp/intruder/server" >"$tmp/fake.out" 2>&1 &
wait_listening "$tmp/fake.out"
if out=$(victim_status "tcp:127.0.0.1:$fport"); then
  bad "the victim believed a fake agent replaying a recorded handshake" "$out"
else ok "the victim refused a fake agent replaying a recorded handshake: $(tail -1 <<<"$out")"; fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/intruder/k.pem" \
  -out "$tmp/intruder/c.pem" -days 1 -subj /CN=shoal >/dev/null 2>&1
chown "$INTRUDER" "$tmp/intruder/"*.pem
mport=$(freeport)
as_intruder python3 "$TOOL" mitm "$mport" 127.0.0.1 "$PORT" "$tmp/intruder/c.pem" "$tmp/intruder/k.pem" >"$tmp/mitm.out" 2>&1 &
mitm=$!
wait_listening "$tmp/mitm.out"
if out=$(victim_status "tcp:127.0.0.1:$mport"); then
  bad "the victim's status went through a man in the middle" "$out" "$(cat "$tmp/mitm.out")"
else ok "the victim refused a man in the middle: $(tail -1 <<<"$out")"; fi
wait "$mitm"
grep -q "cluster info seen: True" "$tmp/mitm.out" && bad "the man in the middle read the cluster's answers" "$(cat "$tmp/mitm.out")"
out=$(victim_status "$TCP") && has "$out" "$(field "$info" id)" && ok "the victim's cluster still answers its owner" || bad "the victim's cluster after the attacks" "$out"
finish
