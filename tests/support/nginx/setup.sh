#!/usr/bin/env bash
# Makes Debian's nginx available to the remote-cache tests (tests/common/nginx.rs runs this):
# the `nginx` package alone has the WebDAV module built in (`dav_methods PUT`), so neither
# nginx-light/-full nor libnginx-mod-http-dav-ext is needed. Idempotent and flock-guarded; a
# few ms when nginx is present. Prints the binary's path on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../apt-install.sh"

nginx=/usr/sbin/nginx
has_dav="$nginx -V 2>&1 | grep -q -- --with-http_dav_module"
had_pid=$( [ -s /run/nginx.pid ] && echo yes || true )
apt_install_once nginx "$has_dav" nginx

# A policy-rc.d that allowed starts (or none honoured) may have let the package start the
# system service on port 80: stop it, and keep it from coming back at boot.
if [ -z "$had_pid" ] && [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    echo "nginx setup: stopping the system nginx the package started" >&2
    $nginx -s quit 2>/dev/null || kill "$(cat /run/nginx.pid)" || true
    if [ -d /run/systemd/system ]; then systemctl disable --now nginx >&2 || true; fi
fi
echo "$nginx"
