#!/usr/bin/env bash
# Installs Snakemake 9 and its Slurm executor plugin from PyPI into a venv in the test cache, for
# the orch-against-Snakemake comparison on the local Slurm cluster (issue: Slurm executor bench).
# Idempotent and quick once done (a marker names the pinned versions); flock-guarded. Prints the
# venv's bin directory.
set -euo pipefail

snakemake_version=9.27.1
plugin_version=2.8.0

cache="${ORCH_TEST_CACHE:-$HOME/.cache/orch-test}"
venv="$cache/snakemake-$snakemake_version-slurm-$plugin_version"
marker="$venv/.installed"

if [[ ! -e "$marker" ]]; then
    mkdir -p "$cache"
    exec 9>"$cache/snakemake-setup.lock"
    flock -w 1800 9 || {
        echo "snakemake setup: waited 30 min for $cache/snakemake-setup.lock" >&2
        exit 1
    }
    if [[ ! -e "$marker" ]]; then
        python=$(command -v python3) || {
            echo "snakemake setup: python3 not found" >&2
            exit 1
        }
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
            echo "snakemake setup: Snakemake 9 needs Python >= 3.11, $python is $("$python" -V)" >&2
            exit 1
        }
        echo "snakemake setup: installing snakemake $snakemake_version and the slurm plugin $plugin_version into $venv" >&2
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "snakemake==$snakemake_version" "snakemake-executor-plugin-slurm==$plugin_version" >&2
        "$venv/bin/snakemake" --version >/dev/null
        touch "$marker"
    fi
fi
echo "$venv/bin"
