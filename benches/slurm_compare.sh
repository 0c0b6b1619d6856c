#!/usr/bin/env bash
# Compare orch's Slurm executor with Snakemake 9 and its Slurm executor plugin on one generated
# DAG (gen_graph.py --sleep) and one local Slurm cluster (tests/support/slurm), against the lower
# bound max(total work / slots, critical path).
#
#   bash benches/slurm_compare.sh [N]          (default N: 200 tasks)
#
#   SLEEP=s        seconds of work per task (default 0.5)
#   LAYERS=l       DAG layers (default 4), FANIN=k deps per task (default 2), SEED
#   MODES="..."    what to run, in turn each round (default "orch-step orch-batch snakemake")
#   REPS=k         rounds (default 1); each figure is the median over the rounds
#   ACCOUNTING=0   cluster without slurmdbd: Snakemake then polls with squeue
#   ORCH=path      this orch binary instead of `cargo build --release`
#   KEEP=1         keep the scratch directory
#
# Every Slurm client call both tools make goes through a timing wrapper (sbatch, srun), which
# gives the submit latency per task; each tool runs in a fresh copy of the tree, and every
# output is recomputed independently afterwards (gen_graph.py --verify).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
N=${1:-200}
SLEEP=${SLEEP:-0.5}
LAYERS=${LAYERS:-4}
FANIN=${FANIN:-2}
SEED=${SEED:-1}
MODES=${MODES:-"orch-step orch-batch snakemake"}
REPS=${REPS:-1}
ACCOUNTING=${ACCOUNTING:-1}

log() { printf '%s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# --- tools -----------------------------------------------------------------------------
bash "$repo/tests/support/slurm/setup.sh" $([[ $ACCOUNTING == 1 ]] && echo --accounting) >&2
if [[ $MODES == *snakemake* ]]; then
    snakemake_bin=$(bash "$here/support/snakemake/setup.sh")
fi
if [[ -n ${ORCH:-} ]]; then
    orch=$ORCH
else
    log "building orch (cargo build --release)..."
    (cd "$repo" && cargo build --release --quiet) >&2
    orch="${CARGO_TARGET_DIR:-$repo/target}/release/orch"
fi
[[ -x $orch ]] || die "no orch binary at $orch"

# --- the cluster ---------------------------------------------------------------------------
# Short, and searchable by all: munged's socket lives in the cluster's dir.
scratch=$(mktemp -d /tmp/orch-slurm-bench-XXXX)
chmod 755 "$scratch"
cluster="$scratch/c"
cleanup() {
    bash "$repo/tests/support/slurm/cluster.sh" stop "$cluster" >/dev/null 2>&1 || true
    [[ ${KEEP:-0} == 1 ]] && log "kept $scratch" || rm -rf "$scratch"
}
trap cleanup EXIT
mkdir -p "$cluster"
started=$(bash "$repo/tests/support/slurm/cluster.sh" start "$cluster" $([[ $ACCOUNTING == 1 ]] && echo --accounting)) ||
    die "the Slurm cluster did not start"
eval "$started"
conf=$(sed -n 's/^NodeName=//p' "$cluster/slurm.conf")
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$conf")
share=$(sed -n 's/.*OverSubscribe=FORCE:\([0-9]*\).*/\1/p' "$cluster/slurm.conf")
slots=$((cpus * ${share:-1}))

# Timing wrappers in front of the cluster's client commands: one line per call.
calls="$scratch/calls.log"
mkdir -p "$scratch/timing-bin"
for cmd in sbatch srun; do
    cat >"$scratch/timing-bin/$cmd" <<EOF
#!/bin/bash
s=\$EPOCHREALTIME
"$cluster/bin/$cmd" "\$@"
rc=\$?
echo "$cmd \$s \$EPOCHREALTIME" >>"$calls"
exit \$rc
EOF
    chmod +x "$scratch/timing-bin/$cmd"
done
export PATH="$scratch/timing-bin:$PATH"

# --- the graph -------------------------------------------------------------------------------
tree="$scratch/tree"
python3 "$here/gen_graph.py" "$tree" "$N" --layers "$LAYERS" --fanin "$FANIN" --seed "$SEED" \
    --sleep "$SLEEP" 2>/dev/null
# shellcheck disable=SC1091
source "$tree/graph.env"
bound=$(python3 -c "print(max($N * $SLEEP / $slots, $CRITICAL * $SLEEP))")
log "$N tasks of ${SLEEP}s, $LAYERS layers (critical path $CRITICAL tasks), $slots slots ($cpus CPUs x ${share:-1}): bound ${bound}s"

orchfile_for() { # mode -> the generated Orchfile with the Slurm settings of that mode
    local settings
    case $1 in
        # The allocation is the whole node, so its steps share its CPUs as the batch jobs do.
        orch-step) settings=$'[settings]\nexecutor = "slurm"\n[settings.slurm]\nlaunch = "step"\nmax_jobs = '"$slots"$'\nallocation = ["--cpus-per-task='"$cpus"$'"]' ;;
        orch-batch) settings=$'[settings]\nexecutor = "slurm"\n[settings.slurm]\nmax_jobs = 100' ;;
    esac
    python3 - "$tree/Orchfile.toml" "$settings" <<'EOF'
import sys
text = open(sys.argv[1]).read()
print(text.replace("[settings]\njobs = 2\n", sys.argv[2] + "\n", 1))
EOF
}

run_mode() { # mode round -> "seconds submit_median_ms submit_p90_ms" on stdout
    local mode=$1 dir="$scratch/run-$1-$2"
    rm -rf "$dir" && cp -r "$tree" "$dir" && : >"$calls"
    local started ended
    started=$EPOCHREALTIME
    case $mode in
        orch-*)
            orchfile_for "$mode" >"$dir/Orchfile.toml"
            (cd "$dir" && "$orch" build -q) >"$dir/tool.log" 2>&1 || { cat "$dir/tool.log" >&2; die "$mode failed"; }
            ;;
        snakemake)
            local status=()
            [[ $ACCOUNTING == 1 ]] || status=(--slurm-status-command squeue)
            # The plugin's checks at their quickest (defaults: 40 s before the first, 10 s apart).
            (cd "$dir" && "$snakemake_bin/snakemake" --executor slurm --jobs 100 \
                --default-resources slurm_partition=debug runtime=10 mem_mb=100 \
                --slurm-init-seconds-before-status-checks 1 --seconds-between-status-checks 1 \
                --latency-wait 5 "${status[@]}") >"$dir/tool.log" 2>&1 ||
                { tail -30 "$dir/tool.log" >&2; die "snakemake failed"; }
            ;;
    esac
    ended=$EPOCHREALTIME
    cp "$calls" "$dir/calls.log"
    python3 "$here/gen_graph.py" --verify "$dir" || die "$mode left stale outputs"
    python3 - "$calls" "$started" "$ended" "$SLEEP" "$mode" <<'EOF'
import statistics, sys
calls, started, ended, sleep, mode = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
lat = {"sbatch": [], "srun": []}
for line in open(calls):
    name, s, e = line.split()
    lat[name].append((float(e) - float(s)) * 1000)
# A step's submit latency is srun's time beyond the task's own work; a batch job's is sbatch's.
per_task = [x - sleep * 1000 for x in lat["srun"]] if mode == "orch-step" else lat["sbatch"]
per_task = [x for x in per_task if x >= 0] or [0]
if mode == "orch-step" and lat["srun"]:
    # Where a step build's time goes: slot time spent in srun (the work and Slurm's cost
    # per step) against slot time outside it (waiting for the allocation, orch between steps).
    in_srun = sum(lat["srun"]) / 1000
    print(f"{mode}: {len(lat['srun'])} steps, {in_srun:.1f} slot-s in srun "
          f"({in_srun - len(lat['srun']) * sleep:.1f} s beyond the work), "
          f"first srun {min(float(l.split()[1]) for l in open(calls) if l.startswith('srun')) - started:.2f} s after the start",
          file=sys.stderr)
q = statistics.quantiles(per_task, n=10) if len(per_task) > 1 else per_task * 9
print(f"{ended - started:.2f} {statistics.median(per_task):.0f} {q[8]:.0f}")
EOF
}

declare -A times sub_med sub_p90
for ((round = 1; round <= REPS; round++)); do
    for mode in $MODES; do
        read -r t m p < <(run_mode "$mode" "$round")
        log "round $round: $mode ${t}s (submit median ${m} ms, p90 ${p} ms)"
        times[$mode]+="$t "
        sub_med[$mode]+="$m "
        sub_p90[$mode]+="$p "
    done
done

median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
snake=""
[[ -n ${times[snakemake]:-} ]] && snake=$(median "${times[snakemake]}")
echo
echo "| $N tasks of ${SLEEP}s, $LAYERS layers, $slots slots | makespan | × bound (${bound} s) | × Snakemake | submit per task, median / p90 |"
echo "| --- | --- | --- | --- | --- |"
for mode in $MODES; do
    t=$(median "${times[$mode]}")
    vs_bound=$(python3 -c "print(f'{$t / $bound:.2f}')")
    vs_snake="-"
    [[ -n $snake && $mode != snakemake ]] && vs_snake=$(python3 -c "print(f'{$t / $snake:.2f}')")
    echo "| $mode | ${t} s | $vs_bound | $vs_snake | $(median "${sub_med[$mode]}") / $(median "${sub_p90[$mode]}") ms |"
done
