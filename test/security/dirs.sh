#!/usr/bin/env bash
# Squatted directories and planted files, played by a real second user (docs/security.md,
# "Directories and files"). INTRUDER makes the victim's per-user base, store or spill directory
# first (mode 0777, 0755 of their own, a symbolic link), or plants files where shoal writes; each
# time VICTIM's shoal must refuse with an error naming the path and its owner, and write nothing
# the intruder can read. Then: what a SIGKILLed cluster left is removed by the victim's next start.
# All of these succeeded against shoal before issue 12.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/security/lib.sh

# a root of our own that behaves like /tmp (world-writable, sticky), so that runs of other
# security tests side by side do not meet in the real /tmp/shoal-<uid>
T=$(mktemp -d /tmp/shoal-sec-dirs.XXXXXX)
chmod 1777 "$T"
export SHOAL_TMPDIR=$T # as_victim passes it on
BASE=$T/shoal-$VICTIM_UID
PIDS=() IDS=() # clusters this test started (`shoal up`), stopped by pid at the end
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for i in "${IDS[@]}"; do rm -rf "/dev/shm/shoal-$i"; done
  rm -rf "$T" /dev/shm/shoal-"$ID" /dev/shm/shoal-"$ID2"
}
trap cleanup EXIT
ID=$(head -c6 /dev/urandom | od -An -tx1 | tr -d ' \n')
ID2=$(head -c6 /dev/urandom | od -An -tx1 | tr -d ' \n')

# refused OUT NAME PATH: the victim's command failed with an error naming PATH and the intruder
refused() {
  local rc=$1 out=$2 name=$3 path=$4
  if ((rc != 0)) && has "$out" "refusing to use $path" && has "$out" "$INTRUDER (uid $INTRUDER_UID)"; then
    ok "$name: refused, naming the path and its owner"
  else
    bad "$name: not refused as it should be" "rc=$rc" "$out"
  fi
}
# untouched DIR NAME: nothing of the victim's is in the intruder's directory
untouched() {
  local left
  left=$(find "$1" -mindepth 1 -user "$VICTIM" 2>/dev/null | head -5)
  if [[ -z $left ]] && [[ -z $(find "$1" -mindepth 1 -name secret 2>/dev/null) ]]; then
    ok "$2: nothing of the victim's in the intruder's directory"
  else
    bad "$2: the victim wrote into the intruder's directory" "$left"
  fi
}
fresh() { rm -rf "$BASE" "$T/evil" "$T/spill"; }

# --- 1. the per-user base, squatted three ways
for how in 0777 0755 link; do
  fresh
  case $how in
    0777) as_intruder mkdir -m 0777 "$BASE"; as_intruder chmod 0777 "$BASE"; squat=$BASE ;;
    0755) as_intruder mkdir -m 0755 "$BASE"; squat=$BASE ;;
    link) as_intruder mkdir -m 0777 "$T/evil"; as_intruder chmod 0777 "$T/evil"; as_intruder ln -s "$T/evil" "$BASE"; squat=$T/evil ;;
  esac
  out=$(as_victim timeout 60 shoal run -- true 2>&1); rc=$?
  refused "$rc" "$out" "base $how: shoal run" "$BASE"
  has "$out" "SHOAL_TMPDIR" && ok "base $how: the error says what to do" || bad "base $how: no advice in the error" "$out"
  out=$(as_victim timeout 60 shoal up --json 2>&1); rc=$?
  p=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' <<<"$out"); [[ -n $p ]] && PIDS+=("$p") # (the old shoal started)
  i=$(sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' <<<"$out"); [[ -n $i ]] && IDS+=("$i")
  refused "$rc" "$out" "base $how: shoal up" "$BASE"
  untouched "$squat" "base $how"
  [[ $(stat -c %U "$squat") == "$INTRUDER" ]] && ok "base $how: the intruder's directory was not taken over (chown/chmod)" ||
    bad "base $how: the intruder's directory changed owner"
done

# --- 2. a base of the victim's own with a loose mode is set to 0700; it is never removed
fresh
as_victim mkdir -m 0755 "$BASE"
out=$(as_victim timeout 60 shoal run -- sh -c 'cat "$SHOAL_TMPDIR/shoal-$(id -u)/$SHOAL_CLUSTER_ID/secret" >/dev/null && echo can-read' 2>&1); rc=$?
if ((rc == 0)) && has "$out" can-read && [[ $(stat -c %a "$BASE") == 700 ]]; then
  ok "own base 0755: set to 0700 and used"
else
  bad "own base 0755: not fixed or not used" "rc=$rc mode=$(stat -c %a "$BASE")" "$out"
fi
[[ -d $BASE ]] && ok "the per-user base stays after the last cluster ends (so it cannot be squatted again)" ||
  bad "the per-user base was removed when empty"

# --- 3. a live cluster's secret and records: the intruder reads nothing
fresh
line=$(as_victim timeout 60 shoal up --json 2>/dev/null | head -1)
sid=$(sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' <<<"$line"); spid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' <<<"$line")
[[ -n $spid ]] && PIDS+=("$spid") && IDS+=("$sid")
if [[ -n $sid ]]; then
  if as_intruder cat "$BASE/$sid/secret" >/dev/null 2>&1 || as_intruder ls "$BASE" >/dev/null 2>&1 ||
    as_intruder ls "/dev/shm/shoal-$sid" >/dev/null 2>&1; then
    bad "a live cluster: the intruder can read its session or store directory" "$(ls -la "$BASE" "/dev/shm/shoal-$sid" 2>&1)"
  else
    ok "a live cluster: the intruder can read neither the secret nor the store"
  fi
  modes=$(stat -c '%a %U' "$BASE" "$BASE/$sid" "/dev/shm/shoal-$sid" | sort -u)
  [[ $modes == "700 $VICTIM" ]] && ok "base, session and store directories are 0700 and the victim's" || bad "directory modes" "$modes"
  fm=$(stat -c '%a' "$BASE/$sid/secret" "$BASE/$sid/cluster.json" "/dev/shm/shoal-$sid/arena" | sort -u)
  [[ $fm == 600 ]] && ok "secret, cluster.json and arena are 0600" || bad "file modes" "$fm"

  # --- 4. stale state: SIGKILL the cluster; the next start of the victim removes what it left
  kill -KILL "$spid"
  for _ in $(seq 50); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
  [[ -d $BASE/$sid && -d /dev/shm/shoal-$sid ]] || bad "SIGKILL left nothing to clean (the test needs a leftover)"
  out=$(as_victim timeout 60 shoal run -- true 2>&1); rc=$?
  if ((rc == 0)) && [[ ! -e $BASE/$sid && ! -e /dev/shm/shoal-$sid ]]; then
    ok "a killed cluster's session directory (with its secret) and /dev/shm store are removed by the next shoal run"
  else
    bad "a killed cluster's leftovers stay after the next start" "rc=$rc" "$(ls -la "$BASE" /dev/shm/shoal-$sid 2>&1)" "$out"
  fi
  # a live cluster is never taken for a dead one
  line=$(as_victim timeout 60 shoal up --json 2>/dev/null | head -1)
  lid=$(sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' <<<"$line"); lpid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' <<<"$line")
  [[ -n $lpid ]] && PIDS+=("$lpid") && IDS+=("$lid")
  as_victim timeout 60 shoal run -- true >/dev/null 2>&1
  if [[ -n $lid && -e $BASE/$lid/secret && -e /dev/shm/shoal-$lid ]] && as_victim shoal status --cluster "$lid" >/dev/null 2>&1; then
    ok "a live cluster is left alone by the next start and still answers"
  else
    bad "a live cluster was removed by the next start"
  fi
  as_victim shoal down --cluster "$lid" >/dev/null 2>&1
else
  bad "shoal up as the victim did not start" "$line"
fi

# --- 5. the object store directory in /dev/shm, squatted before the cluster makes it
fresh
as_intruder mkdir -m 0777 "/dev/shm/shoal-$ID"; as_intruder chmod 0777 "/dev/shm/shoal-$ID"
# the cluster runs for 3 s (stdin open) while the intruder's directory is watched
as_victim env SHOAL_NEW_CLUSTER_ID="$ID" timeout 60 shoal serve --watch-stdin < <(sleep 3) > "$T/serve.out" 2>&1 &
seen=""
for _ in $(seq 15); do seen+=$(find "/dev/shm/shoal-$ID" -mindepth 1 -user "$VICTIM" 2>/dev/null); sleep 0.2; done
wait $!; rc=$?; out=$(cat "$T/serve.out")
refused "$rc" "$out" "store dir 0777" "/dev/shm/shoal-$ID"
has "$out" "SHOAL_OBJECT_STORE_DIR" && ok "store dir: the error says what to do" || bad "store dir: no advice" "$out"
[[ -z $seen ]] && ok "store dir 0777: the victim made nothing in the intruder's directory while it ran" ||
  bad "store dir 0777: the victim's arena was in the intruder's directory" "$seen"
ls "$BASE" 2>/dev/null | grep -q "$ID" && bad "store dir: the refused cluster's session directory was left" || ok "store dir: the refused cluster left no session directory"
rm -rf "/dev/shm/shoal-$ID"

# --- 6. a spill directory given by the user, squatted under a shared parent
fresh
mkdir -m 1777 "$T/spill"; chmod 1777 "$T/spill"
as_intruder mkdir -m 0777 "$T/spill/shoal-$ID2"; as_intruder chmod 0777 "$T/spill/shoal-$ID2"
out=$(as_victim env SHOAL_NEW_CLUSTER_ID="$ID2" timeout 60 shoal serve --watch-stdin --spill-dir "$T/spill" </dev/null 2>&1); rc=$?
refused "$rc" "$out" "spill dir 0777" "$T/spill/shoal-$ID2"
untouched "$T/spill/shoal-$ID2" "spill dir 0777"
[[ ! -e /dev/shm/shoal-$ID2 ]] && ok "spill dir: made before the store directory shows the id in /dev/shm" ||
  bad "spill dir: the store directory was made first (the id was visible before the spill dir existed)"

# --- 7. files planted where shoal writes: a rendezvous directory of the victim's with a loose
# mode (shared by hand), where the intruder planted the temporary file as a link to a file of
# theirs (the rename race) and, for members, a rendezvous file naming a head of their own
fresh
rdv=$T/rdv; as_victim mkdir -m 0777 "$rdv"; as_victim chmod 0777 "$rdv"
as_intruder sh -c "umask 0; : > '$T/evil-catch'; ln -s '$T/evil-catch' '$rdv/4242.0.json.tmp'; ln -s '$T/evil-catch' '$rdv/4242.0.json'"
slurm_env=(SLURMD_NODENAME=localhost SLURM_JOB_NODELIST=localhost SLURM_JOB_ID=4242 SLURM_STEP_ID=0 SLURM_PROCID=0)
out=$(as_victim env "${slurm_env[@]}" timeout 60 shoal launch --rendezvous-dir "$rdv" -- true 2>&1); rc=$?
if [[ -s $T/evil-catch ]]; then
  bad "rendezvous: the victim's secret was written into the intruder's file" "$(cat "$T/evil-catch")"
else
  ok "rendezvous: nothing written through the intruder's links (O_EXCL|O_NOFOLLOW, random temporary name)"
fi
((rc == 0)) && [[ $(stat -c %a "$rdv") == 700 ]] && ok "rendezvous: the victim's loose directory was set to 0700 and the launch ran" ||
  bad "rendezvous: launch failed or the mode was not fixed" "rc=$rc mode=$(stat -c %a "$rdv")" "$out"
rm -rf "$rdv"; as_victim mkdir -m 0777 "$rdv"; as_victim chmod 0777 "$rdv"
as_intruder sh -c "printf '{\"cluster\":\"%s\",\"head\":\"localhost\",\"addr\":\"127.0.0.1:9\",\"secret\":\"intruders\",\"pid\":1}' '$ID' > '$rdv/4243.0.json'"
out=$(as_victim env SLURMD_NODENAME=node2 SLURM_JOB_NODELIST=localhost,node2 SLURM_JOB_ID=4243 SLURM_STEP_ID=0 SLURM_PROCID=1 \
  timeout 30 shoal launch --member --rendezvous-dir "$rdv" 2>&1); rc=$?
if ((rc != 0 && rc != 124)) && has "$out" "refusing to use $rdv/4243.0.json" && has "$out" "$INTRUDER"; then
  ok "rendezvous: a member refuses a rendezvous file the intruder planted (naming its owner)"
else
  bad "rendezvous: a member read the intruder's rendezvous file" "rc=$rc" "$out"
fi
finish
