#!/bin/sh
# The one apt-get guard of the ensure-*.sh scripts, called once they found what the tests need
# missing: installs Debian's PACKAGE when we are root (`apt-get update` first: a fresh machine
# has no package lists yet); otherwise one French line saying what to do, and exit 1.
#   sh scripts/apt-install.sh PACKAGE MISSING ADVICE PURPOSE
# MISSING says what is missing, ADVICE what to do where there is no apt-get, PURPOSE what the
# package is for (shown while it installs).
set -eu
package=$1
missing=$2
advice=$3
purpose=$4
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$missing et apt-get est absent : $advice, puis relancez « make test »." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$missing : installez-le avec « sudo apt-get install $package », puis relancez « make test »." >&2
  exit 1
fi
echo "→ Installation de $purpose…"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package"
