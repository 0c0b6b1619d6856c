#!/usr/bin/env bash
# Installs the real agent CLIs the conformance tests run, at pinned versions, from the npm
# registry into a cache outside the clone:
#   ${ORCH_TEST_CACHE:-$HOME/.cache/orch-test}/agents/<pkg>@<version>   (npm install --prefix)
# Idempotent and quick when done (a `.installed` stamp per package, written only after the
# binary answered --version), guarded by flock so parallel test processes install once.
# Prints one line per CLI, `<name> <absolute path of the binary>`, on stdout; progress goes to
# stderr. Exits non-zero with the reason when something cannot be installed.
set -euo pipefail

# The versions the conformance suite was written against; bump together with the fixtures.
CLAUDE_PKG="@anthropic-ai/claude-code@2.1.332"
CODEX_PKG="@openai/codex@0.171.0"
GEMINI_PKG="@google/gemini-cli@0.61.0"

cache="${ORCH_TEST_CACHE:-$HOME/.cache/orch-test}/agents"
mkdir -p "$cache"

command -v npm >/dev/null || { echo "install.sh: npm not found on PATH (apt-get install npm)" >&2; exit 1; }
command -v flock >/dev/null || { echo "install.sh: flock not found (util-linux)" >&2; exit 1; }

exec 9>"$cache/.lock"
# Bounded: a stuck install elsewhere should fail this one with a reason, not hang the suite.
flock -w 900 9 || { echo "install.sh: timed out waiting for $cache/.lock" >&2; exit 1; }

# <name> <pkg@version> <bin name>
install_one() {
    local name="$1" spec="$2" bin="$3"
    local dir="$cache/$spec"
    local exe="$dir/node_modules/.bin/$bin"
    if [[ ! -f "$dir/.installed" ]]; then
        echo "install.sh: installing $spec into $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        # Optional dependencies carry the native binaries (claude's and codex's per-platform
        # packages): never omit them. No global install, no scripts from the user's config.
        timeout 900 npm install --prefix "$dir" --no-audit --no-fund --no-save \
            --include=optional --loglevel=error "$spec" >&2 \
            || { echo "install.sh: npm install $spec failed" >&2; exit 1; }
        [[ -x "$exe" ]] || { echo "install.sh: $spec installed no $bin binary at $exe" >&2; exit 1; }
        local version
        mkdir -p "$cache/.version-home"
        version="$(HOME="$cache/.version-home" CODEX_HOME="$cache/.version-home/.codex" \
            timeout 60 "$exe" --version 2>/dev/null)" \
            || { echo "install.sh: $exe --version failed (missing platform package?)" >&2; exit 1; }
        echo "install.sh: $name $version" >&2
        touch "$dir/.installed"
    fi
    echo "$name $exe"
}

install_one claude "$CLAUDE_PKG" claude
install_one codex "$CODEX_PKG" codex
install_one gemini "$GEMINI_PKG" gemini
