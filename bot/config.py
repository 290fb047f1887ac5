"""Settings from environment variables, checked once at start-up.

A missing or malformed value raises :class:`ConfigError` with one line saying which variable
and how to fix it; :func:`load_or_exit` turns that into a clean exit (no traceback).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

TELEGRAM_API = "https://api.telegram.org/bot"
#: The SQLite file of every command when ``PASSERELLE_DB`` is not set.
DEFAULT_DB = "passerelle.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TOKEN_PATTERN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,}$")
SECRET_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
MIN_SECRET_LENGTH = 16
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line for the operator."""


@dataclass(frozen=True)
class Settings:
    """Everything the server and the Telegram channel read from the environment."""

    telegram_token: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    db_path: Path = Path(DEFAULT_DB)
    retention_days: int = 90
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8080
    telegram_api_base_url: str = TELEGRAM_API
    secret: bytes | None = None
    contenus: Path | None = None
    telegram_rate: float = 30.0
    # -- hospital integration (API, webhooks, web chat, local contents) --------------------
    establishments: Path | None = None
    contenus_extra: Path | None = None
    api_rate: float = 20.0
    api_burst: int = 60
    webhook_retry_base: float = 5.0
    demo: bool = True
    # -- operations ------------------------------------------------------------------------
    admin_token: str | None = None
    log_format: str = "text"

    @property
    def webhook_path(self) -> str:
        """The path our webhook route listens on: that of ``PASSERELLE_WEBHOOK_URL``."""
        path = urlsplit(self.webhook_url or "").path.rstrip("/")
        return path or "/telegram/webhook"

    @property
    def local_address(self) -> str:
        """Where a browser on this machine reaches the server (before the socket is bound)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{_bracket(host)}:{self.port}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def http_address(host: str, port: int) -> str:
    """``http://host:port`` for a bound address (IPv6 in brackets)."""
    return f"http://{_bracket(host)}:{port}"


#: The settings ``passerelle serve --help`` lists (every one is described in .env.example).
SERVE_SETTINGS = (
    ("PASSERELLE_HOST", "127.0.0.1", "interface d'écoute (0.0.0.0 : toutes, pour un PaaS)"),
    ("PORT", "8080", "port HTTP"),
    ("PASSERELLE_DB", DEFAULT_DB, "fichier SQLite (créé en 0600)"),
    ("TELEGRAM_BOT_TOKEN", "", "jeton de @BotFather ; absent : pas de Telegram"),
    ("PASSERELLE_SECRET", "", "clé de pseudonymisation (obligatoire avec Telegram)"),
    ("PASSERELLE_WEBHOOK_URL", "", "adresse https du webhook Telegram ; vide : long polling"),
    ("PASSERELLE_WEBHOOK_SECRET", "", "secret du webhook Telegram (avec l'adresse)"),
    ("TELEGRAM_API_BASE_URL", TELEGRAM_API, "serveur Bot API"),
    ("PASSERELLE_TELEGRAM_RATE", "30", "messages par seconde vers Telegram"),
    ("PASSERELLE_RETENTION_DAYS", "90", "jours sans message avant effacement"),
    ("PASSERELLE_CONTENUS", "contenus", "dossier de la base de contenus"),
    ("PASSERELLE_CONTENUS_EXTRA", "", "contenus locaux d'un établissement"),
    ("PASSERELLE_ETABLISSEMENTS", "", "fichier YAML des établissements"),
    ("PASSERELLE_API_RATE", "20", "requêtes par seconde et par clé d'API"),
    ("PASSERELLE_WEBHOOK_RETRY_BASE", "5", "secondes avant le 1er nouvel essai d'un webhook"),
    ("PASSERELLE_DEMO", "1", "page de démonstration sur / (1) ou non (0)"),
    ("PASSERELLE_ADMIN_TOKEN", "", "jeton de POST /admin/reload"),
    ("PASSERELLE_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING ou ERROR"),
    ("PASSERELLE_LOG_FORMAT", "text", "text ou json"),
    ("PASSERELLE_ENV_FILE", ".env", "fichier de réglages lu au démarrage (vide : aucun)"),
)


def settings_help() -> str:
    """The ``serve --help`` epilog: each setting, its default, and the precedence rule."""
    width = max(len(name) for name, _, _ in SERVE_SETTINGS)
    lines = [
        "réglages (variables d'environnement ; l'environnement l'emporte sur le fichier .env",
        "du dossier courant, qui l'emporte sur les valeurs par défaut — voir .env.example) :",
    ]
    for name, default, what in SERVE_SETTINGS:
        suffix = f" (défaut : {default})" if default else ""
        lines.append(f"  {name:<{width}}  {what}{suffix}")
    return "\n".join(lines)


def load_dotenv(path: Path | None = None, environ: MutableMapping[str, str] | None = None) -> int:
    """Fill the variables the environment does not set from ``path`` (when present): by
    default ``$PASSERELLE_ENV_FILE``, else ``./.env``; ``PASSERELLE_ENV_FILE=`` (empty) reads
    none, which keeps the test suite independent of a developer's own ``.env``.

    Precedence: the real environment, then ``.env``, then the defaults; a variable set in the
    environment, even empty, is never overwritten. python-dotenv parses the file (quotes,
    ``export``, comments) exactly as the usual tools do. Returns how many variables it set.
    """
    from dotenv import dotenv_values

    environ = os.environ if environ is None else environ
    if path is None:
        chosen = environ.get("PASSERELLE_ENV_FILE", ".env")
        if not chosen:
            return 0
        path = Path(chosen)
    if not path.is_file():
        return 0
    added = 0
    for name, value in dotenv_values(path).items():
        if value is not None and name not in environ:
            environ[name] = value
            added += 1
    return added


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N, low: N, high: N, hint: str) -> N:
    """``env[name]`` parsed like ``default`` (int or float) and bounded, or a clear error."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        what = "un nombre entier" if kind is int else "un nombre"
        raise ConfigError(f"{name} = « {raw} » n'est pas {what} : {hint}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} = {value} hors limites ({low} à {high}) : {hint}")
    return value


def load_settings(env: Mapping[str, str] | None = None, *, need_telegram: bool = False) -> Settings:
    """Read and check the settings; ``need_telegram`` makes the bot token mandatory."""
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    token = get("TELEGRAM_BOT_TOKEN")
    if token is None and need_telegram:
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN manquant : créez un bot avec @BotFather sur Telegram et "
            "exportez le jeton, par exemple TELEGRAM_BOT_TOKEN=123456:ABC… (voir docs/telegram.md)"
        )
    if token is not None and not TOKEN_PATTERN.match(token):
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN mal formé : il doit ressembler à 123456789:AAE… "
            "(copiez-le tel que @BotFather l'a donné, sans espace ni guillemets)"
        )

    webhook_url = get("PASSERELLE_WEBHOOK_URL")
    webhook_secret = get("PASSERELLE_WEBHOOK_SECRET")
    if webhook_url is not None:
        parts = urlsplit(webhook_url)
        local = parts.hostname in LOCAL_HOSTS
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or (parts.scheme == "http" and not local)
        ):
            raise ConfigError(
                f"PASSERELLE_WEBHOOK_URL = « {webhook_url} » invalide : Telegram exige une adresse "
                "publique en https, par exemple https://passerelle.example.org/telegram/webhook"
            )
        if webhook_secret is None:
            raise ConfigError(
                "PASSERELLE_WEBHOOK_SECRET manquant (obligatoire avec PASSERELLE_WEBHOOK_URL) : "
                f"générez-en un avec {GENERATE}"
            )
    if webhook_secret is not None and not SECRET_TOKEN_PATTERN.match(webhook_secret):
        raise ConfigError(
            "PASSERELLE_WEBHOOK_SECRET invalide : 16 à 256 caractères parmi A-Z a-z 0-9 _ - ; "
            f"générez-en un avec {GENERATE}"
        )

    secret = get("PASSERELLE_SECRET")
    if secret is None and token is not None:
        raise ConfigError(
            "PASSERELLE_SECRET manquant (clé de pseudonymisation des identifiants Telegram) : "
            f"générez-en un avec {GENERATE} et gardez-le (le changer fait oublier les sessions)"
        )
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"PASSERELLE_SECRET trop court (au moins {MIN_SECRET_LENGTH} caractères) : "
            f"générez-en un avec {GENERATE}"
        )

    level = (get("PASSERELLE_LOG_LEVEL") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"PASSERELLE_LOG_LEVEL = « {level} » inconnu : choisissez parmi {', '.join(LOG_LEVELS)}"
        )

    base_url = (get("TELEGRAM_API_BASE_URL") or TELEGRAM_API).rstrip("/")
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).hostname:
        raise ConfigError(
            f"TELEGRAM_API_BASE_URL = « {base_url} » invalide : une adresse http(s), par exemple "
            f"{TELEGRAM_API} ou http://127.0.0.1:8081/bot pour un serveur Bot API local"
        )
    if not base_url.endswith("/bot"):
        base_url += "/bot"

    raw_rate = get("PASSERELLE_TELEGRAM_RATE") or "30"
    try:
        rate = float(raw_rate)
    except ValueError:
        rate = -1.0
    if not 0 <= rate <= 1000:
        raise ConfigError(
            f"PASSERELLE_TELEGRAM_RATE = « {raw_rate} » invalide : messages par seconde envoyés "
            "à Telegram, 30 par défaut (0 = sans limite, seulement pour un faux serveur de test)"
        )

    contenus = get("PASSERELLE_CONTENUS")
    if contenus is not None and not Path(contenus).is_dir():
        raise ConfigError(
            f"PASSERELLE_CONTENUS = « {contenus} » n'est pas un dossier : indiquez le dossier "
            "de la base de contenus (par exemple contenus)"
        )

    establishments = get("PASSERELLE_ETABLISSEMENTS")
    if establishments is not None and not Path(establishments).is_file():
        raise ConfigError(
            f"PASSERELLE_ETABLISSEMENTS = « {establishments} » n'est pas un fichier : indiquez le "
            "fichier YAML des établissements (voir docs/integration.md)"
        )
    extra = get("PASSERELLE_CONTENUS_EXTRA")
    if extra is not None and not Path(extra).is_dir():
        raise ConfigError(
            f"PASSERELLE_CONTENUS_EXTRA = « {extra} » n'est pas un dossier : indiquez le dossier "
            "des contenus locaux de l'établissement (contacts.yaml, glossary.yaml)"
        )
    api_rate = _number(
        env, "PASSERELLE_API_RATE", 20.0, 0.1, 100_000, "requêtes par seconde et par clé, ex. 20"
    )
    retry_base = _number(
        env, "PASSERELLE_WEBHOOK_RETRY_BASE", 5.0, 0.01, 3600, "secondes avant le 1er nouvel essai"
    )
    demo = (get("PASSERELLE_DEMO") or "1").lower()
    if demo not in ("0", "1", "false", "true", "non", "oui"):
        raise ConfigError(f"PASSERELLE_DEMO = « {demo} » invalide : 1 (page de démonstration) ou 0")

    admin_token = get("PASSERELLE_ADMIN_TOKEN")
    if admin_token is not None and len(admin_token) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"PASSERELLE_ADMIN_TOKEN trop court (au moins {MIN_SECRET_LENGTH} caractères) : "
            f"générez-en un avec {GENERATE}"
        )
    log_format = (get("PASSERELLE_LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        raise ConfigError(
            f"PASSERELLE_LOG_FORMAT = « {log_format} » invalide : text (défaut) ou json"
        )

    host = get("PASSERELLE_HOST") or "127.0.0.1"
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ConfigError(
            f"PASSERELLE_HOST = « {host} » invalide : une adresse d'interface, par exemple "
            "127.0.0.1 (cette machine seulement) ou 0.0.0.0 (toutes les interfaces)"
        )
    return Settings(
        telegram_token=token,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        db_path=Path(get("PASSERELLE_DB") or DEFAULT_DB),
        retention_days=_number(
            env, "PASSERELLE_RETENTION_DAYS", 90, 1, 3650, "un nombre de jours, par exemple 90"
        ),
        log_level=level,
        # Loopback unless asked: listening on every interface is a choice made explicitly.
        host=host,
        port=_number(env, "PORT", 8080, 1, 65535, "un port TCP, par exemple 8080"),
        telegram_api_base_url=base_url,
        secret=secret.encode() if secret is not None else None,
        contenus=Path(contenus) if contenus is not None else None,
        telegram_rate=rate,
        establishments=Path(establishments) if establishments is not None else None,
        contenus_extra=Path(extra) if extra is not None else None,
        api_rate=api_rate,
        api_burst=max(1, int(api_rate * 3)),
        webhook_retry_base=retry_base,
        demo=demo in ("1", "true", "oui"),
        admin_token=admin_token,
        log_format=log_format,
    )


def load_or_exit(env: Mapping[str, str] | None = None, *, need_telegram: bool = False) -> Settings:
    """:func:`load_settings`, or exit with status 2 and the one-line explanation."""
    try:
        return load_settings(env, need_telegram=need_telegram)
    except ConfigError as exc:
        print(f"Configuration : {exc}", file=sys.stderr)
        raise SystemExit(2) from None


class _Redact(logging.Filter):
    """Replaces secrets that a library might log (e.g. a URL holding the bot token)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "[secret]")
            record.msg, record.args = message, None
        return True


#: Libraries whose debug/info logs carry URLs with the bot token, message texts, chat ids or
#: SQL parameters: never below these levels, whatever PASSERELLE_LOG_LEVEL says.
QUIET_LOGGERS = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "telegram": logging.INFO,
    "aiosqlite": logging.INFO,
    "apscheduler": logging.WARNING,
    "uvicorn.access": logging.WARNING,
}


def quiet_libraries() -> None:
    """Keep chatty libraries at levels where they log no content, id or secret."""
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < level or logger.level == logging.NOTSET:
            logger.setLevel(level)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``event`` (the message, which
    our code keeps free of message text, ids and secrets) and, for errors, ``error`` (the
    exception's type only: a traceback may quote personal data)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    """Logs at ``PASSERELLE_LOG_LEVEL`` (plain text, or JSON lines with
    ``PASSERELLE_LOG_FORMAT=json``), libraries that log URLs kept quiet, and any secret that
    still slips into a record redacted."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_libraries()
    secrets = [
        settings.telegram_token or "",
        settings.webhook_secret or "",
        settings.secret.decode() if settings.secret else "",
        settings.admin_token or "",
    ]
    redact = _Redact(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
        if settings.log_format == "json":
            handler.setFormatter(JsonFormatter())
