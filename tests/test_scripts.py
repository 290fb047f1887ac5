"""What `make test` runs first on a fresh machine (CI included): scripts/ensure-browser.sh and
scripts/ensure-postgres.sh, through their one apt-get guard (scripts/apt-install.sh).

The real apt-get is replaced on ``PATH`` by a stand-in that records its arguments and "installs"
by creating the missing files, so the whole path of a fresh machine is played here: nothing when
everything is there; as root, ``apt-get update`` before the install; otherwise one French line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.paths import ROOT

SCRIPTS = ROOT / "scripts"


class Machine:
    """A ``PATH`` of stand-ins: ``apt-get`` (recorded; its install creates ``creates``) and
    ``id`` (as root or as user 1000); ``with_apt=False`` is a machine without apt-get."""

    def __init__(self, root: Path, *, uid: int = 0, with_apt: bool = True) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "apt.log"
        self.creates: list[Path] = []
        for tool in ("sh", "chmod", "touch", "mkdir"):  # nothing else: a bare machine
            found = shutil.which(tool)
            assert found is not None, tool
            (self.bin / tool).symlink_to(found)
        (self.bin / "id").write_text(f"#!/bin/sh\necho {uid}\n", "utf-8")
        (self.bin / "id").chmod(0o755)
        self.with_apt = with_apt

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        if self.with_apt:
            made = " ".join(f'"{p}"' for p in self.creates)
            (self.bin / "apt-get").write_text(
                "#!/bin/sh\n"
                f'echo "$*" >> "{self.log}"\n'
                f'if [ "$1" = install ]; then for f in {made}; do\n'
                '  mkdir -p "${f%/*}"; touch "$f"; chmod 755 "$f"; done; fi\n',
                "utf-8",
            )
            (self.bin / "apt-get").chmod(0o755)
        return subprocess.run(
            ["sh", str(SCRIPTS / script)],
            env={"PATH": str(self.bin), **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    @property
    def apt_calls(self) -> list[str]:
        return self.log.read_text("utf-8").splitlines() if self.log.exists() else []


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def test_chromium_missing_is_installed_after_apt_get_update(
    machine: Machine, tmp_path: Path
) -> None:
    chromium = tmp_path / "usr" / "bin" / "chromium"
    machine.creates = [chromium]
    first = machine.run("ensure-browser.sh", CHROMIUM=str(chromium))
    assert first.returncode == 0, first.stderr
    assert machine.apt_calls == ["update -qq", "install -y -qq chromium"]
    assert "Installation de Chromium (Debian)" in first.stdout
    assert os.access(chromium, os.X_OK)
    again = machine.run("ensure-browser.sh", CHROMIUM=str(chromium))
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert len(machine.apt_calls) == 2, "installed: nothing is asked of apt-get again"


def test_postgres_missing_is_installed_after_apt_get_update(
    machine: Machine, tmp_path: Path
) -> None:
    pg_bin = tmp_path / "pg" / "bin"
    machine.creates = [pg_bin / "initdb", pg_bin / "pg_ctl"]
    first = machine.run("ensure-postgres.sh", PASSERELLE_PG_BIN=str(pg_bin))
    assert first.returncode == 0, first.stderr
    assert machine.apt_calls == ["update -qq", "install -y -qq postgresql"]
    assert "Installation de PostgreSQL (Debian)" in first.stdout
    again = machine.run("ensure-postgres.sh", PASSERELLE_PG_BIN=str(pg_bin))
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert len(machine.apt_calls) == 2


def test_an_install_that_does_not_bring_the_binaries_fails_clearly(
    machine: Machine, tmp_path: Path
) -> None:
    result = machine.run("ensure-postgres.sh", PASSERELLE_PG_BIN=str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert machine.apt_calls == ["update -qq", "install -y -qq postgresql"]
    assert "initdb/pg_ctl introuvables" in result.stderr


@pytest.mark.parametrize(
    ("script", "env", "package"),
    [
        ("ensure-browser.sh", "CHROMIUM", "chromium"),
        ("ensure-postgres.sh", "PASSERELLE_PG_BIN", "postgresql"),
    ],
)
def test_not_root_or_no_apt_get_says_what_to_do_in_one_line(
    tmp_path: Path, script: str, env: str, package: str
) -> None:
    (tmp_path / "user").mkdir()
    user = Machine(tmp_path / "user", uid=1000)
    refused = user.run(script, **{env: str(tmp_path / "missing")})
    assert refused.returncode == 1 and user.apt_calls == []
    assert refused.stderr.count("\n") == 1
    assert f"« sudo apt-get install {package} »" in refused.stderr
    (tmp_path / "bare").mkdir()
    bare = Machine(tmp_path / "bare", with_apt=False)
    without = bare.run(script, **{env: str(tmp_path / "missing")})
    assert without.returncode == 1 and without.stderr.count("\n") == 1
    assert "apt-get est absent" in without.stderr


def test_both_are_silent_on_this_machine_where_everything_is_installed() -> None:
    """As `make test` runs them here (and in CI once installed): no output, no apt-get."""
    for script in ("ensure-browser.sh", "ensure-postgres.sh"):
        result = subprocess.run(
            ["sh", str(SCRIPTS / script)], capture_output=True, text=True, check=False, timeout=30
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), script
