#!/usr/bin/env bash
# Compare orch with GNU make and ninja on the same generated DAG.
#
#   bash benches/compare.sh [--quick] [N...]      (default N: 1000 10000)
#
#   --quick      N=1000 only (unless Ns are given), 1 round
#   REPS=k       rounds (default 3), each running every tool once in turn; the median
#                time (the peak memory) over the rounds is reported
#   ORCH=path    use this orch binary instead of `cargo build --release`
#   KEEP=1       keep the scratch directory for inspection
#
# Scenarios per tool, each in its own copy of the generated tree:
#   full build   from a fresh copy every run (peak RSS via /usr/bin/time -v)
#   no-op        rebuild with nothing changed
#   leaf change  content edit of an input of a last-layer task (rebuilds 1)
#   root change  content edit of the layer-0 input with the largest cone
# After every scenario the outputs are recomputed independently
# (gen_graph.py --verify); a stale result is flagged with "!" in the table.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
GEN="$HERE/gen_graph.py"
JOBS=2
TOOLS=(make ninja orch)

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- arguments ---------------------------------------------------------------
quick=0
sizes=()
for a in "$@"; do
    case $a in
        --quick) quick=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *[!0-9]* | '') die "bad argument: $a" ;;
        *) sizes+=("$a") ;;
    esac
done
if ((quick)); then
    REPS=${REPS:-1}
    ((${#sizes[@]})) || sizes=(1000)
fi
REPS=${REPS:-3}
((${#sizes[@]})) || sizes=(1000 10000)

# --- tools -------------------------------------------------------------------
# Only touch apt when something is actually missing.
missing=()
command -v make >/dev/null || missing+=(make)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v hyperfine >/dev/null || missing+=(hyperfine)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    { apt-get update && apt-get install -y "${missing[@]}"; } >&2 ||
        log "warning: apt-get failed; continuing with what is available"
fi
command -v make >/dev/null || die "make not found"
command -v ninja >/dev/null || die "ninja not found"
HAVE_HYPERFINE=0
if command -v hyperfine >/dev/null; then HAVE_HYPERFINE=1; else log "hyperfine missing: using a bash timing loop"; fi
TIME_BIN=""
if [[ -x /usr/bin/time ]]; then TIME_BIN=/usr/bin/time; else log "/usr/bin/time missing: no RSS numbers"; fi

# orch is optional: the src/ tree may not compile yet, which must not cost us
# the make/ninja numbers.
ORCH_BIN=""
if [[ -n ${ORCH:-} ]]; then
    ORCH_BIN=$ORCH
else
    log "building orch (cargo build --release)..."
    if build_log=$(cd "$REPO" && cargo build --release 2>&1); then
        ORCH_BIN="$REPO/target/release/orch"
    else
        log "$(tail -n 5 <<<"$build_log")"
        log "cargo build --release failed: skipping the orch column"
    fi
fi
if [[ -n $ORCH_BIN ]] && ! "$ORCH_BIN" --help >/dev/null 2>&1; then
    log "orch at '$ORCH_BIN' is not runnable: skipping the orch column"
    ORCH_BIN=""
fi
[[ -n $ORCH_BIN ]] && ORCH_BIN=$(realpath "$ORCH_BIN")

tool_cmd() {
    case $1 in
        make) echo "make -s -j$JOBS" ;;
        ninja) echo "ninja -j$JOBS --quiet" ;;
        orch) echo "'$ORCH_BIN' build -j$JOBS --quiet" ;;
    esac
}

# --- scratch space and mtime granularity -----------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/orch-bench.XXXXXX")
if [[ ${KEEP:-0} == 1 ]]; then log "scratch dir: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi

# make/ninja only see an edit if the input ends up strictly newer than the
# outputs. With ns timestamps a short pause covers the kernel's coarse clock
# tick; on a 1 s-granularity filesystem we must wait a full second.
touch "$WORK/.probe"
if [[ $(stat -c %y "$WORK/.probe") == *.000000000* ]]; then MTIME_GAP=1.1; else MTIME_GAP=0.05; fi
export MTIME_GAP

# Real content change (content-hashing tools must see it) plus a fresh mtime.
# Exported so hyperfine's --prepare shell can call it.
bump() {
    sleep "$MTIME_GAP"
    printf 'edit %s %s\n' "$(date +%s%N)" "$RANDOM" >>"$1"
}
export -f bump

# measure DIR RUNS WARMUP PREPARE CMD -> prints the median wall time (s).
# Runs inside DIR so that PREPARE can recreate DIR/run from scratch.
measure() {
    local dir=$1 runs=$2 warm=$3 prep=$4 cmd=$5
    if ((HAVE_HYPERFINE)); then
        local args=(-S bash --style none --runs "$runs" --warmup "$warm" --export-json "$dir/h.json")
        [[ -n $prep ]] && args+=(--prepare "$prep")
        (cd "$dir" && hyperfine "${args[@]}" "$cmd") >>"$dir/log" 2>&1 || return 1
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$dir/h.json"
    else
        local i t0 t1 times=()
        for ((i = 0; i < warm; i++)); do (cd "$dir" && bash -c "$cmd") >>"$dir/log" 2>&1 || return 1; done
        for ((i = 0; i < runs; i++)); do
            if [[ -n $prep ]]; then (cd "$dir" && bash -c "$prep") >>"$dir/log" 2>&1 || return 1; fi
            t0=$EPOCHREALTIME
            (cd "$dir" && bash -c "$cmd") >>"$dir/log" 2>&1 || return 1
            t1=$EPOCHREALTIME
            times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')")
        done
        printf '%s\n' "${times[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
    fi
}

fmt_time() { awk -v t="$1" 'BEGIN { printf (t < 0.1 ? "%.4f" : "%.3f"), t }'; }

declare -A RES   # "N|scenario|tool" -> table cell
declare -A RAW   # same key -> number, for the ratio column
declare -A VALS  # same key -> one value per round, space-separated
declare -A STALE # same key -> 1 if any round left stale outputs
declare -A KIND  # same key -> time | mb

record() { # KEY VALUE(s or FAIL) STALE(0/1) FORMAT(time|mb): one round's value
    local key=$1 v=$2 stale=$3 kind=$4
    if [[ $v == FAIL ]]; then RES[$key]=FAIL; return; fi
    VALS[$key]+="$v "
    STALE[$key]=$(( ${STALE[$key]:-0} | stale ))
    KIND[$key]=$kind
}

# After all rounds: the median time (the peak for memory) of each key, formatted.
summarize() {
    local key v cell
    for key in "${!VALS[@]}"; do
        [[ ${RES[$key]:-} == FAIL ]] && continue
        if [[ ${KIND[$key]} == mb ]]; then
            v=$(tr ' ' '\n' <<<"${VALS[$key]}" | awk 'NF { if ($1 > m) m = $1 } END { print m + 0 }')
            cell=$(awk -v k="$v" 'BEGIN { printf "%.1f MB", k / 1024 }')
        else
            v=$(tr ' ' '\n' <<<"${VALS[$key]}" | awk 'NF' | sort -g |
                awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
            cell=$(fmt_time "$v")
        fi
        RAW[$key]=$v
        ((STALE[$key])) && cell="$cell !"
        RES[$key]=$cell
    done
}

# --- benchmark ---------------------------------------------------------------
SCENARIOS=(full noop leaf root rss)
declare -A LABEL=([full]="full build" [noop]="no-op" [leaf]="leaf change" [root]="root change" [rss]="full build peak RSS")
declare -A ROOT_LABEL # N -> root label, which names the size of the rebuilt cone

# Independent up-to-date check of $d/run: prints 1 if any output is stale.
check() { python3 "$GEN" --verify "$d/run" 2>>"$d/log" && echo 0 || echo 1; }

# Rounds interleave the tools (make, ninja, orch, make, ...) so that a slow spell of a shared
# machine falls on all of them alike instead of on whichever tool ran then.
for n in "${sizes[@]}"; do
    gen="$WORK/$n/gen"
    python3 "$GEN" "$gen" "$n"
    # shellcheck disable=SC1091
    source "$gen/graph.env"
    ROOT_LABEL[$n]="root change ($ROOT_CONE tasks)"

    for ((round = 1; round <= REPS; round++)); do
        for tool in "${TOOLS[@]}"; do
            if [[ $tool == orch && -z $ORCH_BIN ]]; then
                for s in "${SCENARIOS[@]}"; do RES["$n|$s|$tool"]="n/a"; done
                continue
            fi
            [[ ${RES["$n|full|$tool"]:-} == FAIL ]] && continue
            d="$WORK/$n/$tool"
            mkdir -p "$d"
            cmd=$(tool_cmd "$tool")

            log "N=$n round $round/$REPS $tool: full build, no-op, leaf change, root change"
            rss_cmd="cd run && $cmd"
            [[ -n $TIME_BIN ]] && rss_cmd="cd run && $TIME_BIN -v -o ../rss.txt $cmd"
            rm -f "$d/rss.txt"
            if t=$(measure "$d" 1 0 "rm -rf run && cp -a ../gen run" "$rss_cmd"); then
                stale=$(check)
                record "$n|full|$tool" "$t" "$stale" time
                if [[ -n $TIME_BIN ]]; then
                    kb=$(awk -F: '/Maximum resident set size/ { v = $2 + 0; if (v > m) m = v } END { print m + 0 }' "$d/rss.txt")
                    record "$n|rss|$tool" "$kb" "$stale" mb
                else
                    RES["$n|rss|$tool"]="n/a"
                fi
            else
                log "  $tool full build failed; see log below"
                tail -n 5 "$d/log" >&2 || true
                for s in "${SCENARIOS[@]}"; do RES["$n|$s|$tool"]=FAIL; done
                continue
            fi

            # The tree is now fully built by this round's full build.
            for s in noop leaf root; do
                case $s in
                    noop) prep="" warm=1 ;;
                    leaf) prep="bump run/$LEAF_INPUT" warm=0 ;;
                    root) prep="bump run/$ROOT_INPUT" warm=0 ;;
                esac
                if t=$(measure "$d" 1 "$warm" "$prep" "cd run && $cmd"); then
                    record "$n|$s|$tool" "$t" "$(check)" time
                else
                    record "$n|$s|$tool" FAIL 0 time
                fi
            done
        done
    done
done
summarize

# --- report ------------------------------------------------------------------
# First line of `CMD --version`; sed (not head) so the tool never sees SIGPIPE.
ver() { "$@" --version 2>/dev/null | sed -n 1p || true; }
{
    echo "# orch vs make vs ninja"
    echo
    echo "Generated by \`benches/compare.sh${*:+ $*}\` on $(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -sr)."
    echo "Median wall time in seconds over $REPS round(s), the tools interleaved in each; all tools run with -j$JOBS."
    orch_ver="orch not built"
    [[ -n $ORCH_BIN ]] && orch_ver=$(ver "$ORCH_BIN") && orch_ver=${orch_ver:-orch (no --version)}
    echo "Tools: $(ver make), ninja $(ver ninja), $orch_ver."
    echo "Graph: gen_graph.py defaults (sqrt(N) layers capped at 50, fan-in 3, seed 1); every task is \`cat inputs | cksum\`."
    echo "\"!\" = outputs were stale after that scenario (independent check by gen_graph.py --verify)."
    echo
    echo "| N | scenario | make | ninja | orch | orch/ninja |"
    echo "|---:|---|---:|---:|---:|---:|"
    for n in "${sizes[@]}"; do
        for s in "${SCENARIOS[@]}"; do
            label=${LABEL[$s]}
            [[ $s == root ]] && label=${ROOT_LABEL[$n]}
            o=${RAW["$n|$s|orch"]:-} nj=${RAW["$n|$s|ninja"]:-}
            ratio="-"
            if [[ -n $o && -n $nj && ${RES["$n|$s|orch"]} != *'!'* ]]; then
                ratio=$(awk -v a="$o" -v b="$nj" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
            fi
            echo "| $n | $label | ${RES["$n|$s|make"]:--} | ${RES["$n|$s|ninja"]:--} | ${RES["$n|$s|orch"]:--} | $ratio |"
        done
    done
} | tee "$HERE/results.md"
