#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests and for trying sweep=slurm by hand:
# munged, slurmctld and slurmd (as root), with a munge key, a slurm.conf for this host and its
# cores, state, spool, logs and pid files all in the folder given. Nothing outside it is touched:
# client commands find the cluster through SLURM_CONF, which `start` prints.
#
#   tests/services/slurm.sh start DIR   # waits until sinfo shows the node idle; prints export SLURM_CONF=...
#   tests/services/slurm.sh stop DIR    # cancels the cluster's jobs, stops the daemons it started, checks none is left
#
# Needs Debian's slurm-wlm (slurmctld, slurmd, the client commands) and munge, run as root:
#   apt-get install slurm-wlm munge
# Process tracking is proctrack/linuxproc and there are no cgroups (TaskPlugin=task/none), so it
# also runs in a container. The partition is `netlab`; there is no accounting database (sacct
# answers nothing; netlab's Slurm launcher then asks squeue).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"
PARTITION=netlab
DAEMONS="slurmd slurmctld munged"   # the order they are stopped in

need() {
  for c in "$@"; do
    command -v "$c" > /dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$c" > /dev/null 2>&1 || {
      echo "slurm.sh: $c not found: install Debian's Slurm and munge (apt-get install slurm-wlm munge)" >&2; exit 3; }
  done
}
PATH="$PATH:/usr/sbin:/sbin"

pid_of() { [ -s "$dir/$1.pid" ] && cat "$dir/$1.pid" || true; }
# alive PID NAME: the process PID still runs and is the daemon NAME that this folder started
alive() { [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q -- "$2.*$dir"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
logs() { for f in "$dir"/log/*.log; do echo "--- $f"; tail -n 20 "$f"; done >&2; }

stop() {
  local left="" pid env
  if alive "$(pid_of slurmctld)" slurmctld; then   # the cluster's jobs first: their processes end with them
    scancel --full --partition="$PARTITION" > /dev/null 2>&1 || true
    for _ in $(seq 60); do
      [ -z "$(squeue --noheader --states=PENDING,RUNNING,COMPLETING,REQUEUED,SUSPENDED 2> /dev/null)" ] && break
      sleep 0.5
    done
  fi
  for name in $DAEMONS; do
    pid=$(pid_of "$name")
    alive "$pid" "$name" || continue
    kill -TERM "$pid" 2> /dev/null || true
    for _ in $(seq 100); do alive "$pid" "$name" || break; sleep 0.2; done
    if alive "$pid" "$name"; then kill -KILL "$pid" 2> /dev/null || true; sleep 0.5; fi
  done
  for name in $DAEMONS; do
    pid=$(pid_of "$name")
    if alive "$pid" "$name"; then left="$left $name($pid)"; else rm -f "$dir/$name.pid"; fi
  done
  # and no job process of this cluster (their environment names this slurm.conf)
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    env=$( { tr '\0' '\n' < "$p/environ"; } 2> /dev/null || true)
    if grep -qx "SLURM_CONF=$conf" <<< "$env" && grep -q "^SLURM_JOB_ID=" <<< "$env"; then
      left="$left job-process(${p#/proc/})"
    fi
  done
  if [ -n "$left" ]; then echo "slurm.sh: still running after stop:$left" >&2; return 1; fi
}

start() {
  need munged slurmctld slurmd sinfo scontrol squeue scancel
  [ "$(id -u)" = 0 ] || { echo "slurm.sh: run as root (slurmd starts jobs as their users)" >&2; exit 3; }
  for name in $DAEMONS; do
    if alive "$(pid_of "$name")" "$name"; then echo "slurm.sh: $name already runs for $dir; stop it first" >&2; exit 1; fi
  done
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
  chmod 700 "$dir/munge"
  # munge: a fresh key, and munged on a socket of its own
  rm -f "$dir/munge/munge.key"
  if command -v mungekey > /dev/null; then mungekey --create --keyfile="$dir/munge/munge.key"
  else dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none; fi
  chmod 400 "$dir/munge/munge.key"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
  for _ in $(seq 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done

  # slurm.conf for this host: its name, cores and memory as slurmd -C sees them
  local node hw ctld_port slurmd_port
  node=$(hostname -s)
  hw=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //' -e 's/RealMemory=\([0-9]*\)/RealMemory=\1/')
  ctld_port=$(free_port); slurmd_port=$(free_port)
  cat > "$conf" <<CONF
# written by tests/services/slurm.sh: a one-node cluster in $dir
ClusterName=netlab
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MailProg=/bin/true
InactiveLimit=0
KillWait=2
MinJobAge=300
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF

  slurmctld -f "$conf"
  slurmd -f "$conf" -N "$node"
  local state=""
  for _ in $(seq 120); do
    state=$(sinfo --noheader --nodes="$node" --format=%t 2> /dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.5
  done
  if [ "$state" != idle ]; then
    echo "slurm.sh: the node did not become idle (sinfo: ${state:-no answer})" >&2
    logs; stop || true; exit 1
  fi
  echo "export SLURM_CONF=$conf   # partition $PARTITION, node $node"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
