#!/bin/sh
# The PostgreSQL tests start their own throwaway cluster with Debian's initdb and pg_ctl (never a
# downloaded build, never the machine's own cluster). Installs Debian's postgresql with apt-get
# when we are root and the binaries are missing (scripts/apt-install.sh); otherwise one French
# line. Prints nothing when everything is there (tests/harness/postgres.py finds the binaries
# the same way).
set -eu
found() {
  if [ -n "${PASSERELLE_PG_BIN:-}" ]; then
    [ -x "$PASSERELLE_PG_BIN/initdb" ] && [ -x "$PASSERELLE_PG_BIN/pg_ctl" ]
    return
  fi
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && return 0
  done
  return 1
}
found && exit 0
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
sh "$here/apt-install.sh" postgresql "PostgreSQL manque (initdb, pg_ctl)" \
  "installez PostgreSQL (ou indiquez son dossier bin dans PASSERELLE_PG_BIN)" \
  "PostgreSQL (Debian) pour les tests multi-instances"
found || { echo "PostgreSQL installé mais initdb/pg_ctl introuvables dans /usr/lib/postgresql/*/bin." >&2; exit 1; }
