#!/usr/bin/env bash
# shellcheck disable=SC2016  # job scripts are quoted for the job
# Observability on the real 3-node Slurm cluster (docs/observability.md): a task on node2 and an
# actor on node3 print; `shoal logs --task/--actor/--node` and the driver's own prefixed lines
# have them (each member agent keeps its own lines, the head asks it; the head holds none of
# them), a member's bound (--log-lines 50) keeps the newest lines and says how many it dropped,
# the timeline has every task with its
# node, /metrics counts 3 nodes up and the members' heartbeats, and the end-of-job report on the
# job's stderr counts 3 nodes. Run it under `flock /tmp/shoal-slurm.lock` (make test-obs does).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. "$PWD/test/slurm/lib.sh"
WORK=$(mktemp -d /tmp/shoal-obs.XXXXXX)
trap 'rm -rf "$WORK" "$SHOAL_RENDEZVOUS_DIR"' EXIT
"$CLUSTER" up >/dev/null || { bad "slurm cluster up"; finish; }
cat > "$WORK/obs.sbatch" <<SB
#!/bin/bash
#SBATCH -N 3 --ntasks-per-node=1 --output=$WORK/obs.out --error=$WORK/obs.err
srun bash -c 'exec shoal launch --log-lines 50 --resources "{\"on_\$SLURMD_NODENAME\": 100}" -- python3 $ROOT/test/slurm/obs.py'
SB
(cd "$WORK" && timeout 300 sbatch --wait "$WORK/obs.sbatch" >/dev/null 2>&1); rc=$?
out=$(cat "$WORK/obs.out" 2>/dev/null); err=$(cat "$WORK/obs.err" 2>/dev/null)
[[ $rc == 0 ]] && ok "job exit 0" || bad "job exit code" "rc=$rc" "$(tail -n 30 <<<"$out$err")"
for n in placement logs_task_on_member logs_actor_on_member logs_node timeline_every_task_with_its_node metrics_members member_keeps_its_lines page_logs_of_member member_ring_bound member_ring_bound_metric; do
  line=$(grep "^CHECK $n " <<<"$out")
  if [[ $line == "CHECK $n True"* ]]; then ok "$n"; else bad "$n" "${line:-no CHECK line}" "$(tail -n 20 <<<"$out$err")"; fi
done
if grep -q "^(on2 pid=[0-9]*, node=node2) task line on node2 x=2$" <<<"$out" && grep -q "^(Talker.say pid=[0-9]*, node=node3) actor line on node3 i=1$" <<<"$out"; then
  ok "the driver prints its member workers' lines, prefixed (log_to_driver)"
else bad "driver's prefixed lines" "$(grep -i "line on" <<<"$out")"; fi
if grep -q "^shoal: job report: .* on 3 node(s); tasks 4 (0 failed, 0 retried); actors 1 (0 failed), actor calls 2 (0 failed)" <<<"$err"; then
  ok "the end-of-job report counts 3 nodes"
else bad "report" "$(grep "shoal:" <<<"$err")"; fi
finish
