#!/bin/sh
# The web chat tests drive Debian's Chromium at /usr/bin/chromium (never a downloaded browser
# build). Installs it with apt-get when we are root and it is missing; otherwise one French line.
set -eu
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium manque ($CHROMIUM) et apt-get est absent : installez Chromium à ce chemin, puis relancez « make test »." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium manque ($CHROMIUM) : installez-le avec « sudo apt-get install chromium », puis relancez « make test »." >&2
  exit 1
fi
echo "→ Installation de Chromium (Debian) pour les tests du chat web…"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
