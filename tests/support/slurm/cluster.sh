#!/usr/bin/env bash
# Starts and stops a one-node Slurm cluster on localhost, everything under one directory: munged
# with its own key and socket, slurmctld and slurmd on free ports (and, with --accounting,
# MariaDB and slurmdbd), their state, spool, logs and pid files. Nothing global is touched, so
# two clusters can run side by side. The Rust tests (tests/common/slurm.rs) and the benches use
# it; README.md beside this file says why the config is as it is.
#
#   cluster.sh start DIR [--accounting] [--stock-scheduler] [--second-partition] [--owner PID]
#                                          prints `export SLURM_CONF=DIR/slurm.conf PATH=DIR/bin:$PATH`
#   cluster.sh stop DIR [--keep]           cancels every job, stops the daemons, removes DIR
#   cluster.sh logs DIR                    the last lines of each daemon's log
#   cluster.sh sweep BASE                  stops the clusters in BASE/orch-slurm-* whose --owner
#                                          process is gone (SIGKILLed before it could stop them)
#
# --owner PID records that process (and its start time, so a recycled pid is not mistaken
# for it) in DIR/owner; a cluster started without it is never swept.
#
# Every wait is bounded; a failed start prints the logs' tails, stops what it started, exits 1.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PATH="$PATH:/usr/sbin:/sbin"

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

# Ports some process listens on (TCP, v4 and v6), one a line.
listening_ports() {
    local line port
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r _ local _ st _; do
        [[ "$st" == 0A ]] || continue
        port="${local##*:}"
        echo $((16#$port))
    done
}

# $1 ports not listened on, in 20000..59999, distinct.
free_ports() {
    local want=$1 taken picked=() port
    taken=" $(listening_ports | tr '\n' ' ') "
    for ((tries = 0; ${#picked[@]} < want && tries < 1000; tries++)); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        [[ "$taken" == *" $port "* || " ${picked[*]} " == *" $port "* ]] && continue
        picked+=("$port")
    done
    ((${#picked[@]} == want)) || die "no free ports found"
    echo "${picked[@]}"
}

# Waits up to $2 seconds (tenths) for the command in $3... to succeed.
wait_until() {
    local what=$1 limit=$2
    shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || {
            echo "cluster.sh: timed out after ${limit}s waiting for $what" >&2
            return 1
        }
        sleep 0.1
    done
}

# The pid in run/$1.pid when that process is alive and is one of this cluster's (its command
# line or, for slurmdbd which takes no arguments, its SLURM_CONF names DIR), so a recycled pid is
# never signalled.
daemon_pid() {
    local file="$dir/run/$1.pid" pid
    [[ -s "$file" ]] || return 1
    pid=$(<"$file")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    cat "/proc/$pid/cmdline" "/proc/$pid/environ" 2>/dev/null | tr '\0' '\n' | grep -qF "$dir" || return 1
    echo "$pid"
}

process_gone() { [[ ! -e /proc/$1 ]] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# SIGTERM, up to $2 s for it to exit, then SIGKILL.
stop_daemon() {
    local name=$1 grace=$2 pid
    pid=$(daemon_pid "$name") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! wait_until "$name to exit" "$grace" process_gone "$pid" 2>/dev/null; then
        echo "cluster.sh: $name (pid $pid) ignored SIGTERM for ${grace}s; SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_until "$name to die" 5 process_gone "$pid" || true
    fi
}

# Processes other than this shell that hold a file under DIR open or run in it (slurmstepd,
# a daemon whose pid file was lost): a stopped cluster leaves none.
holders() {
    # One find for all of /proc: a readlink per descriptor takes seconds on a busy machine.
    find /proc/[0-9]*/cwd /proc/[0-9]*/fd/ -maxdepth 1 -lname "$dir/*" 2>/dev/null |
        cut -d/ -f3 | sort -u | grep -vx -e "$$" -e "$BASHPID" || true
}

logs() {
    local f
    for f in "$dir"/log/*.log "$dir"/log/*.out; do
        [[ -s "$f" ]] || continue
        echo "--- ${f#"$dir"/} (last 25 lines)"
        tail -n 25 "$f"
    done
}

fill_template() {
    local template=$1 out=$2
    shift 2
    local args=() kv
    for kv in "$@"; do
        args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${args[@]}" "$template" >"$out"
    if grep -q '@[A-Z_]*@' "$out"; then
        die "unfilled field in $out: $(grep -o '@[A-Z_]*@' "$out" | head -1)"
    fi
}

# DIR/bin/sbatch, srun, ...: the client commands bound to this cluster whatever the environment.
# Tools that scrub SLURM_* before a nested srun (Snakemake's jobstep executor) lose SLURM_CONF and
# would look for /etc/slurm/slurm.conf; with DIR/bin first in PATH they still reach this cluster.
write_client_wrappers() {
    local tool real
    mkdir -p "$dir/bin"
    for tool in sacct sacctmgr salloc sattach sbatch scancel scontrol sinfo sprio squeue srun sshare sstat; do
        real=$(command -v "$tool") || continue
        printf '#!/bin/sh\nSLURM_CONF=%q exec %q "$@"\n' "$SLURM_CONF" "$real" >"$dir/bin/$tool"
        chmod +x "$dir/bin/$tool"
    done
}

start_munged() {
    mungekey --create --keyfile="$dir/munge/munge.key"
    munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/run/munged.pid" --seed-file="$dir/munge/munged.seed" \
        --log-file="$dir/log/munged.log" </dev/null >>"$dir/log/munged.out" 2>&1
    wait_until "munged's socket" 10 test -S "$dir/munge/munge.socket"
}

# MariaDB on 127.0.0.1:$db_port and a socket in DIR, with a user for slurmdbd.
start_mariadb() {
    local data="$dir/mysql/data" sock="$dir/mysql/mysqld.sock"
    mkdir -p "$data"
    mariadb-install-db --no-defaults --datadir="$data" --user=root --auth-root-authentication-method=socket \
        --skip-test-db >"$dir/log/mariadb-install.out" 2>&1 ||
        die "mariadb-install-db failed: $(tail -5 "$dir/log/mariadb-install.out")"
    # Not a daemon of its own: started in its own session, its pid recorded here.
    setsid mariadbd --no-defaults --datadir="$data" --socket="$sock" --pid-file="$dir/run/mariadbd.pid" \
        --bind-address=127.0.0.1 --port="$db_port" --user=root --skip-log-bin \
        --innodb-buffer-pool-size=64M --log-error="$dir/log/mariadb.log" </dev/null >>"$dir/log/mariadb.out" 2>&1 &
    echo $! >"$dir/run/mariadbd.pid"
    wait_until "MariaDB" 60 mariadb --no-defaults -S "$sock" -u root -e 'select 1'
    mariadb --no-defaults -S "$sock" -u root -e "
        CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'orch-test';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurmdbd() {
    fill_template "$here/slurmdbd.conf.in" "$dir/slurmdbd.conf" DIR="$dir" DBD_PORT="$dbd_port" DB_PORT="$db_port"
    # slurmdbd refuses a config others can read: it holds the database password.
    chmod 600 "$dir/slurmdbd.conf"
    # slurmdbd reads the slurmdbd.conf beside $SLURM_CONF (it has no option to name one).
    SLURM_CONF="$dir/slurm.conf" slurmdbd </dev/null >>"$dir/log/slurmdbd.out" 2>&1
    wait_until "slurmdbd's port" 60 port_listening "$dbd_port"
}

port_listening() { listening_ports | grep -qx "$1"; }

# One line per partition the node is in.
node_idle() { [[ "$(sinfo -h -n "$host" -o %t | sort -u)" == idle ]]; }

# Field 22 of /proc/PID/stat, the process's start time in clock ticks since boot; fails when
# there is no such process or it is a zombie.
process_start_time() {
    local stat rest fields
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    # The command name (field 2) is in parentheses and may hold spaces.
    rest=${stat##*) }
    read -ra fields <<<"$rest"
    [[ "${fields[0]}" != Z ]] || return 1
    echo "${fields[19]}"
}

write_owner() {
    local start
    start=$(process_start_time "$1") || die "owner process $1 is not running"
    echo "$1 $start" >"$dir/owner"
}

# Whether DIR/owner names a process that is still running (the same one, by its start time).
owner_alive() {
    local pid start now
    read -r pid start <"$1/owner" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    now=$(process_start_time "$pid") || return 1
    [[ "$now" == "$start" ]]
}

sweep() {
    local base=$dir cluster
    for cluster in "$base"/orch-slurm-*; do
        [[ -f "$cluster/owner" ]] || continue
        owner_alive "$cluster" && continue
        echo "cluster.sh: the owner of $cluster ($(<"$cluster/owner")) is gone: stopping its cluster" >&2
        # stop works on the global dir: a subshell each, so the base's stays.
        (
            dir=$cluster
            stop
        )
    done
}

start() {
    local accounting=false scheduler_parameters="SchedulerParameters=batch_sched_delay=0"
    local second_partition=false owner=""
    while (($#)); do
        case "$1" in
        --accounting) accounting=true ;;
        --stock-scheduler) scheduler_parameters="" ;;
        --second-partition) second_partition=true ;;
        --owner)
            owner=${2:-}
            [[ "$owner" =~ ^[0-9]+$ ]] || die "--owner takes a pid, not '$owner'"
            shift
            ;;
        *) die "unknown option $1" ;;
        esac
        shift
    done
    mkdir -p "$dir"
    [[ -z "$(ls -A "$dir")" ]] || die "$dir is not empty"
    # First, so that a sweep finds the cluster whenever its owner dies from here on.
    [[ -z "$owner" ]] || write_owner "$owner"
    # munged wants every directory above its socket searchable by all.
    chmod 755 "$dir"
    mkdir -p "$dir"/{munge,ctld-state,slurmd-spool,run,log}
    : >"$dir/plugstack.conf"

    host=$(hostname -s)
    local node_line cpus real_mem oversubscribe=4 def_mem accounting_lines=""
    # The machine's own figures (CPUs, sockets, cores, RealMemory) as slurmd sees them.
    node_line=$(slurmd -C | head -1) || die "slurmd -C failed"
    node_line="NodeName=$host ${node_line#NodeName=* }"
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
    real_mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    [[ -n "$cpus" && -n "$real_mem" ]] || die "cannot read CPUs/RealMemory from: $node_line"
    # Memory is never what limits how many jobs run at once: CPUs × oversubscription does.
    def_mem=$((real_mem / (cpus * oversubscribe)))
    ((def_mem > 1024)) && def_mem=1024

    read -r ctld_port slurmd_port dbd_port db_port <<<"$(free_ports 4)"
    if $accounting; then
        # AccountingStoragePass names the munge socket for talking to slurmdbd: AuthInfo's
        # socket= does not apply to that connection.
        accounting_lines="AccountingStorageType=accounting_storage/slurmdbd\\nAccountingStorageHost=127.0.0.1\\nAccountingStoragePort=$dbd_port\\nAccountingStoragePass=$dir/munge/munge.socket\\nJobAcctGatherType=jobacct_gather/linux"
    fi
    fill_template "$here/slurm.conf.in" "$dir/slurm.conf" \
        DIR="$dir" CLUSTER="orch$ctld_port" HOST="$host" \
        CTLD_PORT="$ctld_port" SLURMD_PORT="$slurmd_port" OVERSUBSCRIBE="$oversubscribe" \
        DEF_MEM_PER_CPU="$def_mem" MIN_JOB_AGE=300 NODE_LINE="${node_line#NodeName=}" \
        ACCOUNTING="$accounting_lines" SCHEDULER_PARAMETERS="$scheduler_parameters"
    if $second_partition; then
        # The same node in a partition of its own, for tests of where a job lands.
        echo "PartitionName=second Nodes=$host MaxTime=INFINITE State=UP OverSubscribe=FORCE:$oversubscribe" >>"$dir/slurm.conf"
    fi
    if $accounting; then
        # The "none" gatherer set above the accounting block would win otherwise.
        sed -i '/^JobAcctGatherType=jobacct_gather\/none$/d' "$dir/slurm.conf"
    fi
    export SLURM_CONF="$dir/slurm.conf"
    write_client_wrappers

    trap 'echo "cluster.sh: start failed in $dir" >&2; logs >&2; stop_all >&2; exit 1' ERR
    start_munged
    if $accounting; then
        start_mariadb
        start_slurmdbd
        sacctmgr -i add cluster "$(sed -n 's/^ClusterName=//p' "$SLURM_CONF")" >/dev/null
        sacctmgr -i add account orch Description=orch-tests Organization=orch >/dev/null
        sacctmgr -i add user root DefaultAccount=orch >/dev/null
    fi
    slurmctld -f "$SLURM_CONF" </dev/null >>"$dir/log/slurmctld.out" 2>&1
    wait_until "slurmctld to answer" 30 scontrol ping
    slurmd -f "$SLURM_CONF" </dev/null >>"$dir/log/slurmd.out" 2>&1
    wait_until "node $host idle in sinfo" 60 node_idle
    trap - ERR
    echo "export SLURM_CONF=$SLURM_CONF PATH=$dir/bin:\$PATH"
}

stop_all() {
    local jobs pid
    if daemon_pid slurmctld >/dev/null; then
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ') || true
        if [[ -n "${jobs// /}" ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            wait_until "cancelled jobs to leave squeue" 30 queue_empty || true
        fi
    fi
    stop_daemon slurmd 15
    stop_daemon slurmctld 15
    stop_daemon slurmdbd 15
    stop_daemon mariadbd 30
    stop_daemon munged 10
    for pid in $(holders); do
        echo "cluster.sh: process $pid still holds $dir: SIGKILL ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null))" >&2
        kill -KILL "$pid" 2>/dev/null || true
    done
}

queue_empty() { [[ -z "$(squeue -h -o %A 2>/dev/null)" ]] && squeue >/dev/null 2>&1; }

stop() {
    local keep=false
    [[ "${1:-}" == --keep ]] && keep=true
    [[ -d "$dir" ]] || return 0
    export SLURM_CONF="$dir/slurm.conf"
    stop_all
    $keep || rm -rf "$dir"
}

command=${1:-}
[[ $# -ge 2 ]] || die "usage: cluster.sh start|stop|logs|sweep DIR [options]"
dir=$(realpath -m "$2")
shift 2
case "$command" in
start) start "$@" ;;
stop) stop "$@" ;;
logs) logs ;;
sweep) sweep ;;
*) die "unknown command $command" ;;
esac
