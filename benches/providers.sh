#!/usr/bin/env bash
# Adaptive per-provider concurrency against a provider that pushes back: a loopback mock API
# (support/provider/mock_provider.py, 127.0.0.1 only) that serves at most K calls at once
# and answers 429 beyond them (or, in its second mode, N calls a minute, 429 with a
# Retry-After beyond), and 200 agent tasks whose agent (support/provider/fake_agent.py, read
# as claude's stream-json) calls it once each. Each build runs with -j 16; reported: the
# makespan (first task start to last task end) over the provider's lower bound (total work
# / K, or the calls / N a minute), and the share of calls answered 429.
#
#   orch       this orch (the limiter); cold: a fresh state directory; warm: the same build
#              forced again (-B), starting where the first left the provider's limit
#   baseline   $ORCH_BASELINE, an orch without the limiter (main before it), if given:
#              today's fixed -j 16, each refused call retried after the backoff
#
# With BREAKDOWN=1, each build's calls are logged and support/provider/breakdown.py says where
# the provider's K places went (process start, calls, refused calls, idle) and its limit cuts.
#
# Usage: benches/providers.sh  (env: ORCH, ORCH_BASELINE, TASKS=200, K=4, WORK=2,
# PER_MINUTE=120, MODES="concurrent rate", BREAKDOWN)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ORCH=${ORCH:-$HERE/../target/release/orch}
TASKS=${TASKS:-200}
K=${K:-4}
WORK=${WORK:-2}
PER_MINUTE=${PER_MINUTE:-120}
MODES=${MODES:-concurrent rate}
WORK_DIR=${WORK_DIR:-$(mktemp -d)}
mkdir -p "$WORK_DIR"
[[ -x $ORCH ]] || { echo "build orch first: cargo build --release" >&2; exit 1; }

MOCK_PID=
stop_mock() { [[ -n $MOCK_PID ]] && kill "$MOCK_PID" 2>/dev/null && { wait "$MOCK_PID" 2>/dev/null || true; }; MOCK_PID=; }
trap stop_mock EXIT

start_mock() { # ARGS...
    rm -f "$WORK_DIR/port"
    python3 "$HERE/support/provider/mock_provider.py" --port-file "$WORK_DIR/port" \
        --log "$WORK_DIR/calls.log" "$@" &
    MOCK_PID=$!
    for _ in $(seq 100); do [[ -s $WORK_DIR/port ]] && break; sleep 0.1; done
    [[ -s $WORK_DIR/port ]] || { echo "mock provider did not start" >&2; exit 1; }
    MOCK_URL="http://127.0.0.1:$(cat "$WORK_DIR/port")"
}

project() { # DIR [baseline]: an orch without the limiter knows no `provider`
    local dir=$1
    rm -rf "$dir"; mkdir -p "$dir"
    {
        printf '[settings]\njobs = 16\nretry_backoff = "1s"\nretry_backoff_max = "30s"\n\n'
        printf '[agents.mock]\npreset = "claude"\ncommand = ["python3", "%s"]\n' "$HERE/support/provider/fake_agent.py"
        [[ ${2:-} == baseline ]] || printf 'provider = "mock"\n'
        printf 'retries = 100\nenv = { MOCK_URL = "%s" }\n\n' "$MOCK_URL"
        for i in $(seq -w 1 "$TASKS"); do
            printf '[tasks.t%s]\nagent = "mock"\nprompt = "Task %s."\n\n' "$i" "$i"
        done
    } >"$dir/Orchfile.toml"
}

# One build: prints "makespan_s calls refused".
build() { # BIN DIR ARGS...
    local bin=$1 dir=$2; shift 2
    curl -s -X POST "$MOCK_URL/reset" >/dev/null
    rm -f "$WORK_DIR/calls.log"
    (cd "$dir" && "$bin" build --json "$@" >"$dir/events.jsonl" 2>"$dir/stderr") || {
        echo "build failed in $dir:" >&2; tail -5 "$dir/stderr" >&2; }
    if [[ -n ${BREAKDOWN:-} ]]; then
        python3 "$HERE/support/provider/breakdown.py" "$dir/events.jsonl" "$WORK_DIR/calls.log" \
            "$K" >&2
    fi
    python3 - "$dir/events.jsonl" "$MOCK_URL" <<'PY'
import json, sys, urllib.request
starts, ends = [], []
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["event"] == "task_started" and e["attempt"] == 1:
        starts.append(e["ts_ms"])
    if e["event"] in ("task_finished", "task_failed"):
        ends.append(e["ts_ms"])
s = json.load(urllib.request.urlopen(sys.argv[2] + "/stats"))
print("%.2f %d %d" % ((max(ends) - min(starts)) / 1000, s["calls"], s["refused"]))
PY
}

row() { # NAME BOUND MAKESPAN CALLS REFUSED
    awk -v n="$1" -v b="$2" -v m="$3" -v c="$4" -v r="$5" \
        'BEGIN { printf "| %s | %.1f | %.1f | %.3f | %d | %d | %.1f%% |\n", n, b, m, m / b, c, r, 100 * r / c }'
}

echo "| run | lower bound (s) | makespan (s) | ÷ bound | calls | 429 | share 429 |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for mode in $MODES; do
    if [[ $mode == concurrent ]]; then
        start_mock --concurrent "$K" --work "$WORK"
        bound=$(awk -v t="$TASKS" -v w="$WORK" -v k="$K" 'BEGIN { print t * w / k }')
        label="K=$K at once, ${WORK}s a call"
    else
        start_mock --per-minute "$PER_MINUTE" --work "$WORK"
        # N calls in any minute: call i+N starts at least 60 s after call i, and at most
        # 16 run at once; each call as early as both allow (for equal calls the earliest
        # schedule), the last one's end. (The calls / N a minute alone would be
        # t / N * 60 s, which a burst at the start of each window beats.)
        bound=$(python3 -c '
import heapq, sys
t, n, w = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
free, starts = [0.0] * 16, []
for i in range(t):
    s = max(heapq.heappop(free), starts[i - n] + 60 if i >= n else 0.0)
    starts.append(s); heapq.heappush(free, s + w)
print(max(free))' "$TASKS" "$PER_MINUTE" "$WORK")
        label="$PER_MINUTE calls/min, ${WORK}s a call"
    fi
    d="$WORK_DIR/$mode-orch"
    project "$d"
    read -r m c r < <(build "$ORCH" "$d")
    row "orch, $label, cold" "$bound" "$m" "$c" "$r"
    read -r m c r < <(build "$ORCH" "$d" -B)
    row "orch, $label, warm (-B)" "$bound" "$m" "$c" "$r"
    if [[ -n ${ORCH_BASELINE:-} ]]; then
        d="$WORK_DIR/$mode-baseline"
        project "$d" baseline
        read -r m c r < <(build "$ORCH_BASELINE" "$d")
        row "fixed -j 16 (no limiter), $label" "$bound" "$m" "$c" "$r"
    fi
    stop_mock
done
