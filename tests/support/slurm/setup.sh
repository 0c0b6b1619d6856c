#!/usr/bin/env bash
# Makes Debian's Slurm 22.05 and munge available to the real-Slurm tests (tests/common/slurm.rs
# runs this): slurmctld, slurmd, slurm-client (what the slurm-wlm metapackage pulls in) and
# munge; with --accounting also slurmdbd and mariadb-server. Idempotent and flock-guarded (see
# ../apt-install.sh); a few ms when everything is there. No system-wide daemon is left running:
# the tests start their own under a temp dir (cluster.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../apt-install.sh"

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

# The daemons live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
has() { printf 'command -v %s && ' "$@"; echo true; }

apt_install_once slurm "$(has slurmctld slurmd sbatch srun salloc munged mungekey)" \
    slurmctld slurmd slurm-client munge
if $accounting; then
    apt_install_once slurm-accounting "$(has slurmdbd mariadbd mariadb-install-db mariadb)" \
        slurmdbd mariadb-server
fi
