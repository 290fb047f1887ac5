#!/bin/sh
# The PostgreSQL tests start their own throwaway cluster with Debian's initdb and pg_ctl (never a
# downloaded build, never the machine's own cluster). Installs Debian's postgresql with apt-get
# when we are root and the binaries are missing; otherwise one French line. Prints nothing when
# everything is there (tests/harness/postgres.py finds the binaries the same way).
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
if ! command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL manque (initdb, pg_ctl) et apt-get est absent : installez PostgreSQL (ou indiquez son dossier bin dans PASSERELLE_PG_BIN), puis relancez « make test »." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "PostgreSQL manque (initdb, pg_ctl) : installez-le avec « sudo apt-get install postgresql », puis relancez « make test »." >&2
  exit 1
fi
echo "→ Installation de PostgreSQL (Debian) pour les tests multi-instances…"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
found || { echo "PostgreSQL installé mais initdb/pg_ctl introuvables dans /usr/lib/postgresql/*/bin." >&2; exit 1; }
