#!/usr/bin/env bash
# Makes the interactive shells and the terminal the tests drive available: tmux (a real
# terminal for the Ctrl-Z test), bash, zsh and fish (shell completion of task names).
# tests/common/shells.rs runs this. Idempotent and flock-guarded; a few ms when all are
# present. Prints `NAME PATH` for each on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../apt-install.sh"

# bash is Debian's own shell, always there: naming it would upgrade it.
apt_install_once shells "command -v tmux && command -v bash && command -v zsh && command -v fish" \
    tmux zsh fish
for tool in tmux bash zsh fish; do
    echo "$tool $(command -v "$tool")"
done
