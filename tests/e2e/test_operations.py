"""Issue 11, operations: ``passerelle serve`` as deployed (a real process on loopback). JSON
logs mean every line; ``X-Forwarded-For`` is believed only from listed proxies; slow request
heads and bodies are cut off; the pseudonymisation key is generated once and kept beside the
database; ``/healthz`` says when the database can no longer be written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.cli.compose import build_server_app
from bot.config import Settings, ensure_secret, load_settings, secret_file
from bot.engine.flow import Engine
from bot.storage.integration import IntegrationStore
from bot.storage.sqlite import SqliteStorage
from tests.harness.ports import free_port
from tests.harness.servers import serve

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    db: Path

    def stop(self) -> str:
        """Stop the server; what it wrote on standard error."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return err.decode("utf-8", "replace")


@contextlib.contextmanager
def passerelle_serve(tmp_path: Path, **env: str) -> Iterator[Served]:
    port = free_port()
    db = tmp_path / "passerelle.db"
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PASSERELLE_", "TELEGRAM_")) and key != "PORT"
    }
    environment.update(
        {"PORT": str(port), "PASSERELLE_HOST": "127.0.0.1", "PASSERELLE_DB": str(db), **env}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    served = Served(f"http://127.0.0.1:{port}", process, db)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {served.stop()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(served.url + "/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("serve did not become healthy")
            time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            served.stop()


def demo_key(url: str) -> str:
    match = re.search(r"pwk_demo_[A-Za-z0-9_-]+", httpx.get(url + "/", timeout=5).text)
    assert match is not None
    return match.group(0)


async def make_key(db: Path) -> tuple[str, str]:
    store = IntegrationStore(db)
    await store.open()
    key, record = await store.create_key("chu-a")
    await store.close()
    return key, record.id


def test_json_logs_are_json_lines_only_uvicorn_and_tracebacks_included(tmp_path: Path) -> None:
    key, key_id = asyncio.run(make_key(tmp_path / "passerelle.db"))
    with passerelle_serve(tmp_path, PASSERELLE_LOG_FORMAT="json") as served:
        # uvicorn's own warning: a request that is not HTTP.
        with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1]))) as sock:
            sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                sock.recv(1024)
        # A damaged row: the API answers 500 and the ASGI server logs the traceback.
        with contextlib.closing(sqlite3.connect(served.db)) as db, db:
            db.execute(
                "INSERT INTO api_conversations (id, key_id, establishment, session, offered, "
                "created_at, updated_at) VALUES ('conv_broken', ?, 'chu-a', '{oops', '[]', 0, 0)",
                (key_id,),
            )
        response = httpx.get(
            served.url + "/api/v1/conversations/conv_broken",
            headers={"authorization": f"Bearer {key}"},
        )
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        err = served.stop()  # waits for the process to exit: every line is flushed
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "the server logged something"
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert all({"ts", "level", "logger", "event"} <= set(entry) for entry in entries)
    loggers = {entry["logger"] for entry in entries}
    assert "uvicorn.error" in loggers, "uvicorn's lines go through the project's logging"
    assert any("Invalid HTTP request" in entry["event"] for entry in entries)
    [failure] = [entry for entry in entries if entry.get("error")]
    assert failure["error"] == "JSONDecodeError" and failure["traceback"], failure
    assert any("bot/storage/sqlite/integration.py" in frame for frame in failure["traceback"])
    assert "oops" not in err, "never the exception's message (it may quote personal data)"
    assert any("prête" in entry["event"] for entry in entries)


def test_the_secret_is_generated_once_kept_private_and_never_a_constant(tmp_path: Path) -> None:
    first = tmp_path / "a" / "passerelle.db"
    other = tmp_path / "b" / "passerelle.db"
    settings = load_settings({"PASSERELLE_DB": str(first), "TELEGRAM_BOT_TOKEN": "1:" + "a" * 30})
    assert settings.secret is None, "no longer an error: it is generated"
    made = ensure_secret(settings)
    assert made.secret is not None and len(made.secret) >= 32
    path = secret_file(first)
    assert path == tmp_path / "a" / "passerelle.db.secret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_secret(settings).secret == made.secret, "kept across restarts"
    elsewhere = ensure_secret(load_settings({"PASSERELLE_DB": str(other)}))
    assert elsewhere.secret != made.secret, "two deployments never share it"
    given = load_settings({"PASSERELLE_DB": str(first), "PASSERELLE_SECRET": "x" * 20})
    assert ensure_secret(given).secret == b"x" * 20, "the variable wins"


def test_serve_without_a_secret_keeps_the_api_pseudonyms_across_restarts(tmp_path: Path) -> None:
    with passerelle_serve(tmp_path) as served:
        err = served.stop()
    path = secret_file(served.db)
    assert path.exists() and path.stat().st_mode & 0o777 == 0o600
    secret = path.read_text().strip()
    assert secret not in err
    with passerelle_serve(tmp_path) as served:
        served.stop()
    assert path.read_text().strip() == secret


@pytest.mark.parametrize("trusted", [None, "127.0.0.1"])
def test_x_forwarded_for_is_believed_only_from_a_listed_proxy(
    tmp_path: Path, trusted: str | None
) -> None:
    extra = {"PASSERELLE_TRUSTED_PROXIES": trusted} if trusted else {}
    with passerelle_serve(tmp_path, PASSERELLE_API_RATE="0.5", **extra) as served:
        key = demo_key(served.url)
        statuses = []
        for _ in range(6):  # burst of 1 (0.5/s × 3 s): each "visitor" a new random address
            forwarded = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
            response = httpx.post(
                served.url + "/api/v1/conversations",
                json={},
                headers={"authorization": f"Bearer {key}", "x-forwarded-for": forwarded},
            )
            statuses.append(response.status_code)
    if trusted is None:
        assert 429 in statuses, "a made-up header does not escape the per-visitor limit"
    else:
        assert statuses.count(201) >= 5, "behind a listed proxy, each visitor has its limit"


def read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    data = b""
    with contextlib.suppress(TimeoutError):
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_a_slow_request_head_or_body_is_cut_off(tmp_path: Path) -> None:
    with passerelle_serve(
        tmp_path, PASSERELLE_HEADER_TIMEOUT="0.5", PASSERELLE_BODY_TIMEOUT="0.5"
    ) as served:
        address = ("127.0.0.1", int(served.url.rsplit(":", 1)[1]))
        key = demo_key(served.url)
        with socket.create_connection(address) as sock:  # slowloris: a head never finished
            started = time.monotonic()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            answer = read_until_closed(sock, 5)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert time.monotonic() - started < 3
        with socket.create_connection(address) as sock:  # nothing at all
            assert read_until_closed(sock, 5).startswith(b"HTTP/1.1 408")
        with socket.create_connection(address) as sock:  # a body that never ends
            sock.sendall(
                b"POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
                b"authorization: Bearer " + key.encode() + b"\r\n"
                b"content-type: application/json\r\ncontent-length: 50\r\n\r\n{"
            )
            answer = read_until_closed(sock, 5)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"request_timeout" in answer
        # Ordinary requests still work.
        assert httpx.get(served.url + "/healthz").status_code == 200


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        # `make test` runs as root (it installs Chromium too); a full disk needs a real mount.
        pytest.fail(f"cannot mount a small tmpfs (run as root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_healthz_says_which_part_failed_when_the_disk_is_full(
    tmp_path: Path, engine: Engine
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        settings = Settings(db_path=disk / "passerelle.db", secret=b"s" * 32)
        storage = SqliteStorage(settings.db_path)
        app = build_server_app(settings, engine, storage=storage)
        with serve(app) as url:
            healthy = httpx.get(url + "/healthz", timeout=10)
            assert healthy.status_code == 200, healthy.text
            filler = disk / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as file:
                while True:
                    file.write(b"\0" * 65536)
                    file.flush()
            full = httpx.get(url + "/healthz", timeout=10)
            assert full.status_code == 503, full.text
            body = full.json()
            assert body["status"] == "error"
            assert body["checks"]["disk"].startswith("error")
            assert body["checks"]["database"].startswith("error"), "a real write was tried"
            filler.unlink()
            again = httpx.get(url + "/healthz", timeout=10)
            assert again.status_code == 200, again.text
            assert again.json() == {"status": "ok", "checks": {"database": "ok", "disk": "ok"}}
