"""Settings from the environment: defaults, and one clear line for each mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

TOKEN = "123456789:AAEabcdefghijklmnopqrstuvwxyz012345"
SECRET = "s" * 32


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.telegram_token is None
    assert settings.db_path == Path("passerelle.db")
    assert settings.retention_days == 90 and settings.port == 8080
    assert settings.telegram_api_base_url == "https://api.telegram.org/bot"
    assert settings.host == "127.0.0.1"
    assert settings.trusted_proxies == (), "X-Forwarded-For believed from no one by default"
    assert settings.header_timeout == 10 and settings.body_timeout == 30
    assert settings.claim_seconds == 30, "a dead PostgreSQL instance is relayed after 30 s"
    assert load_settings({"PASSERELLE_CLAIM_SECONDS": "4"}).claim_seconds == 4


def test_trusted_proxies_are_addresses_or_networks() -> None:
    settings = load_settings({"PASSERELLE_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"})
    assert settings.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert load_settings({"PASSERELLE_TRUSTED_PROXIES": "*"}).trusted_proxies == ("*",)


def test_full_webhook_configuration() -> None:
    settings = load_settings(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "PASSERELLE_SECRET": SECRET,
            "PASSERELLE_WEBHOOK_URL": "https://bot.example.org/tg/hook",
            "PASSERELLE_WEBHOOK_SECRET": "a" * 32,
            "PORT": "9000",
            "TELEGRAM_API_BASE_URL": "http://127.0.0.1:8081",
            "PASSERELLE_LOG_LEVEL": "debug",
        }
    )
    assert settings.webhook_path == "/tg/hook"
    # PORT alone never opens every interface: that takes PASSERELLE_HOST=0.0.0.0.
    assert settings.port == 9000 and settings.host == "127.0.0.1"
    assert load_settings({"PASSERELLE_HOST": "0.0.0.0"}).host == "0.0.0.0"
    assert settings.telegram_api_base_url == "http://127.0.0.1:8081/bot"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": "nope"}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "PASSERELLE_SECRET": "short"}, "PASSERELLE_SECRET"),
        ({"PASSERELLE_RETENTION_DAYS": "abc"}, "PASSERELLE_RETENTION_DAYS"),
        ({"PASSERELLE_RETENTION_DAYS": "0"}, "PASSERELLE_RETENTION_DAYS"),
        ({"PORT": "70000"}, "PORT"),
        ({"PASSERELLE_LOG_LEVEL": "chatty"}, "PASSERELLE_LOG_LEVEL"),
        ({"PASSERELLE_WEBHOOK_URL": "https://x.org/h"}, "PASSERELLE_WEBHOOK_SECRET"),
        ({"PASSERELLE_WEBHOOK_URL": "http://x.org/h"}, "PASSERELLE_WEBHOOK_URL"),
        ({"PASSERELLE_WEBHOOK_SECRET": "bad secret!"}, "PASSERELLE_WEBHOOK_SECRET"),
        ({"TELEGRAM_API_BASE_URL": "ftp://x"}, "TELEGRAM_API_BASE_URL"),
        ({"PASSERELLE_CONTENUS": "/nonexistent/dir"}, "PASSERELLE_CONTENUS"),
        ({"PASSERELLE_HOST": "http://0.0.0.0/"}, "PASSERELLE_HOST"),
        ({"PASSERELLE_TRUSTED_PROXIES": "my-proxy"}, "PASSERELLE_TRUSTED_PROXIES"),
        ({"PASSERELLE_HEADER_TIMEOUT": "0"}, "PASSERELLE_HEADER_TIMEOUT"),
        ({"PASSERELLE_BODY_TIMEOUT": "lent"}, "PASSERELLE_BODY_TIMEOUT"),
        ({"PASSERELLE_CLAIM_SECONDS": "trente"}, "PASSERELLE_CLAIM_SECONDS"),
        ({"PASSERELLE_CLAIM_SECONDS": "0"}, "PASSERELLE_CLAIM_SECONDS"),
    ],
)
def test_each_mistake_names_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, need_telegram=True if not env else "TELEGRAM_BOT_TOKEN" in env)
    message = str(caught.value)
    assert message.startswith(named) and "\n" not in message


def test_cli_stops_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "telegram"],
        env={"PATH": "/usr/bin:/bin", "PASSERELLE_RETENTION_DAYS": "beaucoup"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TELEGRAM_BOT_TOKEN" in lines[0]
    assert "Traceback" not in result.stderr
