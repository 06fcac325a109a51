#!/usr/bin/env bash
# Run shoal's core microbenchmarks and the same ones on Ray (PyPI `ray`) on this machine, one
# after the other, and print one table: metric, shoal, ray, ratio (shoal/ray; >1 means shoal is
# faster), plus the memcpy baseline and put/memcpy for both.
#
#   scripts/bench-vs-ray.sh                      # all metrics, 3 s each
#   DURATION=5 ONLY=single_client_tasks_sync,put_1gib_gigabytes scripts/bench-vs-ray.sh
#
# Environment: DURATION (seconds per metric, default 3), TRIALS (default 5), ONLY (comma-separated
# metric names), COLD_RUNS (cold starts timed per backend, default 3), OUT (folder for the JSON
# results and table.md; default a new temp folder), PYTHON (default python3), SHOAL_BIN (a built
# shoal; default: `make build`, then bin/shoal), RAY_VERSION (pip requirement, default: the newest).
# Both backends get 2 CPUs (Ray: ray.init(num_cpus=2); shoal: SHOAL_NUM_CPUS=2).
# It exits non-zero on errors only (a metric that failed, a missing tool), never on slowness.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
DURATION=${DURATION:-3}
TRIALS=${TRIALS:-5}
ONLY=${ONLY:-}
COLD_RUNS=${COLD_RUNS:-3}
OUT=${OUT:-$(mktemp -d -t shoal-vs-ray.XXXXXX)}
mkdir -p "$OUT"
unset SHOAL_ADDRESS SHOAL_SECRET SHOAL_CLUSTER_ID

say() { echo "bench-vs-ray: $*" >&2; }

# ---- shoal
if [[ -z "${SHOAL_BIN:-}" ]]; then
    say "building shoal (make build)"
    make -s build >&2
    SHOAL_BIN=$ROOT/bin/shoal
fi
[[ -x "$SHOAL_BIN" ]] || { say "SHOAL_BIN=$SHOAL_BIN is not an executable"; exit 1; }
export SHOAL_BIN
export PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"

# ---- Python packages: the SDK's, numpy, and ray
if ! "$PYTHON" -c "import numpy, msgpack, cloudpickle" 2>/dev/null; then
    say "installing numpy msgpack cloudpickle"
    "$PYTHON" -m pip install -q numpy msgpack cloudpickle >&2
fi
if ! "$PYTHON" -c "import ray" 2>/dev/null; then
    served=$("$PYTHON" -m pip index versions ray 2>/dev/null | head -1 || true)
    say "ray is not installed; PyPI serves ${served:-(pip index gave no answer)}; installing ray${RAY_VERSION:+==$RAY_VERSION}"
    "$PYTHON" -m pip install -q "ray${RAY_VERSION:+==$RAY_VERSION}" >&2
fi
RAY_VER=$("$PYTHON" -c "import ray; print(ray.__version__)")
SHOAL_VER=$("$SHOAL_BIN" --version | awk '{print $3}')
say "shoal $SHOAL_VER ($SHOAL_BIN), ray $RAY_VER, $(nproc) CPUs, results in $OUT"

# ONLY may name the script's own figures too: cold_start_seconds (here), run_true_seconds and
# idle_rss_mib (shoal bench core); the rest are shoal.bench's metrics.
drop() { # drop NAMES... from the comma list ONLY
    local keep=() n x
    IFS=, read -r -a names <<<"$ONLY"
    for n in "${names[@]}"; do
        for x in "$@"; do [[ "$n" == "$x" ]] && continue 2; done
        [[ -n "$n" ]] && keep+=("$n")
    done
    (IFS=,; echo "${keep[*]}")
}
shoal_only=$(drop cold_start_seconds)
ray_only=$(drop cold_start_seconds run_true_seconds idle_rss_mib)
common=(--duration "$DURATION" --trials "$TRIALS")
status=0

# ---- the microbenchmarks, shoal first, then ray
if [[ -z "$ONLY" || -n "$shoal_only" ]]; then
    args=("${common[@]}"); [[ -n "$shoal_only" ]] && args+=(--only "$shoal_only")
    say "shoal: SHOAL_NUM_CPUS=2 $SHOAL_BIN bench core ${args[*]}"
    SHOAL_NUM_CPUS=2 "$SHOAL_BIN" bench core "${args[@]}" --json "$OUT/shoal.json" >&2 || status=1
fi
if [[ -z "$ONLY" || -n "$ray_only" ]]; then
    args=("${common[@]}"); [[ -n "$ray_only" ]] && args+=(--only "$ray_only")
    say "ray: $PYTHON -m shoal.bench --backend ray ${args[*]}"
    RAY_USAGE_STATS_ENABLED=0 "$PYTHON" -m shoal.bench --backend ray "${args[@]}" --json "$OUT/ray.json" >&2 || status=1
fi

# ---- cold start from Python: a fresh cluster, connected, gone (COLD_RUNS each, median)
if [[ -z "$ONLY" || ",$ONLY," == *",cold_start_seconds,"* ]]; then
    say "cold start: $COLD_RUNS x each"
    "$PYTHON" - "$OUT/cold.json" "$COLD_RUNS" "$SHOAL_BIN" "$PYTHON" <<'EOF' >&2 || status=1
import json, statistics, subprocess, sys, time
out, runs, shoal, py = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cmds = {
    "shoal": [shoal, "run", "--num-cpus", "2", "--", py, "-c", "import shoal; shoal.init(); shoal.shutdown()"],
    "ray": [py, "-c", "import ray; ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False); ray.shutdown()"],
}
res = {}
for name, cmd in cmds.items():
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            res[name] = {"error": f"exit {p.returncode}: {p.stderr.strip()[-300:]}"}
            print(f"cold start {name}: {cmd} failed: {res[name]['error']}")
            break
        ts.append(time.perf_counter() - t0)
    else:
        res[name] = {"value": statistics.median(ts), "runs": ts}
        print(f"cold start {name}: median {res[name]['value']:.2f} s of {[round(t, 2) for t in ts]}")
json.dump(res, open(out, "w"), indent=1)
sys.exit(1 if any("error" in v for v in res.values()) else 0)
EOF
fi

# ---- the table
"$PYTHON" - "$OUT" "$SHOAL_VER" "$RAY_VER" <<'EOF' || status=1
import json, os, sys
out, shoal_ver, ray_ver = sys.argv[1], sys.argv[2], sys.argv[3]

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}

s, r, cold = load("shoal.json"), load("ray.json"), load("cold.json")
sv = {x["name"]: x for x in s.get("results", [])}
rv = {x["name"]: x for x in r.get("results", [])}
names = [n for n in list(sv) + [n for n in rv if n not in sv]]

def f(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"

def cell(d, n):
    x = d.get(n)
    return None if x is None else x["value"]

rows = []
for n in names:
    a, b = cell(sv, n), cell(rv, n)
    unit = (sv.get(n) or rv.get(n))["unit"]
    ratio = f"{a / b:.2f}" if a and b else "-"
    sd = lambda d: f" ±{f(d[n]['stdev'])}" if n in d else ""
    rows.append((n, f(a) + sd(sv), f(b) + sd(rv), ratio, unit))
if cold:
    a, b = cold.get("shoal", {}).get("value"), cold.get("ray", {}).get("value")
    rows.append(("cold_start_seconds", f(a) if a else "ERROR", f(b) if b else "ERROR", f"{b / a:.2f}" if a and b else "-",
                 "s, lower is better (ratio is ray/shoal)"))
st = s.get("startup", {})
if "run_true_seconds" in st:
    rows.append(("run_true_seconds", f(st["run_true_seconds"]["value"]), "-", "-", "s (shoal run -- true)"))
if "idle_rss_mib" in st:
    rows.append(("idle_rss_mib", f(st["idle_rss_mib"]["value"]), "-", "-", "MiB (idle shoal run process)"))
for which, d in (("shoal", s), ("ray", r)):
    for n, e in d.get("errors", {}).items():
        rows.append((n, "ERROR" if which == "shoal" else "", "ERROR" if which == "ray" else "", "-", e[:60]))

m = s.get("machine") or r.get("machine") or {}
head = ("metric", "shoal", "ray", "shoal/ray", "unit")
w = [max(len(str(x[i])) for x in rows + [head]) for i in range(5)]
lines = [f"shoal {shoal_ver} vs ray {ray_ver} on {m.get('cpus')} x {m.get('cpu_model')}, Python {m.get('python')}, "
         f"{s.get('date') or r.get('date')}; median of {s.get('trials') or r.get('trials')} trials, "
         f"{s.get('duration') or r.get('duration')} s per metric; load average at start: shoal {(s.get('loadavg') or ['?'])[0]}, "
         f"ray {(r.get('loadavg') or ['?'])[0]}", ""]
lines.append("  ".join(str(h).ljust(w[i]) if i in (0, 4) else str(h).rjust(w[i]) for i, h in enumerate(head)))
for row in rows:
    lines.append("  ".join(str(c).ljust(w[i]) if i in (0, 4) else str(c).rjust(w[i]) for i, c in enumerate(row)))
mem_s, mem_r = cell(sv, "memcpy_gigabytes"), cell(rv, "memcpy_gigabytes")
put_s, put_r = cell(sv, "put_1gib_gigabytes"), cell(rv, "put_1gib_gigabytes")
if mem_s and put_s:
    lines.append("")
    lines.append(f"put of 1 GiB vs memcpy: shoal {f(put_s)} / {f(mem_s)} GB/s = {put_s / mem_s:.2f}"
                 + (f"; ray {f(put_r)} / {f(mem_r)} GB/s = {put_r / mem_r:.2f}" if mem_r and put_r else ""))
print("\n".join(lines))

md = ["| metric | shoal | ray | shoal/ray | unit |", "|---|---:|---:|---:|---|"]
md += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
with open(os.path.join(out, "table.md"), "w") as fh:
    fh.write(lines[0] + "\n\n" + "\n".join(md) + "\n" + ("\n" + lines[-1] + "\n" if mem_s and put_s else ""))
if s.get("errors") or r.get("errors") or any("error" in v for v in cold.values()):
    sys.exit(1)
EOF
say "JSON and table.md in $OUT"
exit $status
