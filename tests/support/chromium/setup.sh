#!/usr/bin/env bash
# Makes Debian's `chromium` (new headless mode built in) available to the report-rendering tests
# (tests/common/chromium.rs runs this). Idempotent and flock-guarded; a few ms when chromium is
# present. Prints the browser binary on stdout: /usr/lib/chromium/chromium itself rather than
# the /usr/bin/chromium launcher, which sources /etc/chromium.d and adds flags of its own
# (--enable-remote-extensions, --load-extension=..., a /dev/shm check that errors in some
# containers); the tests pass every flag they rely on themselves.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../apt-install.sh"

browser=/usr/lib/chromium/chromium
# DejaVu Sans is Debian's default sans-serif, the font screenshots' text is drawn in; fontconfig
# usually pulls it in already, named here so a minimal machine has it too.
font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
apt_install_once chromium "test -x $browser && test -e $font" chromium fonts-dejavu-core
echo "$browser"
