"""The process's logging: one handler on standard error (text, or JSON lines), secrets
redacted, chatty libraries kept quiet, and uvicorn's loggers routed through the same handler.

Health data: the formatter never writes an exception's message nor local values (they may quote
what a person wrote), and the libraries that log URLs, texts or SQL parameters stay above the
levels where they would.
"""

from __future__ import annotations

import json
import logging
import logging.config
import traceback

from bot.config import Settings


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
    exception's type) and ``traceback`` (where it happened: file, line and function of each
    frame, never the exception's message nor local values, which may quote personal data).

    Every line is JSON, uvicorn's and the ASGI tracebacks included: uvicorn is configured with
    :func:`logging_config` (its ``log_config``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            entry["traceback"] = [
                f"{frame.filename}:{frame.lineno} in {frame.name}"
                for frame in traceback.extract_tb(record.exc_info[2])
            ]
        return json.dumps(entry, ensure_ascii=False)


def _secrets_of(settings: Settings) -> list[str]:
    return [
        settings.telegram_token or "",
        settings.webhook_secret or "",
        settings.secret.decode() if settings.secret else "",
        settings.admin_token or "",
    ]


def logging_config(settings: Settings) -> dict[str, object]:
    """The ``logging.config.dictConfig`` of the process, also given to uvicorn as its
    ``log_config``: one handler on standard error (text, or JSON lines with
    ``PASSERELLE_LOG_FORMAT=json``) with the redaction filter, and uvicorn's loggers sending
    their records to it instead of printing them their own way."""
    formatter: dict[str, object] = (
        {"()": JsonFormatter}
        if settings.log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    through_root = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": _Redact, "secrets": _secrets_of(settings)}},
        "formatters": {"passerelle": formatter},
        "handlers": {
            "passerelle": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "passerelle",
                "filters": ["redact"],
            }
        },
        "root": {"level": settings.log_level, "handlers": ["passerelle"]},
        "loggers": {
            "uvicorn": {**through_root, "level": settings.log_level},
            "uvicorn.error": {**through_root, "level": settings.log_level},
            "uvicorn.asgi": {**through_root, "level": settings.log_level},
            "uvicorn.access": {**through_root, "level": "WARNING"},
        },
    }


def configure_logging(settings: Settings) -> None:
    """Logs at ``PASSERELLE_LOG_LEVEL`` (plain text, or JSON lines with
    ``PASSERELLE_LOG_FORMAT=json``), libraries that log URLs kept quiet, and any secret that
    still slips into a record redacted. Warnings go through the same handler."""
    logging.config.dictConfig(logging_config(settings))
    logging.captureWarnings(True)
    quiet_libraries()
