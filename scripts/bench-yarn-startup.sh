#!/usr/bin/env bash
# Start-up on YARN, shoal next to YARN's own distributed-shell example, in one run on the
# MiniYARNCluster (test/yarn/minicluster.sh; started here when none runs, and stopped after).
#
#   scripts/bench-yarn-startup.sh [CONTAINERS (4)] [ROUNDS (3)]
#
# Each round runs, one after the other on the same cluster:
#   shoal:  shoal yarn submit --containers N -- true      (a trivial driver)
#   dshell: distributedshell.Client -num_containers N -shell_command true
# with the same container and ApplicationMaster sizes. Times come from the ResourceManager's
# own clock (the application's startedTime and finishedTime) and, for shoal, from the
# ApplicationMaster's log ("all agents joined", "driver exited"), so neither client's start-up
# (a JVM for dshell) counts. shoal's overhead beyond YARN's own container start is
# shoal's submit-to-finish minus dshell's. Prints a Markdown table of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-4}
ROUNDS=${2:-3}
MC=$ROOT/test/yarn/minicluster.sh
DS=$ROOT/test/yarn/dshell
SHOAL=$ROOT/bin/shoal
[[ -x $SHOAL ]] || { echo "bench: bin/shoal is missing; run make build" >&2; exit 1; }

if [[ ! -s $DS/target/classpath.txt ]]; then
  echo "bench: resolving distributed shell from Maven Central" >&2
  (cd "$DS" && { mvn -B -q -o package >/dev/null 2>&1 || mvn -B -q package; })
fi
DSJAR=$(tr ':' '\n' <"$DS/target/classpath.txt" | grep hadoop-yarn-applications-distributedshell)
started=0
if ! "$MC" status; then "$MC" up; started=1; fi
eval "$("$MC" env)"
WORK=$(mktemp -d /tmp/shoal-yarn-bench.XXXXXX)
trap 'rm -rf "$WORK"; ((started)) && "$MC" down >/dev/null 2>&1' EXIT

now_ms() { date +%s%3N; }
app_json() { curl -fsS "$SHOAL_YARN_RM/ws/v1/cluster/apps/$1"; }

for ((r = 1; r <= ROUNDS; r++)); do
  # shoal
  t0=$(now_ms)
  "$SHOAL" yarn submit --containers "$N" --memory 256m --am-memory 512m --name bench-shoal -- true 2>"$WORK/shoal.err" ||
    { cat "$WORK/shoal.err" >&2; exit 1; }
  echo $(($(now_ms) - t0)) >"$WORK/shoal-$r.wall"
  app=$(grep -o 'application_[0-9]*_[0-9]*' "$WORK/shoal.err" | head -1)
  app_json "$app" >"$WORK/shoal-$r.json"
  "$SHOAL" yarn logs --file stderr "$app" >"$WORK/shoal-$r.am" 2>/dev/null
  # dshell
  t0=$(now_ms)
  java -Xmx256m -cp "$YARN_CONF_DIR:$(cat "$DS/target/classpath.txt")" \
    org.apache.hadoop.yarn.applications.distributedshell.Client -jar "$DSJAR" -appname bench-dshell \
    -shell_command true -num_containers "$N" -container_memory 256 -master_memory 512 >"$WORK/ds.log" 2>&1 ||
    { tail -20 "$WORK/ds.log" >&2; exit 1; }
  echo $(($(now_ms) - t0)) >"$WORK/ds-$r.wall"
  curl -fsS "$SHOAL_YARN_RM/ws/v1/cluster/apps?startedTimeBegin=$t0" |
    python3 -c 'import json,sys; a=[x for x in json.load(sys.stdin)["apps"]["app"] if x["name"]=="bench-dshell"]; print(json.dumps({"app": a[-1]}))' \
      >"$WORK/ds-$r.json"
  echo "bench: round $r/$ROUNDS done ($app)" >&2
done

python3 - "$WORK" "$ROUNDS" "$N" <<'PY'
import json, re, statistics, sys
from datetime import datetime, timezone
work, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def stamp(log, what):
    for line in log.splitlines():
        if what in line and "yarn-am" in line:
            t = line.split()[0]
            return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000
    raise SystemExit(f"bench: no {what!r} in the ApplicationMaster's log")

rows = {"joined": [], "driver": [], "shoal": [], "ds": [], "shoal_wall": [], "ds_wall": []}
for r in range(1, rounds + 1):
    s = json.load(open(f"{work}/shoal-{r}.json"))["app"]
    d = json.load(open(f"{work}/ds-{r}.json"))["app"]
    am = open(f"{work}/shoal-{r}.am").read()
    assert s["finalStatus"] == "SUCCEEDED" and d["finalStatus"] == "SUCCEEDED", (s["finalStatus"], d["finalStatus"])
    rows["joined"].append((stamp(am, "all agents joined") - s["startedTime"]) / 1000)
    rows["driver"].append((stamp(am, "driver exited") - s["startedTime"]) / 1000)
    rows["shoal"].append((s["finishedTime"] - s["startedTime"]) / 1000)
    rows["ds"].append((d["finishedTime"] - d["startedTime"]) / 1000)
    rows["shoal_wall"].append(int(open(f"{work}/shoal-{r}.wall").read()) / 1000)
    rows["ds_wall"].append(int(open(f"{work}/ds-{r}.wall").read()) / 1000)
med = {k: statistics.median(v) for k, v in rows.items()}
fmt = lambda v: " ".join(f"{x:.2f}" for x in v)
print(f"{n} containers of 256 MB + an ApplicationMaster of 512 MB; median of {rounds} rounds (each round's values in brackets); seconds from the RM accepting the application (last row: the client command as a user waits for it)\n")
print("| what | shoal | YARN distributed shell | ratio |")
print("| --- | ---: | ---: | ---: |")
print(f"| submit to all {n} agents joined | {med['joined']:.2f} [{fmt(rows['joined'])}] | | |")
print(f"| submit to driver exit (`true`) | {med['driver']:.2f} [{fmt(rows['driver'])}] | | |")
print(f"| submit to application FINISHED | {med['shoal']:.2f} [{fmt(rows['shoal'])}] | {med['ds']:.2f} [{fmt(rows['ds'])}] | {med['shoal']/med['ds']:.2f}x |")
over = med["shoal"] - med["ds"]
print(f"| client command, start to exit | {med['shoal_wall']:.2f} [{fmt(rows['shoal_wall'])}] | {med['ds_wall']:.2f} [{fmt(rows['ds_wall'])}] | {med['shoal_wall']/med['ds_wall']:.2f}x |")
print(f"\nshoal's overhead beyond YARN's own container start (shoal minus distributed shell, submit to FINISHED): {over:+.2f} s; the bar is < 1 s: {'met' if over < 1 else 'NOT met'}")
PY
