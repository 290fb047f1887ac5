"""What a newcomer meets on a fresh clone: the README's two commands, `.env`, the listening
address, a busy port, and the command line speaking French."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.config import load_dotenv
from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_dotenv_fills_only_what_the_environment_leaves_unset(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\nPORT=9001\nexport PASSERELLE_DB='from dotenv.db'\nPASSERELLE_HOST=\n"
    )
    environ = {"PORT": "9002", "PASSERELLE_HOST": "0.0.0.0"}
    assert load_dotenv(env_file, environ) == 1
    assert environ == {
        "PORT": "9002",
        "PASSERELLE_HOST": "0.0.0.0",
        "PASSERELLE_DB": "from dotenv.db",
    }
    assert load_dotenv(tmp_path / "absent", environ) == 0
    # PASSERELLE_ENV_FILE names another file; empty, none is read.
    assert load_dotenv(None, {"PASSERELLE_ENV_FILE": str(env_file)}) == 3
    assert load_dotenv(None, {"PASSERELLE_ENV_FILE": ""}) == 0


def test_busy_port_is_one_french_line_with_the_fix_and_dotenv_is_read(
    tmp_path: Path, busy_port: int
) -> None:
    # .env gives the port (proof it is read) and a bad retention that the real environment
    # overrides (proof of the precedence): the only problem left is the busy port.
    (tmp_path / ".env").write_text(f"PORT={busy_port}\nPASSERELLE_RETENTION_DAYS=beaucoup\n")
    result = run_cli(
        "serve", cwd=tmp_path, env={"PASSERELLE_RETENTION_DAYS": "30", "PASSERELLE_DB": "p.db"}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"Le port {busy_port} est déjà utilisé" in lines[0]
    assert f"PORT={busy_port + 1} make run" in lines[0]
    assert "prête" not in result.stderr and "Traceback" not in result.stderr


def test_serve_prints_the_address_it_really_listens_on(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        env={"PATH": os.environ["PATH"], "PORT": str(port), "PASSERELLE_DB": "p.db"},
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        banner = ""
        while time.monotonic() < deadline and "prête" not in banner:
            banner = process.stderr.readline()
            assert banner or process.poll() is None, "the server stopped"
        assert f"prête sur http://127.0.0.1:{port} " in banner
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()


def test_the_command_line_speaks_french(tmp_path: Path) -> None:
    wrong = run_cli("nimporte", cwd=tmp_path, env={})
    assert wrong.returncode == 2
    assert "passerelle : erreur : argument command : choix invalide" in wrong.stderr
    assert "utilisation :" in wrong.stderr and "error" not in wrong.stderr
    missing = run_cli(cwd=tmp_path, env={})
    assert "arguments obligatoires manquants : command" in missing.stderr
    helped = run_cli("serve", "--help", cwd=tmp_path, env={})
    assert helped.returncode == 0
    assert "afficher cette aide et quitter" in helped.stdout
    shown = ("PASSERELLE_HOST", "PORT", "PASSERELLE_DB", "TELEGRAM_BOT_TOKEN", ".env")
    for setting in (*shown, "PASSERELLE_CLAIM_SECONDS"):
        assert setting in helped.stdout


def test_make_run_installs_the_runtime_only_and_make_test_the_browser() -> None:
    def plan(target: str) -> str:
        result = subprocess.run(
            ["make", "-n", "-B", target, "VENV=/nonexistent-venv"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        return result.stdout

    run = plan("run")
    assert "-c constraints.txt -e .\n" in run and "[dev]" not in run
    test = plan("test")
    assert '-e ".[dev]"' in test and "scripts/ensure-browser.sh" in test
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_missing_browser_without_apt_is_one_french_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "id"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        [str(bin_dir / "sh"), str(ROOT / "scripts" / "ensure-browser.sh")],
        env={"PATH": str(bin_dir), "CHROMIUM": str(tmp_path / "no-chromium")},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Chromium manque")
    assert "make test" in lines[0]
