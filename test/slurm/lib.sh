# shellcheck shell=bash
# What the Slurm test scripts share; sourced after `cd` to the repository root. Sets ROOT, CLUSTER,
# SLURM_CONF, PATH and PYTHONPATH (this checkout's binary and SDK, in drivers and, through them,
# workers) and a private SHOAL_RENDEZVOUS_DIR; gives ok/bad/has/finish (the last line of a run is
# "N passed, N failed") and the /proc scans the cleanup checks use. Exits with "skip" unless root.
ROOT=$PWD
CLUSTER=$ROOT/scripts/slurm-cluster.sh
export SLURM_CONF=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}/slurm.conf
export PATH=$ROOT/bin:$PATH
export PYTHONPATH=$ROOT/python${PYTHONPATH:+:$PYTHONPATH}
SHOAL_RENDEZVOUS_DIR=$(mktemp -d /tmp/shoal-rdv.XXXXXX)
export SHOAL_RENDEZVOUS_DIR
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; (($#)) && printf '     %s\n' "$@"; return 0; }
has() { grep -q -- "$2" <<<"$1"; }
finish() { echo "$pass passed, $fail failed"; ((fail == 0)); exit; }
if [[ $(id -u) != 0 ]]; then echo "skip: the test Slurm cluster needs root"; finish; fi
# live_procs CID: how many processes (zombies excluded) carry SHOAL_CLUSTER_ID=CID
live_procs() {
  local e st n=0
  for e in /proc/[0-9]*/environ; do
    st=$(cat "${e%/environ}/stat" 2>/dev/null) || continue; st=${st##*) }
    [[ ${st%% *} == Z ]] && continue
    { tr '\0' '\n' < "$e"; } 2>/dev/null | grep -qx "SHOAL_CLUSTER_ID=$1" && n=$((n + 1))
  done
  echo "$n"
}
# shoal_pids JOB NODE: the pids of JOB's shoal agent processes on NODE (argv0 shoal, not srun,
# and not a worker)
shoal_pids() {
  local e env argv0
  for e in /proc/[0-9]*/environ; do
    env=$({ tr '\0' '\n' < "$e"; } 2>/dev/null) || continue
    grep -qx "SLURM_JOB_ID=$1" <<<"$env" && grep -qx "SLURMD_NODENAME=$2" <<<"$env" || continue
    grep -q "^SHOAL_WORKER_ID=" <<<"$env" && continue
    argv0=$(tr '\0' '\n' < "${e%/environ}/cmdline" 2>/dev/null | head -1)
    [[ $(basename "$argv0") == shoal ]] && basename "${e%/environ}"
  done
}
