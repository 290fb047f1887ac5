#!/bin/sh
# The web chat tests drive Debian's Chromium at /usr/bin/chromium (never a downloaded browser
# build). Installs it with apt-get when we are root and it is missing (scripts/apt-install.sh);
# otherwise one French line. Prints nothing when it is there.
set -eu
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
sh "$here/apt-install.sh" chromium "Chromium manque ($CHROMIUM)" \
  "installez Chromium à ce chemin" "Chromium (Debian) pour les tests du chat web"
