#!/usr/bin/env bash
# How fast orch refuses a bad plan: the whole process, from start to the diagnostic and exit 2,
# for plans of N tasks (default 1000 and 10000) with one mistake in the last task. The tests
# (tests/plan_checks.rs, tests/bad_inputs.rs) check the diagnostics; this measures their time,
# which a loaded machine would make a flaky assertion.
#
#   bash benches/refusals.sh [N...]      ORCH= the binary (default target/release/orch)
#
# Each case: a fresh directory (no plan cache), hyperfine --warmup 1 --runs 10; prints the
# median and the maximum in ms, and checks every run exited 2.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
ORCH=${ORCH:-$repo/target/release/orch}
[[ -x $ORCH ]] || { echo "build orch first: cargo build --release (or set ORCH)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine not found (apt-get install hyperfine)" >&2; exit 1; }
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(1000 10000)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# CASE N: writes an Orchfile of N shell tasks (a chain of 10-task layers) whose last task has
# the mistake CASE.
plan() {
    python3 - "$1" "$2" <<'PY'
import sys
case, n = sys.argv[1], int(sys.argv[2])
out = ['[settings]\njobs = 2\n']
for i in range(n - 1):
    deps = f'deps = ["t{i - 10:05}"]\n' if i >= 10 else ''
    out.append(f'[tasks.t{i:05}]\nrun = "echo {i}"\n{deps}')
last = {
    'placeholder': 'prompt = "Use {{ dep.t00000.result }}."\ndeps = ["t00000"]\n',
    'unknown-dep': 'run = "true"\ndeps = ["t0000x"]\n',
    'bad-glob': 'run = "true"\ninputs = ["src/[a-"]\n',
    'bad-value': 'run = "true"\nretries = -1\n',
}[case]
out.append(f'[tasks.last]\n{last}')
print('\n'.join(out))
PY
}

# What each refusal must say (a refusal for another reason would time the wrong thing).
declare -A expect=(
    [placeholder]='unknown placeholder'
    [unknown-dep]='t0000x'
    [bad-glob]='src/\[a-'
    [bad-value]='retries'
)
printf '%-12s %7s %10s %10s\n' case N median_ms max_ms
for n in "${sizes[@]}"; do
    for c in placeholder unknown-dep bad-glob bad-value; do
        d=$work/$c-$n
        mkdir -p "$d"
        plan "$c" "$n" >"$d/Orchfile.toml"
        code=0
        "$ORCH" -C "$d" build >/dev/null 2>"$d/err" || code=$?
        [[ $code == 2 ]] || { echo "$c at $n: exit $code, not 2" >&2; cat "$d/err" >&2; exit 1; }
        grep -q -- "${expect[$c]}" "$d/err" || { echo "$c at $n: not the expected diagnostic" >&2; cat "$d/err" >&2; exit 1; }
        hyperfine -N --warmup 1 --runs 10 -i --export-json "$d/h.json" \
            "$ORCH -C $d build" >/dev/null 2>&1
        python3 - "$c" "$n" "$d/h.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[3]))['results'][0]
assert all(c == 2 for c in r['exit_codes']), r['exit_codes']
print('%-12s %7s %10.1f %10.1f' % (sys.argv[1], sys.argv[2], r['median'] * 1000, r['max'] * 1000))
PY
    done
done
[[ ! -e $work/placeholder-1000/.orchestrator ]] || { echo "a refused plan left state" >&2; exit 1; }
