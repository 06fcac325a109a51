#!/usr/bin/env bash
# A real multi-node Slurm 22.05 cluster on one machine, for shoal's integration tests.
#
#   scripts/slurm-cluster.sh up       install what is missing, start the cluster, wait until idle
#   scripts/slurm-cluster.sh down     stop it and remove everything it made (idempotent)
#   scripts/slurm-cluster.sh status   daemons, sinfo and squeue
#   scripts/slurm-cluster.sh env      print `export SLURM_CONF=...`; use: eval "$(... env)"
#   scripts/slurm-cluster.sh exec NODE CMD...   run CMD on NODE (its network and mount namespace)
#
# Layout: slurmctld runs on the host at 198.18.0.1 on the bridge shoalbr0; node K is the network
# namespace shoal-nK with address 198.18.0.(10+K), where one `slurmd -N nodeK` runs. 198.18.0.0/24
# is a block that is never routed, so these hosts stay apart from everything else. Nodes are in
# /etc/hosts (lines marked "# shoal-slurm-cluster", with their IPv4-mapped IPv6 addresses as
# nodeK-v4mapped, see hosts_add). Every node has 2 CPUs and 4 fake GPUs
# (/dev/tty0..3). All namespaces share one UTS namespace: `hostname` is the same on every node,
# so jobs must use SLURMD_NODENAME.
#
# Each slurmd also gets a mount namespace whose /sys is the node's own sysfs (so /sys/class/net
# shows the node's interfaces) with the host's /sys/fs/cgroup moved back in. `ip netns exec`
# would do the first but drop the cgroup mounts, which node discovery and GPU confinement need.
#
# What jobs should know (all checked by test/slurm/smoke.sh):
#   - A nested srun inherits the batch environment: pass -N and -n explicitly.
#   - Parallel steps in one job need `srun --exact` (or --overlap): by default a step takes all of
#     the job's CPUs on its nodes, and the next step waits without a word.
#   - Completed jobs leave squeue 5-65 s after they end (MinJobAge=5, which keeps
#     `sbatch --wait` polling every 2 s); take a job's result from `sbatch --wait`'s exit status.
#   - With proctrack/linuxproc (the default), a process of the batch step whose parent has died
#     is no longer tracked: if it ignores SIGTERM, scancel leaves it running. SHOAL_SLURM_PROCTRACK
#     =cgroup tracks by cgroup, as production clusters do, and kills it; srun takes ~0.25 s, not
#     ~0.08 s.
#
# Environment: SHOAL_SLURM_DIR (state dir, default /tmp/shoal-slurm), SHOAL_SLURM_NODES (1-9,
# default 3), SHOAL_SLURM_TIMEOUT (seconds `up` waits for idle nodes, default 60),
# SHOAL_SLURM_PROCTRACK (linuxproc or cgroup, default linuxproc).
# Root only. One such cluster per machine: the bridge and namespace names are fixed.
# `status` exits 3 unless slurmctld and every slurmd run.
set -euo pipefail

DIR=${SHOAL_SLURM_DIR:-/tmp/shoal-slurm}
NODES=${SHOAL_SLURM_NODES:-3}
TIMEOUT=${SHOAL_SLURM_TIMEOUT:-60}
PROCTRACK=${SHOAL_SLURM_PROCTRACK:-linuxproc}
CONF=$DIR/slurm.conf
BR=shoalbr0
NET=198.18.0
CTLD_ADDR=$NET.1
MARK="# shoal-slurm-cluster"
PKGS=(slurmctld slurmd slurm-client munge)
MUNGE_SOCKET=/run/munge/munge.socket.2
export SLURM_CONF=$CONF

log() { echo "slurm-cluster: $*"; }
die() { echo "slurm-cluster: error: $*" >&2; exit 1; }

[[ $PROCTRACK == linuxproc || $PROCTRACK == cgroup ]] ||
  die "SHOAL_SLURM_PROCTRACK=$PROCTRACK: want linuxproc or cgroup"
[[ $NODES =~ ^[1-9]$ ]] || die "SHOAL_SLURM_NODES=$NODES: want a number from 1 to 9"
[[ $DIR == /* && $DIR != / ]] || die "SHOAL_SLURM_DIR=$DIR: want an absolute path other than /"

node_names() { local k; for ((k = 1; k <= NODES; k++)); do echo "node$k"; done; }
ns_of()   { echo "shoal-n${1#node}"; }  # node2 -> shoal-n2
addr_of() { echo "$NET.$((10 + ${1#node}))"; }

# running PID: the process exists and is not a zombie (PID 1 of this VM reaps only every ~2 s).
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# alive PIDFILE [COMM]: prints the pid when the file names a running process (with that name).
alive() {
  local pid
  [[ -r $1 ]] || return 1
  pid=$(tr -dc 0-9 <"$1")
  [[ -n $pid ]] && running "$pid" || return 1
  [[ -z ${2:-} || $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
  echo "$pid"
}

# stop_pids GRACE_SECONDS PID...: TERM, wait up to GRACE, then KILL what is left.
stop_pids() {
  local grace=$1 pid i left; shift
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  for ((i = 0; i < grace * 20; i++)); do
    left=
    for pid in "$@"; do running "$pid" && { left=1; break; }; done
    [[ -z $left ]] && return 0
    sleep 0.05
  done
  for pid in "$@"; do
    running "$pid" && log "no exit ${grace}s after SIGTERM, sending SIGKILL: $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
  done
  kill -KILL "$@" 2>/dev/null || true
}

need_root() { [[ $(id -u) == 0 ]] || die "$1 needs root (network namespaces, /etc/hosts, daemons)"; }

install_packages() {
  local missing=() p created_policy=
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  # Keep the packages' init scripts from starting daemons against a config that does not exist.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
      [[ -n $created_policy ]] && rm -f /usr/sbin/policy-rc.d
      die "apt-get install ${missing[*]} failed"
    fi
  fi
  [[ -n $created_policy ]] && rm -f /usr/sbin/policy-rc.d
  return 0
}

munge_ok() { timeout 5 munge -n -S "$MUNGE_SOCKET" 2>/dev/null | timeout 5 unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }

start_munge() {
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  fi
  munge_ok && return 0   # ours from an earlier `up`, or the system's: either serves
  mkdir -p /run/munge && chown munge:munge /run/munge
  munged --force --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log"
  local i
  for ((i = 0; i < 50; i++)); do munge_ok && return 0; sleep 0.1; done
  die "munged does not answer on $MUNGE_SOCKET; see $DIR/log/munged.log"
}

setup_network() {
  if [[ ! -d /sys/class/net/$BR ]]; then
    ip link add "$BR" type bridge
  fi
  ip addr replace "$CTLD_ADDR/24" dev "$BR"
  ip link set "$BR" up
  local n ns veth
  for n in $(node_names); do
    ns=$(ns_of "$n"); veth=shoal-v${n#node}
    [[ -e /run/netns/$ns ]] || ip netns add "$ns"
    if [[ ! -d /sys/class/net/$veth ]]; then
      ip link add "$veth" type veth peer name eth0 netns "$ns"
    fi
    ip link set "$veth" master "$BR" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$(addr_of "$n")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$CTLD_ADDR"
  done
}

# /etc/hosts may be a bind mount (containers), so it is rewritten in place, never renamed.
hosts_remove() {
  [[ -f /etc/hosts ]] && grep -qF "$MARK" /etc/hosts || return 0
  local tmp; tmp=$(mktemp)
  grep -vF "$MARK" /etc/hosts >"$tmp" || true
  cat "$tmp" >/etc/hosts; rm -f "$tmp"
}
# Each node also gets a line for its IPv4-mapped IPv6 address (::ffff:198.18.0.1K) under another
# name (nodeK-v4mapped): the nodes reach no DNS server, and torch's c10d asks for the name of its
# peers' mapped addresses, which otherwise waits for DNS (10 s each); the name differs so that
# `getent hosts nodeK` and getaddrinfo("nodeK") still give only the IPv4 address.
hosts_add() {
  local want n
  want=$(for n in $(node_names); do printf '%s %s %s\n' "$(addr_of "$n")" "$n" "$MARK"; done
         for n in $(node_names); do printf '::ffff:%s %s-v4mapped %s\n' "$(addr_of "$n")" "$n" "$MARK"; done)
  [[ $(grep -F "$MARK" /etc/hosts 2>/dev/null || true) == "$want" ]] && return 0
  hosts_remove
  echo "$want" >>/etc/hosts
}

# write_if_changed FILE: stdin becomes FILE; returns 0 when the content changed.
write_if_changed() {
  local tmp; tmp=$(mktemp "$1.XXXX")
  cat >"$tmp"
  if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  mv "$tmp" "$1"; chmod 0644 "$1"
}

write_config() {
  local mem_mb real_mem n changed=1
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  real_mem=$((mem_mb * 9 / 10 < 4000 ? mem_mb * 9 / 10 : 4000))
  # Memory is a consumable resource (CR_Core_Memory): without a default, a job would take the
  # whole node's memory and no second job could share it.
  # MinJobAge=5 keeps `sbatch --wait` polling every 2 s; with the default 300 it sleeps 2, 8, 32 s
  # (sbatch.c _job_wait), so a 3 s job takes 10 s. Completed jobs vanish from squeue 5-65 s after
  # they end. batch_sched_delay=0 starts a batch job in ~0.5 s instead of ~2.5 s. sched_interval=2:
  # a job that becomes eligible with time (a requeued one, cred_expire below) starts within 2 s,
  # not at the next 60 s scheduling pass.
  {
    cat <<EOF
# Written by scripts/slurm-cluster.sh; \`down\` removes it.
ClusterName=shoal
SlurmctldHost=$(hostname)($CTLD_ADDR)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/$PROCTRACK
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((real_mem / 8))
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MessageTimeout=10
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=5
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
MailProg=/bin/true
# Preemption by partition priority; a preempted job is requeued (see the partitions below).
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
# A preempted job that asked for a warning signal (--signal=USR2@90, as submitit does) gets that
# signal instead of SIGTERM (scripts/bench-preempt.sh compares shoal with submitit).
SlurmctldParameters=preempt_send_user_signal
# A requeued job may start again cred_expire+1 seconds after it ended (default 121 s); 10 keeps
# the requeue tests short and is still far longer than a step launch takes here.
AuthInfo=cred_expire=10
# Each executable in $DIR/epilog.d runs after every job on each node (tests put
# \`shoal admin epilog\` there).
Epilog=$DIR/epilog.sh
# shoal's SPANK plugin (srun --shoal), when it is built
PlugStackConfig=$DIR/plugstack.conf
EOF
    for n in $(node_names); do
      echo "NodeName=$n NodeAddr=$(addr_of "$n") CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=$real_mem Gres=gpu:4 State=UNKNOWN"
    done
    # Preemption (test/slurm/train-requeue.sh): a job of `urgent` (PriorityTier 10) preempts
    # jobs of `preemptible` (PreemptMode=REQUEUE): SIGTERM to the job's steps, GraceTime
    # seconds to save, then Slurm ends the job and queues it again. Only test/slurm/train-requeue.sh
    # submits to `urgent`, so the other suites' `debug` jobs are never preempted. (PreemptMode=OFF
    # on `debug` would say so, but it also stops --oversubscribe jobs from sharing CPUs there.)
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES"
    echo "PartitionName=preemptible Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=10"
    echo "PartitionName=urgent Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF"
  } | write_if_changed "$CONF" || changed=
  local repo; repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  echo "optional $repo/bin/shoal_spank.so shoal=$repo/bin/shoal" | write_if_changed "$DIR/plugstack.conf" || true
  mkdir -p "$DIR/epilog.d"
  printf '%s\n' '#!/bin/sh' "for f in $DIR/epilog.d/*; do [ -x \"\$f\" ] && \"\$f\"; done" 'exit 0' |
    write_if_changed "$DIR/epilog.sh" || true
  chmod +x "$DIR/epilog.sh"
  printf '%s\n' "CgroupPlugin=cgroup/v1" "CgroupMountpoint=/sys/fs/cgroup" "CgroupAutomount=no" |
    write_if_changed "$DIR/cgroup.conf" || true
  {
    echo "AutoDetect=off"
    for n in $(node_names); do echo "NodeName=$n Name=gpu File=/dev/tty[0-3]"; done
  } | write_if_changed "$DIR/gres.conf" || true
  [[ -n $changed ]]
}

# in_node NODE CMD...: CMD in the node's network namespace and a private mount namespace whose
# /sys belongs to that network namespace, with the host's /sys/fs/cgroup (and bpf) kept.
in_node() {
  local ns; ns=$(ns_of "$1"); shift
  local stage=$DIR/run/sys-$ns
  mkdir -p "$stage"
  # shellcheck disable=SC2016
  nsenter --net="/run/netns/$ns" unshare --mount --propagation slave bash -c '
    set -e; stage=$1; shift; kept=()
    for m in /sys/fs/cgroup /sys/fs/bpf; do
      if mountpoint -q "$m"; then
        mkdir -p "$stage/${#kept[@]}" && mount --rbind "$m" "$stage/${#kept[@]}"; kept+=("$m")
      fi
    done
    umount -l /sys && mount -t sysfs sysfs /sys
    for i in "${!kept[@]}"; do mount --move "$stage/$i" "${kept[$i]}"; done
    exec "$@"' in_node "$stage" "$@"
}

start_daemons() {
  local restart=$1 pid n
  if pid=$(alive "$DIR/run/slurmctld.pid" slurmctld) && [[ -n $restart ]]; then
    log "configuration changed: restarting slurmctld"; stop_pids 10 "$pid"
  fi
  if ! alive "$DIR/run/slurmctld.pid" slurmctld >/dev/null; then
    slurmctld -f "$CONF" || die "slurmctld failed to start; see $DIR/log/slurmctld.log"
  fi
  for n in $(node_names); do
    if pid=$(alive "$DIR/run/slurmd-$n.pid" slurmd) && [[ -n $restart ]]; then
      stop_pids 10 "$pid"
    fi
    if ! alive "$DIR/run/slurmd-$n.pid" slurmd >/dev/null; then
      in_node "$n" slurmd -N "$n" -f "$CONF" || die "slurmd -N $n failed to start; see $DIR/log/slurmd-$n.log"
    fi
  done
}

wait_idle() {
  local t0=$SECONDS next=$SECONDS out n st missing
  while :; do
    out=$(timeout 10 sinfo -h -N -o '%N %t' 2>/dev/null || true)
    missing=()
    for n in $(node_names); do
      st=$(awk -v n="$n" '$1 == n {print $2; exit}' <<<"$out")
      case $st in idle | mix | mixed | alloc | allocated) ;; *) missing+=("$n(${st:-no answer})") ;; esac
    done
    ((${#missing[@]})) || break
    if ((SECONDS - t0 >= TIMEOUT)); then
      for n in $(node_names); do
        echo "--- $DIR/log/slurmd-$n.log (tail)" >&2; tail -n 5 "$DIR/log/slurmd-$n.log" >&2 2>/dev/null || true
      done
      echo "--- $DIR/log/slurmctld.log (tail)" >&2; tail -n 10 "$DIR/log/slurmctld.log" >&2 2>/dev/null || true
      die "after ${TIMEOUT}s these nodes are not idle: ${missing[*]}; the logs are in $DIR/log; \`$0 down\` then \`up\` starts afresh"
    fi
    if ((SECONDS >= next)); then
      log "waiting for nodes: ${missing[*]} ($((SECONDS - t0))s)"; next=$((SECONDS + 5))
    fi
    sleep 0.2
  done
}

# close_inherited_fds: the daemons started below must not inherit this script's open files.
# A caller that serialises runs with `flock LOCK scripts/slurm-cluster.sh up` would otherwise
# hand its lock to munged and slurmd, which hold it until `down`: every later flock waits.
close_inherited_fds() {
  local f fd
  for f in /proc/$$/fd/*; do
    fd=${f##*/}
    [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2 && fd != 255)) && eval "exec $fd>&-" 2>/dev/null
  done
  return 0
}

cmd_up() {
  need_root up
  close_inherited_fds
  local t0=$SECONDS restart='' n
  install_packages
  mkdir -p "$DIR"/{ctld,run,log}
  for n in $(node_names); do mkdir -p "$DIR/spool/$n"; done
  start_munge
  setup_network
  hosts_add
  write_config && restart=1
  # A config written by an earlier `up` is not a change for daemons that are not running yet.
  alive "$DIR/run/slurmctld.pid" slurmctld >/dev/null || restart=
  start_daemons "$restart"
  wait_idle
  log "up: $NODES nodes idle in $((SECONDS - t0))s; use: export SLURM_CONF=$CONF"
}

# Pids of processes whose command line names our slurm.conf, for when pid files are gone.
pids_with_conf() {
  local p
  for p in $(pgrep -x "$1" || true); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$CONF" && echo "$p"
  done
  return 0
}

# Pids of the processes on the nodes other than slurmd: slurmstepd and the jobs' tasks. Every
# process in a node's network namespace belongs to that node.
job_pids() {
  local n ns p
  for n in $(node_names); do
    ns=$(ns_of "$n")
    [[ -e /run/netns/$ns ]] || continue
    for p in $(ip netns pids "$ns"); do
      [[ $(cat "/proc/$p/comm" 2>/dev/null) == slurmd ]] || echo "$p"
    done
  done
}

cmd_down() {
  need_root down
  local n ns pids=() pid d jobs i
  # Cancel the jobs first, so that their processes get what any scancel gives: SIGTERM, then
  # SIGKILL after KillWait.
  if alive "$DIR/run/slurmctld.pid" slurmctld >/dev/null &&
     jobs=$(timeout 5 squeue -h -t PD,R,S,CG -o %A 2>/dev/null) && [[ -n $jobs ]]; then
    log "cancelling jobs: $(echo "$jobs" | paste -sd' ')"
    # shellcheck disable=SC2086
    timeout 5 scancel $jobs 2>/dev/null || true
    for ((i = 0; i < 70; i++)); do [[ -z $(job_pids) ]] && break; sleep 0.1; done
  fi
  # slurmstepd ignores SIGTERM: whatever is left of the jobs gets SIGKILL.
  mapfile -t pids < <(job_pids)
  ((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
  pids=()
  for n in $(node_names); do
    if pid=$(alive "$DIR/run/slurmd-$n.pid" slurmd); then pids+=("$pid"); fi
  done
  if pid=$(alive "$DIR/run/slurmctld.pid" slurmctld); then pids+=("$pid"); fi
  mapfile -t -O "${#pids[@]}" pids < <(pids_with_conf slurmctld; pids_with_conf slurmd)
  stop_pids 10 "${pids[@]}"
  if pid=$(alive "$DIR/run/munged.pid" munged); then stop_pids 5 "$pid"; fi
  # proctrack/cgroup leaves a slurm_NODE hierarchy in the cgroup controllers it used.
  for n in $(node_names); do
    for d in /sys/fs/cgroup/*/slurm_"$n"; do
      if [[ -d $d ]]; then find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
  done
  for n in $(node_names); do
    ns=$(ns_of "$n")
    # Deleting the namespace deletes its veth pair too, but not at once.
    if [[ -e /run/netns/$ns ]]; then ip netns del "$ns"; fi
    ip link del "shoal-v${n#node}" 2>/dev/null || true
  done
  ip link del "$BR" 2>/dev/null || true
  hosts_remove
  rm -rf "$DIR"
  log "down"
}

cmd_status() {
  local n pid rc=0
  if pid=$(alive "$DIR/run/slurmctld.pid" slurmctld); then echo "slurmctld: pid $pid"
  else echo "slurmctld: not running"; rc=3; fi
  for n in $(node_names); do
    if pid=$(alive "$DIR/run/slurmd-$n.pid" slurmd); then echo "slurmd $n: pid $pid in $(ns_of "$n") at $(addr_of "$n")"
    else echo "slurmd $n: not running"; rc=3; fi
  done
  if ((rc == 0)); then
    timeout 10 sinfo || true
    timeout 10 squeue || true
  fi
  return "$rc"
}

cmd_exec() {
  (($# >= 2)) || die "usage: $0 exec NODE CMD..."
  local n=$1 pid; shift
  [[ $n =~ ^node[1-9]$ ]] || die "exec: $n is not a node name (node1..node$NODES)"
  # Join the mount namespace of the node's slurmd, so the command sees what its jobs see.
  if pid=$(alive "$DIR/run/slurmd-$n.pid" slurmd); then
    exec nsenter -t "$pid" --net --mount -- "$@"
  fi
  die "exec: slurmd of $n is not running; run \`$0 up\` first"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  exec) shift; cmd_exec "$@" ;;
  *) echo "usage: $0 up|down|status|env|exec NODE CMD..." >&2; exit 2 ;;
esac
