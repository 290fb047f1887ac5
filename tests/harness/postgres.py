"""A throwaway PostgreSQL cluster for the tests and benchmarks: Debian's ``initdb`` and ``pg_ctl``
in a temporary directory, reachable only through a Unix socket in that directory (no TCP port,
so nothing to race for and nothing reachable from outside), removed when stopped.

As root, the cluster runs as the ``postgres`` user (``initdb`` refuses root). A missing
PostgreSQL raises :class:`PostgresMissing`: the tests that need it fail, loudly.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "passerelle"
PORT = 5432  # only names the socket file: listen_addresses is empty


class PostgresMissing(RuntimeError):
    """initdb/pg_ctl not found: run scripts/ensure-postgres.sh (``make test`` does)."""


def find_bin() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: ``$PASSERELLE_PG_BIN``, then ``$PATH``, then
    Debian's newest ``/usr/lib/postgresql/*/bin``."""
    candidates: list[str] = []
    if os.environ.get("PASSERELLE_PG_BIN"):
        candidates.append(os.environ["PASSERELLE_PG_BIN"])
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name or 0), reverse=True)
    for directory in candidates:
        if all(os.access(Path(directory) / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(directory)
    raise PostgresMissing(
        "PostgreSQL est introuvable (initdb, pg_ctl) : lancez « sh scripts/ensure-postgres.sh » "
        "(ou « make test », qui l'installe), ou indiquez son dossier bin dans PASSERELLE_PG_BIN."
    )


class Cluster:
    """One running cluster; :meth:`database` hands out fresh databases on it."""

    def __init__(self, root: Path, bin_dir: Path, user: str | None) -> None:
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.bin = bin_dir
        self.user = user  # the OS user the server runs as (None: ourselves)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args, user=self.user, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip()[-2000:]}")
        return result

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = " ".join(
            [
                "-c listen_addresses=''",
                f"-c unix_socket_directories={self.socket_dir}",
                f"-p {PORT}",
                "-c fsync=off",  # throwaway: speed over crash safety of the cluster itself
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                user=self.user,
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``dbname`` through the cluster's socket."""
        return f"postgresql://{SUPERUSER}@/{dbname}?host={quote(str(self.socket_dir), safe='')}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database, dropped afterwards (closing whatever still uses it)."""
        name = "t_" + secrets.token_hex(6)
        self.admin(f"CREATE DATABASE {name}")
        try:
            yield self.url(name)
        finally:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a cluster in a new temporary directory; stop and remove it afterwards."""
    bin_dir = find_bin()
    user: str | None = None
    root = Path(tempfile.mkdtemp(prefix="passerelle-pg-"))
    if os.geteuid() == 0:
        user = "postgres"
        try:
            shutil.chown(root, user=user)
        except LookupError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresMissing(
                "L'utilisateur système « postgres » manque (le paquet Debian postgresql le crée) :"
                " lancez « sh scripts/ensure-postgres.sh »."
            ) from exc
    os.chmod(root, 0o700)
    instance = Cluster(root, bin_dir, user)
    try:
        if user is not None:
            # The data and socket directories are created by the server's user.
            subprocess.run(["mkdir", "-p", str(instance.socket_dir)], user=user, check=True)
        else:
            instance.socket_dir.mkdir()
        instance.start()
        yield instance
    finally:
        instance.stop()
