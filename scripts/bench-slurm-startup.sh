#!/usr/bin/env bash
# Start-up of a 3-node cluster on the real Slurm test cluster (scripts/slurm-cluster.sh): shoal's
# `srun shoal launch` against Ray's Slurm recipes, inside one sbatch job, and one table.
#
#   scripts/bench-slurm-startup.sh
#
# What it measures (medians; every time is from the moment just before `srun` starts, taken in the
# batch script on the job's first node with `date +%s.%N`; all nodes share one clock):
#   ready      srun start -> the cluster is ready and the driver starts. shoal: `srun -N3 -n3
#              --ntasks-per-node=1 shoal launch -- date +%s.%N`, whose driver runs right after
#              "shoal: 3/3 nodes joined". Ray symmetric-run: the entrypoint's first line (it runs
#              after `--min-nodes 3` is met). Ray start/--block: the driver, started with the
#              recipe, first sees 3 alive nodes in ray.nodes().
#   driver     srun start -> a Python driver has connected and sees 3 alive nodes
#              (`import shoal as ray` / `import ray`; ray.init(); poll ray.nodes() every 50 ms).
#   total      wall time of the whole recipe with a trivial driver, teardown included. shoal:
#              `srun ... shoal launch -- true`. Ray: the driver above, then the recipe's teardown
#              (symmetric-run stops Ray itself; start/--block: `ray stop` on every node, then the
#              blocking steps end).
#   overhead   total - wall time of `srun -N3 -n3 --ntasks-per-node=1 true`.
# Ray's recipes (Ray's own Slurm docs):
#   symmetric-run   srun -N3 -n3 --ntasks-per-node=1 ray symmetric-run --address HEAD:PORT
#                   --min-nodes 3 --num-cpus=1 -- python3 driver.py
#   start/--block   srun -N1 on the first node: ray start --head --node-ip-address=HEAD
#                   --port=PORT --num-cpus=1 --block; srun -N2 on the others: ray start
#                   --address=HEAD:PORT --num-cpus=1 --block; the driver runs in the batch script.
# symmetric-run goes first; when a run of it fails (for instance when another Ray already runs on
# this machine: it refuses to start where it sees a gcs_server), the table says so and uses
# start/--block alone. The bar (shoal's ready < 1 s, and at least 10x faster to ready than the
# faster Ray recipe) is printed, never enforced: the exit status is non-zero only on errors (a
# failed step, a missing tool, the start/--block recipe failing, something left behind).
#
# Because every "node" of the test cluster is a network namespace of one machine, Ray runs here
# with two adjustments, neither of which speeds it up:
#   - each node gets its own --temp-dir under a private directory, and `ray` on the job's PATH is
#     a wrapper whose `ray stop` is the real `ray stop` (same order, SIGTERM, 16 s grace) limited
#     to that node's processes; the real one would stop every Ray process on the machine, other
#     people's too.
#   - RAY_AUTH_MODE=disabled: with a ~/.ray/auth_token present, `ray start --head` turns token
#     authentication on but ray.init() and `ray start --address` do not send the token.
# Nothing of either system is left afterwards: leftover processes are killed, the private
# directory (rendezvous files, Ray temp dirs) is removed, and a cluster this script brought up is
# taken down again (one that was already up stays up).
#
# Environment: SHOAL_RUNS (runs per shoal figure, default 10), RAY_RUNS (runs per Ray recipe,
# default 3), RAY_RECIPES (default "symmetric-run,start"; "start" skips symmetric-run),
# RAY_TIMEOUT (seconds one Ray run may take, default 240), SHOAL_BIN (skip `make build`), OUT (a
# directory for results.tsv, table.md and the job's logs), KEEP=1 (keep the work directory),
# IDLE_WAIT (seconds to wait for other jobs on the test cluster to end first, default 300).
# Takes about 6 minutes on 2 cores, nearly all of it Ray's (a symmetric-run run lasts ~90 s: its
# workers notice the head is gone only after Ray's 60 s GCS reconnect time-out).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CLUSTER=$ROOT/scripts/slurm-cluster.sh
SHOAL_RUNS=${SHOAL_RUNS:-10}
RAY_RUNS=${RAY_RUNS:-3}
RAY_RECIPES=${RAY_RECIPES:-symmetric-run,start}
RAY_TIMEOUT=${RAY_TIMEOUT:-240}
OUT=${OUT:-}
KEEP=${KEEP:-}
IDLE_WAIT=${IDLE_WAIT:-300}
export SLURM_CONF=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/slurm.conf

log() { echo "bench-slurm-startup: $*" >&2; }
die() { echo "bench-slurm-startup: error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "the test Slurm cluster needs root"
[[ $SHOAL_RUNS =~ ^[1-9][0-9]*$ && $RAY_RUNS =~ ^[1-9][0-9]*$ ]] || die "SHOAL_RUNS and RAY_RUNS must be positive integers"
[[ $RAY_TIMEOUT =~ ^[1-9][0-9]*$ && $IDLE_WAIT =~ ^[0-9]+$ ]] || die "RAY_TIMEOUT and IDLE_WAIT must be numbers of seconds"
case ,$RAY_RECIPES, in *,start,*) ;; *) die "RAY_RECIPES=$RAY_RECIPES must include start (the fallback)" ;; esac
PYTHON=$(python3 -c 'import sys; print(sys.executable)') || die "python3 not found"
RAY_VERSION=$("$PYTHON" -c 'import ray; print(ray.__version__)' 2>/dev/null) ||
  die "Ray is not installed for $PYTHON (pip install ray)"
RAY_BIN=$(dirname "$PYTHON")/ray
[[ -x $RAY_BIN ]] || die "no ray command beside $PYTHON"
if [[ -n ${SHOAL_BIN:-} ]]; then
  SHOAL_BIN_DIR=$(cd "$(dirname "$SHOAL_BIN")" && pwd)
else
  make -s build >&2 || die "make build failed"
  SHOAL_BIN_DIR=$ROOT/bin
fi
[[ -x $SHOAL_BIN_DIR/shoal ]] || die "no shoal binary in $SHOAL_BIN_DIR"
"$PYTHON" -c 'import shoal' 2>/dev/null || die "the shoal Python SDK is not importable (pip install -e python)"

# A short path: Ray's Unix sockets live under it, and their paths must stay under 108 bytes.
W=$(mktemp -d /tmp/shoal-bs.XXXXXX)
JOB_NAME=shoal-bench-startup-${W##*.}
BROUGHT_UP=
RAY_BEFORE=$(ls -A /tmp/ray 2>/dev/null || true)

# leftovers [--kill]: our processes still running (their command line or an open file names $W).
leftovers() { "$PYTHON" "$W/leftovers.py" "$W" "$@"; }

cleanup() {
  local rc=$? left e
  trap - EXIT INT TERM
  set +e
  if [[ -f $SLURM_CONF ]]; then timeout 10 scancel --name="$JOB_NAME" 2>/dev/null; fi
  if [[ -f $W/leftovers.py ]]; then
    for _ in 1 2 3; do left=$(leftovers --kill); [[ -z $left ]] && break; sleep 1; done
    if [[ -n $left ]]; then log "processes left behind: $left"; rc=1; fi
  fi
  # Ray writes to /tmp/ray only without --temp-dir; remove what this run may have put there.
  for e in /tmp/ray/session_*; do
    [[ -e $e ]] || continue
    e=${e#/tmp/ray/}
    grep -qxF -- "$e" <<<"$RAY_BEFORE" && continue
    grep -rqsF -- "$W" "/tmp/ray/$e" && { log "removing /tmp/ray/$e"; rm -rf "/tmp/ray/$e"; }
  done
  if [[ -n $KEEP ]]; then log "kept $W"; else rm -rf "$W"; fi
  if [[ -n $BROUGHT_UP ]]; then "$CLUSTER" down >&2 || rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if "$CLUSTER" status >/dev/null 2>&1; then
  log "the Slurm test cluster is up: using it, and leaving it up"
else
  log "bringing the Slurm test cluster up (it goes down again at the end)"
  BROUGHT_UP=1
  "$CLUSTER" up >&2 || die "scripts/slurm-cluster.sh up failed"
fi

mkdir -p "$W/bin" "$W/ray" "$W/rdv"

cat >"$W/leftovers.py" <<'EOF'
"""leftovers.py DIR [--kill]: print (and SIGKILL) the processes whose command line or open files
name DIR. Ray's agents rename themselves (setproctitle), so their open log files give them away."""
import os, re, signal, sys

base, kill = sys.argv[1].rstrip("/"), "--kill" in sys.argv[2:]
pat = re.compile(re.escape(base) + r"(/|\s|$)")
found = []
for p in os.listdir("/proc"):
    if not p.isdigit() or int(p) == os.getpid():
        continue
    try:
        with open(f"/proc/{p}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        with open(f"/proc/{p}/cmdline", "rb") as f:
            hit = bool(pat.search(f.read().replace(b"\0", b" ").decode(errors="replace")))
        if not hit:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    t = os.readlink(f"/proc/{p}/fd/{fd}")
                except OSError:
                    continue
                if t == base or t.startswith(base + "/"):
                    hit = True
                    break
    except (OSError, IndexError):
        continue
    if hit:
        found.append(int(p))
for p in found:
    if kill:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
print(" ".join(map(str, found)))
EOF

cat >"$W/raystop.py" <<'EOF'
"""raystop.py NODEDIR [ray stop options]: the real `ray stop`, limited to the Ray processes of one
node (their command line or an open file names NODEDIR). Every node of the test cluster shares one
machine, where the real `ray stop` would stop every Ray process, other people's included."""
import os, re, sys

import ray  # noqa: F401  (puts ray/thirdparty_files, where psutil is, on sys.path)
import psutil

base = sys.argv[1].rstrip("/")
pat = re.compile(re.escape(base) + r"(/|\s|$)")
_iter = psutil.process_iter


def mine(p):
    try:
        if pat.search(" ".join(p.cmdline())):
            return True
        for fd in os.listdir(f"/proc/{p.pid}/fd"):
            try:
                t = os.readlink(f"/proc/{p.pid}/fd/{fd}")
            except OSError:
                continue
            if t == base or t.startswith(base + "/"):
                return True
    except (psutil.Error, OSError):
        pass
    return False


def process_iter(*a, **k):
    return (p for p in _iter(*a, **k) if p.pid != os.getpid() and mine(p))


psutil.process_iter = process_iter
from ray.scripts.scripts import cli  # noqa: E402

sys.argv = ["ray", "stop"] + sys.argv[2:]
cli()
EOF

cat >"$W/driver.py" <<'EOF'
"""driver.py shoal|ray N TIMEOUT: print START (before any import), connect, poll until N nodes are
alive, print READY."""
import sys, time

print(f"START {time.time():.6f}", flush=True)
backend, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if backend == "ray":
    import ray
    ray.init(address="auto", log_to_driver=False)   # RAY_ADDRESS names the head
else:
    import shoal as ray
    ray.init()                                      # SHOAL_ADDRESS, set by shoal launch
deadline = time.time() + timeout
while True:
    alive = sum(1 for x in ray.nodes() if x.get("Alive"))
    if alive >= n:
        break
    if time.time() > deadline:
        sys.exit(f"driver: {alive}/{n} nodes alive after {timeout:.0f} s")
    time.sleep(0.05)
print(f"READY {time.time():.6f} {alive}", flush=True)
ray.shutdown()
EOF

# `ray` on the job's PATH: the real one, except that `ray stop` is limited to this node's dir.
cat >"$W/bin/ray" <<EOF
#!/bin/bash
if [[ \${1:-} == stop ]]; then
  shift; exec "$PYTHON" "$W/raystop.py" "\$RAY_BENCH_DIR/\$SLURMD_NODENAME" "\$@"
fi
exec "$RAY_BIN" "\$@"
EOF
chmod +x "$W/bin/ray"

# The batch script: every figure, one line per run into results.tsv ("series value"), notes as
# "NOTE text", errors as "ERROR text".
cat >"$W/job.sh" <<'EOF'
#!/bin/bash
set -u
R=$W/results.tsv
: >"$R"
rec()  { echo "$1 $2" >>"$R"; }
note() { echo "NOTE $*" >>"$R"; }
err()  { echo "ERROR $*" >>"$R"; }
now()  { date +%s.%N; }
sub()  { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a - b }'; }
field() { awk -v k="$1" '$1 == k { print $2; exit }' "$2"; }
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
((${#NODES[@]} == 3)) || { err "the job has ${#NODES[@]} nodes, not 3"; exit 1; }
HEAD_IP=$(getent ahostsv4 "${NODES[0]}" | awk '{ print $1; exit }')
[[ -n $HEAD_IP ]] || { err "cannot resolve ${NODES[0]}"; exit 1; }
echo "NOTE load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$R"
STEP=(-N3 -n3 --ntasks-per-node=1)
export SHOAL_RENDEZVOUS_DIR=$W/rdv RAY_AUTH_MODE=disabled
failed=0

# --- shoal ---------------------------------------------------------------------------------
for ((i = 1; i <= SHOAL_RUNS; i++)); do
  t0=$(now); srun "${STEP[@]}" true; rc=$?; t1=$(now)
  ((rc == 0)) || { err "srun true: exit $rc"; exit 1; }
  rec srun_true "$(sub "$t1" "$t0")"

  t0=$(now); srun "${STEP[@]}" shoal launch -- true 2>"$W/shoal-true.err"; rc=$?; t1=$(now)
  if ((rc != 0)) || ! grep -q "3/3 nodes joined" "$W/shoal-true.err"; then
    err "shoal launch -- true: exit $rc: $(tail -n 3 "$W/shoal-true.err" | tr '\n' ' ')"; exit 1
  fi
  rec shoal_total "$(sub "$t1" "$t0")"

  t0=$(now); d=$(srun "${STEP[@]}" shoal launch -- date +%s.%N 2>"$W/shoal-date.err"); rc=$?
  if ((rc != 0)) || ! grep -q "3/3 nodes joined" "$W/shoal-date.err" || [[ ! $d =~ ^[0-9]+\.[0-9]+$ ]]; then
    err "shoal launch -- date: exit $rc, output '$d': $(tail -n 3 "$W/shoal-date.err" | tr '\n' ' ')"; exit 1
  fi
  rec shoal_ready "$(sub "$d" "$t0")"

  t0=$(now); srun "${STEP[@]}" shoal launch -- "$PYTHON" "$W/driver.py" shoal 3 60 >"$W/shoal-py.out" 2>"$W/shoal-py.err"; rc=$?
  r=$(field READY "$W/shoal-py.out")
  if ((rc != 0)) || [[ -z $r ]]; then
    err "shoal launch -- python3 driver.py: exit $rc: $(tail -n 3 "$W/shoal-py.err" | tr '\n' ' ')"; exit 1
  fi
  rec shoal_driver "$(sub "$r" "$t0")"
done

# --- Ray ------------------------------------------------------------------------------------
export PATH=$W/bin:$PATH
port=$((20000 + RANDOM % 20000))

# after_ray RUNDIR: nothing of the run may be left; kill what is, and say so.
after_ray() {
  local left
  left=$("$PYTHON" "$W/leftovers.py" "$1" --kill)
  [[ -z $left ]] || note "$2 run $i: processes left after the recipe's teardown, killed: $left"
  sleep 1
}

if [[ ,$RAY_RECIPES, == *,symmetric-run,* ]]; then
  for ((i = 1; i <= RAY_RUNS; i++)); do
    port=$((port + 1))
    export RAY_BENCH_DIR=$W/ray/s$i RAY_ADDRESS=$HEAD_IP:$port
    log=$W/ray-sym-$i.log
    t0=$(now)
    timeout "$RAY_TIMEOUT" srun "${STEP[@]}" bash -c 'exec ray symmetric-run --address "$RAY_ADDRESS" --min-nodes 3 --num-cpus=1 --temp-dir="$RAY_BENCH_DIR/$SLURMD_NODENAME" -- "$PYTHON" "$W/driver.py" ray 3 120' >"$log" 2>&1
    rc=$?; t1=$(now)
    s=$(field START "$log"); r=$(field READY "$log")
    after_ray "$RAY_BENCH_DIR" symmetric-run
    if ((rc != 0)) || [[ -z $s || -z $r ]]; then
      why=$(grep -m1 -E "already started|Timed out|Error|error" "$log" | cut -c1-160)
      note "symmetric-run run $i failed (exit $rc${why:+: $why}); the table uses start/--block"
      echo "FALLBACK symmetric-run" >>"$R"
      break
    fi
    rec raysym_ready "$(sub "$s" "$t0")"
    rec raysym_driver "$(sub "$r" "$t0")"
    rec raysym_total "$(sub "$t1" "$t0")"
  done
fi

for ((i = 1; i <= RAY_RUNS; i++)); do
  port=$((port + 1))
  export RAY_BENCH_DIR=$W/ray/b$i RAY_ADDRESS=$HEAD_IP:$port HEAD_IP PORT=$port
  t0=$(now)
  srun --overlap -N1 -n1 --ntasks-per-node=1 --nodelist="${NODES[0]}" bash -c 'exec ray start --head --node-ip-address="$HEAD_IP" --port="$PORT" --num-cpus=1 --block --temp-dir="$RAY_BENCH_DIR/$SLURMD_NODENAME"' >"$W/ray-head-$i.log" 2>&1 &
  hp=$!
  srun --overlap -N2 -n2 --ntasks-per-node=1 --nodelist="${NODES[1]},${NODES[2]}" bash -c 'exec ray start --address="$RAY_ADDRESS" --num-cpus=1 --block --temp-dir="$RAY_BENCH_DIR/$SLURMD_NODENAME"' >"$W/ray-workers-$i.log" 2>&1 &
  wp=$!
  timeout "$RAY_TIMEOUT" "$PYTHON" "$W/driver.py" ray 3 120 >"$W/ray-driver-$i.log" 2>&1
  drc=$?
  timeout 120 srun --overlap "${STEP[@]}" ray stop >"$W/ray-stop-$i.log" 2>&1
  src=$?
  # `ray start --block` outlives `ray stop`; in Ray's recipe the end of the job ends it.
  kill -TERM "$hp" "$wp" 2>/dev/null
  wait "$hp" "$wp" 2>/dev/null
  t1=$(now)
  r=$(field READY "$W/ray-driver-$i.log")
  after_ray "$RAY_BENCH_DIR" start/--block
  if ((drc != 0)) || [[ -z $r ]]; then
    err "Ray start/--block run $i: the driver exited $drc: $(tail -n 3 "$W/ray-driver-$i.log" | tr '\n' ' ')"
    failed=1; break
  fi
  ((src == 0)) || note "start/--block run $i: ray stop exited $src"
  rec raystart_ready "$(sub "$r" "$t0")"
  rec raystart_driver "$(sub "$r" "$t0")"
  rec raystart_total "$(sub "$t1" "$t0")"
done
others=$(squeue -h -o '%A %j' 2>/dev/null | grep -v "^$SLURM_JOB_ID " | paste -sd, -)
[[ -z $others ]] || note "other jobs on the test cluster at the end of the benchmark: $others"
exit "$failed"
EOF

log "shoal $("$SHOAL_BIN_DIR/shoal" --version 2>/dev/null | awk '{print $3}'), Ray $RAY_VERSION; $SHOAL_RUNS shoal runs, $RAY_RUNS runs per Ray recipe ($RAY_RECIPES); work dir $W"
export W PYTHON SHOAL_RUNS RAY_RUNS RAY_RECIPES RAY_TIMEOUT
export PATH=$SHOAL_BIN_DIR:$PATH
JOB_LIMIT=$((120 + SHOAL_RUNS * 20 + RAY_RUNS * 2 * (RAY_TIMEOUT + 30)))
# Other jobs on these 3 nodes would share their 2 CPUs with the benchmark: wait a while for an
# empty queue, then go on anyway and say so.
for ((i = 0; i < IDLE_WAIT; i += 2)); do
  [[ -z $(timeout 10 squeue -h -o %A 2>/dev/null) ]] && break
  ((i == 0)) && log "waiting up to ${IDLE_WAIT}s for the other jobs on the test cluster to end"
  sleep 2
done
states=$(timeout 10 sinfo -h -N -o '%N %t' 2>/dev/null | sort -u | paste -sd, || true)
[[ -n $states && ! $states =~ (drain|drng|down|fail|unk|maint|\*) ]] ||
  die "the test cluster's nodes are not all usable ($states); \`scripts/slurm-cluster.sh down\` then \`up\` starts afresh"
OTHER_JOBS=$(timeout 10 squeue -h -o '%A %j' 2>/dev/null | paste -sd, || true)
t_job=$SECONDS
set +e
(cd "$W" && timeout "$JOB_LIMIT" sbatch --wait --job-name="$JOB_NAME" -N 3 --ntasks-per-node=1 \
   --time=$(((JOB_LIMIT + 59) / 60)) --output="$W/job.out" "$W/job.sh" >/dev/null 2>"$W/sbatch.err")
job_rc=$?
set -e
log "the job took $((SECONDS - t_job)) s (exit $job_rc)"
if ((job_rc != 0)); then
  tail -n 3 "$W/sbatch.err" >&2
  "$CLUSTER" status >/dev/null 2>&1 || log "the Slurm test cluster is not running any more: did something take it down during the run?"
fi
[[ -z $OTHER_JOBS ]] || echo "NOTE other jobs on the test cluster when the benchmark started: $OTHER_JOBS" >>"$W/results.tsv"

if [[ -n $OUT ]]; then
  mkdir -p "$OUT"
  cp "$W"/results.tsv "$W"/job.out "$W"/*.log "$W"/*.err "$OUT"/ 2>/dev/null || true
fi
[[ -s $W/results.tsv ]] || { tail -n 20 "$W/job.out" >&2 2>/dev/null || true; die "the job wrote no results (exit $job_rc)"; }

report_rc=0
"$PYTHON" - "$W/results.tsv" "${OUT:+$OUT/table.md}" <<'EOF' || report_rc=$?
import statistics, sys

series, notes, errors, fallback = {}, [], [], False
for line in open(sys.argv[1]):
    k, _, v = line.strip().partition(" ")
    if k == "NOTE":
        notes.append(v)
    elif k == "ERROR":
        errors.append(v)
    elif k == "FALLBACK":
        fallback = True
    elif k:
        series.setdefault(k, []).append(float(v))
med = {k: statistics.median(v) for k, v in series.items()}
sym = "raysym_ready" in med and not fallback
base = med.get("srun_true")
for p in ("shoal", "raysym", "raystart"):
    if f"{p}_total" in med and base is not None:
        med[f"{p}_overhead"] = med[f"{p}_total"] - base

def fmt(x):
    return "-" if x is None else f"{x:.3f}" if x < 10 else f"{x:.1f}"

def ratio(r, s):
    return "-" if r is None or s is None or s <= 0 else f"{r / s:.0f}x" if r / s >= 10 else f"{r / s:.1f}x"

rows = [("ready: srun start -> all nodes joined, driver starts (s)", "ready"),
        ("driver: srun start -> a Python driver sees 3 alive nodes (s)", "driver"),
        ("total: trivial driver, teardown included (s)", "total"),
        ("overhead: total - `srun -N3 true` (s)", "overhead")]
cols = ["shoal"] + (["raysym"] if sym else []) + ["raystart"]
name = {"shoal": "shoal", "raysym": "ray symmetric-run", "raystart": "ray start/--block"}
head = ["metric", "shoal"]
for c in cols[1:]:
    head += [name[c], "ratio"]
lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
for label, key in rows:
    s = med.get(f"shoal_{key}")
    cells = [label, fmt(s)]
    for c in cols[1:]:
        r = med.get(f"{c}_{key}")
        cells += [fmt(r), ratio(r, s)]
    lines.append("| " + " | ".join(cells) + " |")
lines.append("| `srun -N3 -n3 --ntasks-per-node=1 true` (s) | " + fmt(base) + " |" + " |" * (len(head) - 2))
counts = ", ".join(f"{k} {len(v)}" for k, v in sorted(series.items()))
out = ["Medians; ratio = ray/shoal (above 1: shoal is faster). Runs: " + counts + ".",
       "Ray recipe: " + ("symmetric-run and start/--block (both worked)" if sym else
                         "start/--block (symmetric-run " + ("failed here, see the notes" if fallback else "not run") + ")"),
       ""] + lines
s_ready = med.get("shoal_ready")
rays = [med[k] for k in ("raysym_ready", "raystart_ready") if k in med and (k != "raysym_ready" or sym)]
if s_ready is not None and rays:
    best = min(rays)
    met = s_ready < 1 and best / s_ready >= 10
    out += ["", f"Bar (shoal ready < 1 s and >= 10x faster to ready than the faster Ray recipe): "
            f"{'met' if met else 'NOT met'} (shoal {s_ready:.3f} s, Ray {best:.2f} s, {best / s_ready:.0f}x)"]
for n in notes:
    out.append("note: " + n)
for e in errors:
    out.append("ERROR: " + e)
text = "\n".join(out)
print(text)
if len(sys.argv) > 2 and sys.argv[2]:
    open(sys.argv[2], "w").write(text + "\n")
sys.exit(1 if errors else 0)
EOF
if ((job_rc != 0 || report_rc != 0)); then
  log "the job failed (exit $job_rc); its output:"; tail -n 20 "$W/job.out" >&2 2>/dev/null || true
  exit 1
fi
