# Shared by the real-part setup scripts (sourced, not run): installs Debian packages once per
# machine, quickly when they are already there, and never leaves a packaged daemon running.
#
# apt_install_once NAME CHECK PACKAGE...
#   CHECK is a shell command that succeeds when the part is usable; it is tried first without
#   any lock (the fast path, a few ms), then again under an flock on
#   ${ORCH_TEST_CACHE:-$HOME/.cache/orch-test}/NAME-setup.lock so parallel test processes
#   install once. Packages go in with `apt-get install -y -o DPkg::Lock::Timeout=600`, after an
#   `apt-get update` only if the first try fails (a fresh machine has no package lists).
#   While apt runs, a policy-rc.d that answers 101 keeps maintainer scripts from starting
#   services (Debian's nginx would otherwise take port 80); one already in place is kept.

apt_install_once() {
    local name=$1 check=$2
    shift 2
    if eval "$check" >/dev/null 2>&1; then
        return 0
    fi
    local cache=${ORCH_TEST_CACHE:-$HOME/.cache/orch-test}
    mkdir -p "$cache"
    exec 9>"$cache/$name-setup.lock"
    # Bounded: a stuck installer elsewhere fails this run instead of hanging it.
    flock -w 1200 9 || { echo "$name setup: timed out waiting for $cache/$name-setup.lock" >&2; return 1; }
    if eval "$check" >/dev/null 2>&1; then
        return 0
    fi
    local sudo=
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || { echo "$name setup: installing $* needs root (or passwordless sudo)" >&2; return 1; }
        sudo="sudo -n"
    fi
    local policy=/usr/sbin/policy-rc.d ours=
    if [ ! -e "$policy" ]; then
        ours="# orch test setup: no service starts while packages install"
        printf '#!/bin/sh\n%s\nexit 101\n' "$ours" | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
    fi
    local apt="$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q"
    local status=0
    $apt install -y --no-install-recommends "$@" >&2 \
        || { $apt update >&2 && $apt install -y --no-install-recommends "$@" >&2; } \
        || status=$?
    if [ -n "$ours" ] && grep -qF "$ours" "$policy" 2>/dev/null; then
        $sudo rm -f "$policy"
    fi
    [ "$status" = 0 ] || { echo "$name setup: apt-get install $* failed ($status)" >&2; return "$status"; }
    eval "$check" >/dev/null 2>&1 || { echo "$name setup: installed $*, but \`$check\` still fails" >&2; return 1; }
}
