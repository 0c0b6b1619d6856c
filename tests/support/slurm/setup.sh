#!/usr/bin/env bash
# Installs what the real-Slurm tests need from Debian when it is missing: slurm-wlm (slurmctld,
# slurmd, the client commands) and munge; with --accounting also slurmdbd and mariadb-server.
# Idempotent and quick once done (a few `command -v`); flock-guarded so parallel test processes
# install once. No daemon is left running: the tests start their own, under a temp dir.
set -euo pipefail

accounting=false
for arg in "$@"; do
    case "$arg" in
    --accounting) accounting=true ;;
    *)
        echo "usage: $0 [--accounting]" >&2
        exit 2
        ;;
    esac
done

# Binaries and the Debian packages that ship them.
wanted=(slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge mungekey:munge)
if $accounting; then
    wanted+=(slurmdbd:slurmdbd mariadbd:mariadb-server mariadb-install-db:mariadb-server)
fi

missing_packages() {
    local entry
    for entry in "${wanted[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "${entry%%:*}" >/dev/null || echo "${entry#*:}"
    done | sort -u
}

[[ -z "$(missing_packages)" ]] && exit 0

cache="${ORCH_TEST_CACHE:-$HOME/.cache/orch-test}"
mkdir -p "$cache"
exec 9>"$cache/slurm-setup.lock"
flock -w 1800 9 || {
    echo "setup.sh: waited 30 min for $cache/slurm-setup.lock" >&2
    exit 1
}

# Another process may have installed while this one waited for the lock.
mapfile -t packages < <(missing_packages)
((${#packages[@]} == 0)) && exit 0
if $accounting; then
    # Only the packages themselves; mariadb-server also recommends a mail stack and Perl modules.
    packages+=(slurmdbd mariadb-server)
fi

# Package scripts must not start the system-wide daemons (munge, slurmctld, mariadb): on a
# machine without a policy forbidding it, forbid it for this install only.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi

echo "setup.sh: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_get=(apt-get -o DPkg::Lock::Timeout=600 -q)
if ! "${apt_get[@]}" install -y --no-install-recommends "${packages[@]}" >&2; then
    # A fresh machine may have stale or no package lists.
    "${apt_get[@]}" update >&2
    "${apt_get[@]}" install -y --no-install-recommends "${packages[@]}" >&2
fi

still=$(missing_packages)
if [[ -n "$still" ]]; then
    echo "setup.sh: still missing after install: $still" >&2
    exit 1
fi
