#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the test suite (tests/test_slurm.py) and for trying the SLURM
# profile by hand. Needs root (it installs Debian's slurm-wlm and munge when missing and runs the daemons as root).
#
#   tests/slurm/cluster.sh start    install what is missing, start munged (if not running), slurmctld and slurmd,
#                                   wait until the node is idle
#   tests/slurm/cluster.sh stop     cancel every job of this cluster, stop the daemons it started
#   tests/slurm/cluster.sh status   sinfo and squeue of this cluster
#
# The configuration is /etc/slurm/slurm.conf, where every SLURM command looks (inside a job too: Snakemake's jobstep
# clears SLURM_* variables, SLURM_CONF included, before its `srun`). The script writes it only if it is absent or was
# written by this script (its first line says so), and removes it again at stop; an existing cluster's
# configuration is left alone and `start` fails, saying so. State, logs and pid files live in $AMURO_SLURM_DIR
# (default /tmp/amuro-slurm); the daemons listen on their own ports (16817/16818). No accounting (no slurmdbd, no
# sacct): finished jobs stay in slurmctld's memory for a day (MinJobAge), which is the record `squeue --states=all`
# shows and the tests read, and every finished job is also written to $AMURO_SLURM_DIR/jobcomp.log.
set -euo pipefail

DIR=${AMURO_SLURM_DIR:-/tmp/amuro-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# Written by tests/slurm/cluster.sh of amuro: a one-node test cluster, no accounting."
PARTITION=${AMURO_SLURM_PARTITION:-amuro}
CTLD_PORT=${AMURO_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${AMURO_SLURM_SLURMD_PORT:-16818}
HOST=$(hostname -s)

die() { echo "cluster.sh: $*" >&2; exit 1; }

running() {  # running PIDFILE: the process named in the pid file is alive
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_missing() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "SLURM is not installed (${missing[*]} missing) and installing it needs root"
    command -v apt-get >/dev/null || die "SLURM is not installed (${missing[*]} missing) and there is no apt-get"
    echo "cluster.sh: installing slurm-wlm and munge (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends slurm-wlm munge >&2 || die "apt-get install slurm-wlm munge failed"
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already serving credentials: use it, and leave it running at stop
    fi
    [[ -s /etc/munge/munge.key ]] || die "/etc/munge/munge.key is missing (reinstall munge or run mungekey)"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    munged --force --pid-file="$DIR/munged.pid" || die "munged did not start"
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged started but does not answer"
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    # Leave the machine 2 GiB; jobs ask for memory, so this is what the scheduler hands out.
    mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 2048 ))
    mkdir -p "$DIR/state" "$DIR/spool" "$(dirname "$CONF")"
    cat > "$CONF" <<EOF
$MARK
ClusterName=amuro-test
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
# Keep finished jobs in slurmctld's memory while it runs: without accounting this is the scheduler's record
# (squeue --states=all), and Snakemake's plugin reads job states from squeue.
MinJobAge=86400
MaxJobCount=100000
ReturnToService=2
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_idle() {
    local state=""
    for _ in $(seq 120); do
        state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 || true)
        case $state in idle|mixed|allocated) return 0 ;; esac
        sleep 0.5
    done
    echo "cluster.sh: node state '${state:-none}' after 60 s; reasons:" >&2
    sinfo -R >&2 || true
    tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    return 1
}

start() {
    install_missing
    mkdir -p "$DIR"
    if running "$DIR/slurmctld.pid" && running "$DIR/slurmd.pid"; then
        wait_idle || die "the running cluster's node is not usable"
        return 0
    fi
    if ! running "$DIR/slurmctld.pid" && pgrep -x slurmctld >/dev/null; then
        echo "cluster.sh: note: another slurmctld runs on this machine; this cluster uses port $CTLD_PORT" >&2
    fi
    if [[ -e $CONF ]] && [[ $(head -n 1 "$CONF") != "$MARK" ]]; then
        die "$CONF exists and was not written by this script: a SLURM installation is configured here; not touching it"
    fi
    start_munge
    write_conf
    rm -f "$DIR/jobcomp.log"
    # -c: start without the jobs of an earlier run.
    running "$DIR/slurmctld.pid" || slurmctld -c || die "slurmctld did not start (see $DIR/slurmctld.log)"
    running "$DIR/slurmd.pid" || slurmd -c || die "slurmd did not start (see $DIR/slurmd.log)"
    wait_idle || { stop; die "the node did not become idle"; }
    echo "cluster.sh: cluster up (partition $PARTITION, $(nproc) CPUs, config $CONF)" >&2
}

stop_pid() {  # stop_pid PIDFILE NAME: TERM, then KILL after 15 s
    local pidfile=$1 pid
    running "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    echo "cluster.sh: $2 ($pid) ignored TERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

stop() {
    if running "$DIR/slurmctld.pid"; then
        local jobs
        jobs=$(squeue -h -o %A -t PENDING,RUNNING,SUSPENDED,COMPLETING 2>/dev/null | tr '\n' ' ' || true)
        if [[ -n ${jobs// /} ]]; then
            echo "cluster.sh: cancelling jobs $jobs" >&2
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 60); do
                [[ -z $(squeue -h -o %A -t PENDING,RUNNING,SUSPENDED,COMPLETING 2>/dev/null) ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_pid "$DIR/slurmd.pid" slurmd
    stop_pid "$DIR/slurmctld.pid" slurmctld
    stop_pid "$DIR/munged.pid" munged  # only if this script started it
    if [[ -e $CONF ]] && [[ $(head -n 1 "$CONF") == "$MARK" ]]; then
        rm -f "$CONF"
    fi
    echo "cluster.sh: cluster stopped" >&2
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) sinfo; squeue --states=all ;;
    *) die "usage: $0 start|stop|status" ;;
esac
