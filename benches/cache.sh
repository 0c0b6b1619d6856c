#!/usr/bin/env bash
# The output cache on a 1,000-task plan (a fan-out of an agent task over 1,000 files, each
# also reading one shared context file), with the fake claude as the agent ($0.0021 a call,
# as tests/fixtures/fake-claude reports). Measures, at -j2:
#   1. revert-then-build: the context edited (1,000 agent calls), then reverted: the build
#      after the revert, its agent calls (must be 0) and the cost it did not spend;
#   2. fresh clone with a remote cache: one clone builds against Debian's nginx (WebDAV PUT,
#      127.0.0.1, the tests' config) and uploads; a second clone, with its own state dir,
#      builds from the remote: its wall time, agent calls (must be 0) and the cost saved,
#      against one `curl` fetching the same records and blobs (one connection, in a row).
# Usage: benches/cache.sh [N] (default 1000). Needs nginx (tests/support/nginx/setup.sh),
# curl and python3; ORCH= the binary to measure (default target/release/orch).
set -euo pipefail

N=${1:-1000}
JOBS=2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ORCH=${ORCH:-$ROOT/target/release/orch}
FAKE=$ROOT/tests/fixtures/fake-claude
WORK=${WORK:-$(mktemp -d)}
[[ -x $ORCH ]] || { echo "build orch first: cargo build --release (or set ORCH)" >&2; exit 1; }
NGINX=$(bash "$ROOT/tests/support/nginx/setup.sh")
command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }

now() { date +%s.%N; }
secs() { python3 -c "print('%.2f' % ($2 - $1))"; }
calls() { [[ -f $1/.orchestrator/calls.log ]] && wc -l <"$1/.orchestrator/calls.log" || echo 0; }
# The last build_finished event's field.
finished() { python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
v = [e for e in ev if e["event"] == "build_finished"][-1][sys.argv[2]]
print("%.4f" % v if isinstance(v, float) else v)' "$1" "$2"; }

# A project of N agent tasks at $1, with the remote at $2 (none if empty).
clone() {
    local dir=$1 remote=$2
    mkdir -p "$dir/src"
    python3 - "$dir" "$N" "$FAKE" "$remote" <<'PY'
import sys
d, n, fake, remote = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
for i in range(n):
    open(f"{d}/src/f_{i:04}.txt", "w").write(f"file {i}\n")
open(f"{d}/context.md", "w").write("house style: short\n")
settings = f'[settings]\nremote_cache = "{remote}"\n' if remote else ""
open(f"{d}/Orchfile.toml", "w").write(settings + f'''
[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "ok" }}

[tasks.review]
foreach = "src/*.txt"
prompt = "Review {{{{ item }}}} in the house style."
inputs = ["{{{{ item }}}}", "context.md"]
''')
PY
}

build() { # dir, json log
    (cd "$1" && "$ORCH" build -j "$JOBS" --json >"$2" 2>"$2.err")
}

echo "orch: $("$ORCH" --version), $N tasks, -j$JOBS, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"

# 1. Revert then build.
A=$WORK/revert
clone "$A" ""
build "$A" "$WORK/r1.json"
echo "house style: long" >"$A/context.md"
t0=$(now); build "$A" "$WORK/r2.json"; t1=$(now)
edited=$(secs "$t0" "$t1"); before=$(calls "$A")
echo "house style: short" >"$A/context.md"
t0=$(now); build "$A" "$WORK/r3.json"; t1=$(now)
echo "revert-then-build: $(secs "$t0" "$t1") s, agent calls $(( $(calls "$A") - before )), restored $(finished "$WORK/r3.json" restored), saved \$$(finished "$WORK/r3.json" saved_cost_usd) (the edit's build: $edited s, $N calls)"

# 2. A fresh clone with a remote cache.
S=$WORK/nginx
mkdir -p "$S/root" "$S/state"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s|@STATE@|$S/state|g" -e "s|@ROOT@|$S/root|g" -e "s|@PORT@|$PORT|g" \
    -e "s|@AUTH@||" -e "s|@BEHAVIOUR@||" "$ROOT/tests/support/nginx/remote-cache.conf.in" >"$S/state/nginx.conf"
"$NGINX" -p "$S/state" -e "$S/state/error.log" -c "$S/state/nginx.conf" &
NGINX_PID=$!
trap 'kill $NGINX_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.05; done
URL=http://127.0.0.1:$PORT/orch
W=$WORK/writer; R=$WORK/reader
clone "$W" "$URL"
t0=$(now); build "$W" "$WORK/w.json"; t1=$(now)
echo "writer clone (runs and uploads): $(secs "$t0" "$t1") s, $(calls "$W") calls"
clone "$R" "$URL"
t0=$(now); build "$R" "$WORK/c.json"; t1=$(now)
echo "fresh clone from the remote: $(secs "$t0" "$t1") s, agent calls $(calls "$R"), restored $(finished "$WORK/c.json" restored), saved \$$(finished "$WORK/c.json" saved_cost_usd)"
# The same records and blobs, fetched by one curl over one connection.
(cd "$S/root" && find orch -type f | sed "s|^|url = \"http://127.0.0.1:$PORT/|; s|\$|\"\noutput = \"/dev/null\"|") >"$WORK/curl.cfg"
files=$(grep -c '^url' "$WORK/curl.cfg"); bytes=$(du -sb "$S/root/orch" | cut -f1)
t0=$(now); curl -s -K "$WORK/curl.cfg"; t1=$(now)
echo "curl of the same $files files ($bytes bytes): $(secs "$t0" "$t1") s"
