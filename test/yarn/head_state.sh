#!/usr/bin/env bash
# `shoal yarn submit --state-dir` on a real YARN (MiniYARNCluster): the ApplicationMaster's head
# keeps its database in the directory, and `shoal history` lists the application's cluster
# (kind yarn), its nodes (the AM's container and the members), the job's outcome, a named actor
# and a placement group after the application has finished. Starts the MiniYARNCluster when none
# runs (and stops it after; minicluster.sh locks /tmp/shoal-yarn.lock itself). Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/yarn/lib.sh"
WORK=$(mktemp -d /tmp/shoal-yarn-state.XXXXXX)
trap 'rm -rf "$WORK"; yarn_cleanup' EXIT
cat > "$WORK/driver.py" <<'PY'
import shoal
from shoal.util.placement_group import placement_group
shoal.init()
pg = placement_group([{"CPU": 1}], strategy="PACK", name="yarn-pg")
shoal.get(pg.ready())
@shoal.remote
class Keeper:
    def ok(self):
        return True
k = Keeper.options(name="keeper").remote()
assert shoal.get(shoal.get_actor("keeper").ok.remote())
print("DRIVER DONE", flush=True)
PY
out=$(cd "$WORK" && "$SHOAL" yarn submit --containers 2 --memory 256m --am-memory 512m --env "PYTHONPATH=$ROOT/python" \
  --state-dir "$WORK/state" -- "$PY" driver.py 2>&1); rc=$?
app=$(grep -o 'application_[0-9]*_[0-9]*' <<<"$out" | head -1)
if ((rc == 0)) && has "$out" "DRIVER DONE"; then ok "yarn submit --state-dir: the driver ran in $app"
else bad "yarn submit --state-dir" "rc=$rc" "$out"; fi
hist=$("$SHOAL" history --state-dir "$WORK/state" 2>&1)
row() { grep -E -- "$1" <<<"$hist" | grep -q -- "$2"; }
if has "$hist" "shoal yarn on" && has "$hist" "exit 0" && has "$hist" "nodes: 3" && row " keeper " "Keeper  *DEAD" \
   && row "yarn-pg" "PACK  *REMOVED" && row "-0001" "SUCCEEDED  *0"; then
  ok "history: the YARN application's cluster, 3 nodes, job SUCCEEDED, the named actor and the placement group"
else bad "history of a YARN application" "$hist" "$(ls -la "$WORK/state" 2>&1)"; fi
finish
