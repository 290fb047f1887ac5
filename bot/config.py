# Over 400 lines on purpose: every setting, its check and its French message in one place.
"""Settings from environment variables, checked once at start-up.

A missing or malformed value raises :class:`ConfigError` with one line saying which variable
and how to fix it; :func:`load_or_exit` turns that into a clean exit (no traceback).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace
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
#: Where ``PASSERELLE_SECRET`` is kept when it is not set: beside the database, mode 0600.
SECRET_FILE_SUFFIX = ".secret"
#: Seconds a client has to send a request's headers (from the connection or the end of the
#: previous response), then its body, before the connection is closed or a 408 answered.
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
#: Largest request head (request line and headers) accepted, in bytes.
MAX_HEADER_BYTES = 16 * 1024
#: Seconds a PostgreSQL instance's claims (replies, webhook events, a chat's turn) last
#: unrenewed before another instance takes the work over: how long a dead instance is waited.
CLAIM_SECONDS = 30.0


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line for the operator."""


@dataclass(frozen=True)
class Settings:
    """Everything the server and the Telegram channel read from the environment."""

    telegram_token: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    db_path: Path = Path(DEFAULT_DB)
    #: ``PASSERELLE_DB`` when it is a ``postgresql://`` URL (then ``db_path`` is unused).
    database_url: str | None = None
    #: Several instances on PostgreSQL: ``PASSERELLE_CLAIM_SECONDS`` (see :data:`CLAIM_SECONDS`).
    claim_seconds: float = CLAIM_SECONDS
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
    #: Proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed (IPs, networks,
    #: or ``*``); empty: none, the peer's address is the client's.
    trusted_proxies: tuple[str, ...] = ()
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT

    @property
    def database_label(self) -> str:
        """The database as an operator may see it: the file, or the URL without its password."""
        if self.database_url is not None:
            from bot.storage.postgres.schema import redact_url

            return redact_url(self.database_url)
        return str(self.db_path.resolve())

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
    ("PASSERELLE_DB", DEFAULT_DB, "fichier SQLite (créé en 0600) ou postgresql://…"),
    ("PASSERELLE_CLAIM_SECONDS", "30", "PostgreSQL : secondes avant de relayer une instance morte"),
    ("TELEGRAM_BOT_TOKEN", "", "jeton de @BotFather ; absent : pas de Telegram"),
    ("PASSERELLE_SECRET", "", "clé de pseudonymisation (sinon générée dans <base>.secret)"),
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
    ("PASSERELLE_TRUSTED_PROXIES", "", "proxies dont X-Forwarded-For est cru (IP, réseaux ou *)"),
    ("PASSERELLE_HEADER_TIMEOUT", "10", "secondes pour lire les en-têtes d'une requête"),
    ("PASSERELLE_BODY_TIMEOUT", "30", "secondes pour lire le corps d'une requête"),
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

    # Unset: generated once and kept beside the database (see ensure_secret), never a constant.
    secret = get("PASSERELLE_SECRET")
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
    proxies = tuple(
        p.strip() for p in (get("PASSERELLE_TRUSTED_PROXIES") or "").split(",") if p.strip()
    )
    for proxy in proxies:
        if proxy == "*":
            continue
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"PASSERELLE_TRUSTED_PROXIES : « {proxy} » n'est ni une adresse IP ni un réseau : "
                "indiquez les adresses du proxy inverse, séparées par des virgules (par exemple "
                "127.0.0.1,10.0.0.0/8), ou * derrière une plateforme dont le proxy est le seul "
                "accès au serveur"
            ) from None
    header_timeout = _number(
        env, "PASSERELLE_HEADER_TIMEOUT", HEADER_TIMEOUT, 0.1, 300.0, "secondes, par exemple 10"
    )
    body_timeout = _number(
        env, "PASSERELLE_BODY_TIMEOUT", BODY_TIMEOUT, 0.1, 600.0, "secondes, par exemple 30"
    )
    claim = _number(
        env, "PASSERELLE_CLAIM_SECONDS", CLAIM_SECONDS, 1.0, 3600.0, "secondes, par exemple 30"
    )
    database = get("PASSERELLE_DB") or DEFAULT_DB
    database_url = database if database.startswith(("postgresql://", "postgres://")) else None
    if database_url is not None and get("PASSERELLE_SECRET") is None:
        raise ConfigError(
            "PASSERELLE_DB désigne PostgreSQL : définissez aussi PASSERELLE_SECRET, la même "
            "valeur pour toutes les instances (sinon chacune pseudonymiserait autrement), "
            f"générée une fois avec {GENERATE}"
        )
    return Settings(
        telegram_token=token,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        db_path=Path(DEFAULT_DB if database_url else database),
        database_url=database_url,
        claim_seconds=claim,
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
        trusted_proxies=proxies,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
    )


def secret_file(db_path: Path) -> Path:
    """The file holding the generated ``PASSERELLE_SECRET``, beside the database."""
    return db_path.with_name(db_path.name + SECRET_FILE_SUFFIX)


def ensure_secret(settings: Settings) -> Settings:
    """``settings`` with its pseudonymisation key: ``PASSERELLE_SECRET`` if set, else the one
    kept beside the database, generated (256 random bits, file mode 0600) the first time.

    So ``make run`` and a bot token suffice, and the key never is a constant: two deployments
    never share it, and restarting keeps it (changing it would make every stored pseudonym
    unreachable). Two processes starting at once agree on one key (atomic creation)."""
    if settings.secret is not None:
        return settings
    if str(settings.db_path) == ":memory:":
        return replace(settings, secret=secrets.token_urlsafe(32).encode())
    path = secret_file(settings.db_path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(secrets.token_urlsafe(32) + "\n")
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: use its
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    try:
        value = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} illisible ({type(exc).__name__}) : c'est la clé de pseudonymisation "
            "générée par Passerelle ; restaurez-la, ou définissez PASSERELLE_SECRET"
        ) from None
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{path} ne contient pas une clé valide (au moins {MIN_SECRET_LENGTH} caractères) : "
            "restaurez-la depuis une sauvegarde, ou définissez PASSERELLE_SECRET"
        )
    return replace(settings, secret=value.encode())


def secret_or_exit(settings: Settings) -> Settings:
    """:func:`ensure_secret`, or exit with status 2 and the one-line explanation."""
    try:
        return ensure_secret(settings)
    except ConfigError as exc:
        print(f"Configuration : {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def load_or_exit(env: Mapping[str, str] | None = None, *, need_telegram: bool = False) -> Settings:
    """:func:`load_settings`, or exit with status 2 and the one-line explanation."""
    try:
        return load_settings(env, need_telegram=need_telegram)
    except ConfigError as exc:
        print(f"Configuration : {exc}", file=sys.stderr)
        raise SystemExit(2) from None
