#!/usr/bin/env bash
# Fan-out at scale: N files, one `foreach` task over them (`cksum` of each into out/) and one
# reduce task over all instances, against ninja on the same graph (a generated build.ninja
# with N edges, and the reduce edge over phony groups of them). Measures, at -j2: the whole
# build, the no-op (orch's fast path), orch's full up-to-date check (the no-op without the
# fast path's record), the plan expansion (ORCH_PROFILE), adding one file (one instance and
# the reduce run), and peak memory. Usage: benches/fanout.sh [N ...] (default 10000); needs
# ninja and hyperfine (apt: ninja-build, hyperfine). The whole build runs once a side, its
# time and peak memory from that one run; SKIP_WHOLE=1 builds each side once unmeasured.
set -euo pipefail

NS=("${@:-10000}")
JOBS=2
HERE=$(cd "$(dirname "$0")" && pwd)
ORCH=${ORCH:-$HERE/../target/release/orch}
WORK=${WORK:-$(mktemp -d)}
command -v ninja >/dev/null || { echo "ninja not found" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine not found" >&2; exit 1; }
[[ -x $ORCH ]] || { echo "build orch first: cargo build --release" >&2; exit 1; }

# median wall time (s) of CMD in DIR, hyperfine with PREPARE before each run.
measure() {
    local dir=$1 runs=$2 prep=$3 cmd=$4
    local args=(-S bash --style none --runs "$runs" --export-json "$dir/h.json")
    [[ -n $prep ]] && args+=(--prepare "$prep")
    (cd "$dir" && hyperfine "${args[@]}" "$cmd") >>"$dir/log" 2>&1
    python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["results"][0]["median"])' "$dir/h.json"
}

# "wall-seconds peak-MB" of one run of CMD in DIR (PREP run first, untimed).
timed() {
    local dir=$1 prep=$2 cmd=$3
    (cd "$dir" && bash -c "$prep" && /usr/bin/time -f '%e %M' bash -c "$cmd" 2>&1 >/dev/null | tail -1) |
        awk '{ printf "%.1f %.1f\n", $1, $2 / 1024 }'
}

# peak RSS (MB) of CMD in DIR.
peak() {
    local dir=$1 cmd=$2
    (cd "$dir" && /usr/bin/time -f '%M' bash -c "$cmd" 2>&1 >/dev/null | tail -1) |
        awk '{ printf "%.1f", $1 / 1024 }'
}

generate() {
    local dir=$1 n=$2
    mkdir -p "$dir/src" "$dir/out"
    python3 - "$dir" "$n" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{d}/src/f_{i}.txt", "w") as f:
        f.write(f"file {i}\n")
with open(f"{d}/build.ninja", "w") as f:
    f.write("rule ck\n  command = cksum < $in > $out\n")
    # Through xargs: at 100,000 files `cat out/*.ck` passes ARG_MAX.
    f.write("rule all\n  command = find out -name '*.ck' | sort | xargs cat | cksum > $out\n")
    for i in range(n):
        f.write(f"build out/f_{i}.ck: ck src/f_{i}.txt\n")
    # The reduce edge takes groups of 1,000, not the N outputs themselves: ninja 1.11 checks
    # whether an edge is ready by scanning its inputs up to the first unbuilt one each time one
    # of them is built, quadratic in one edge's inputs (at N = 100,000 `ninja -n` alone took
    # 306 s with one 100,000-input edge, 2.3 s without it).
    groups = []
    for g in range(0, n, 1000):
        groups.append(f"grp_{g}")
        ins = " ".join(f"out/f_{i}.ck" for i in range(g, min(g + 1000, n)))
        f.write(f"build grp_{g}: phony {ins}\n")
    f.write("build all.txt: all " + " ".join(groups) + "\n")
with open(f"{d}/Orchfile.toml", "w") as f:
    f.write('''[tasks.ck]
foreach = "src/*.txt"
run = "cksum < {{ item }} > out/{{ item.stem }}.ck"
inputs = ["{{ item }}"]
outputs = ["out/{{ item.stem }}.ck"]

[tasks.all]
deps = ["ck"]
run = "find out -name '*.ck' | sort | xargs cat | cksum > all.txt"
outputs = ["all.txt"]
''')
EOF
}

printf '| N | scenario | ninja | orch | orch/ninja |\n|---:|---|---:|---:|---:|\n'
for n in "${NS[@]}"; do
    base="$WORK/n$n"
    rm -rf "$base"
    generate "$base/ninja" "$n"
    cp -r "$base/ninja" "$base/orch"
    nj="$base/ninja" or="$base/orch"
    O="$ORCH build -q -j$JOBS"
    N="ninja -j$JOBS --quiet"
    row() { printf '| %s | %s | %s | %s | %s |\n' "$n" "$1" "$2" "$3" \
        "$(python3 -c "print('%.2fx' % ($3 / $2))" 2>/dev/null || echo -)"; }
    clean_n="find out -name '*.ck' -delete; rm -rf all.txt .ninja_log .ninja_deps"
    clean_o="find out -name '*.ck' -delete; rm -rf all.txt .orchestrator"
    if [[ -z ${SKIP_WHOLE:-} ]]; then
        # One run each (at 100,000 a whole build takes many minutes), timed and its peak
        # memory taken in the same run.
        read -r wn mn < <(timed "$nj" "$clean_n" "$N")
        read -r wo mo < <(timed "$or" "$clean_o" "$O")
        row "whole build" "$wn" "$wo"
    else # only build both once
        (cd "$nj" && $N >/dev/null) && (cd "$or" && $O >/dev/null)
    fi
    sleep 0.3
    (cd "$or" && $O >/dev/null) # the full check leaves the fast path's record
    row "no-op" "$(measure "$nj" 5 "" "$N")" "$(measure "$or" 5 "" "$O")"
    row "full up-to-date check" "$(measure "$nj" 5 "" "$N")" \
        "$(measure "$or" 5 "rm -f .orchestrator/up_to_date.bin" "$O")"
    # ninja cannot see a new file without a regenerated build.ninja: its side changes one.
    add_n="sleep 0.05; echo \$RANDOM >> src/f_0.txt"
    # New content each time: a file that came and went before would be restored from the
    # output cache, and so would the reduce over the same item set (ninja runs its edge).
    add_o="rm -f src/new.txt; $O; sleep 0.05; echo new \$RANDOM\$RANDOM > src/new.txt"
    row "one file added (ninja: one changed)" "$(measure "$nj" 3 "$add_n" "$N")" "$(measure "$or" 3 "$add_o" "$O")"
    (cd "$or" && rm -f src/new.txt && $O >/dev/null)
    row "no-op peak RSS (MB)" "$(peak "$nj" "$N")" \
        "$(peak "$or" "rm -f .orchestrator/up_to_date.bin; $O")"
    [[ -n ${SKIP_WHOLE:-} ]] || row "whole build peak RSS (MB)" "$mn" "$mo"
    ran=$(cd "$or" && rm -f src/new.txt && $O >/dev/null && echo x > src/new.txt &&
        $ORCH build -j$JOBS 2>&1 | grep -c '  ok ' || true)
    echo "| $n | tasks run after adding one file | 2 | $ran | |"
    prof=$(cd "$or" && rm -f .orchestrator/up_to_date.bin && ORCH_PROFILE=1 $O 2>&1 | grep 'plan loaded' || true)
    echo "| $n | orch plan load + expansion (profile) | | ${prof#*]} | |"
done
