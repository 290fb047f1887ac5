"""Telegram intake: what makes a raw update safe to record and apply, and which chat it
belongs to (its ordering key). Checked before anything is recorded.
"""

from __future__ import annotations

import json

from telegram import Bot, Update

from bot.json_types import JsonValue, loads

#: Intake checks (:func:`update_problem`): Telegram's ids fit in 52 bits, callback data in 64
#: bytes; updates are a few levels deep. Texts (4096 characters on Telegram) are allowed up to
#: 32 Kio, so that a too long one still gets the engine's kind « too long » answer.
MAX_ID = 2**53
MAX_INT = 2**63
MAX_DEPTH = 24
TEXT_LIMITS = {"text": 32_768, "caption": 32_768, "data": 64, "query": 4096}
#: Objects whose ``id`` identifies a person or a chat, and must be an integer.
ID_OBJECTS = ("chat", "from", "sender_chat", "user", "forward_from", "forward_from_chat")


def json_object(payload: bytes) -> JsonValue:
    try:
        return loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("not JSON") from None


def chat_key(update: Update) -> tuple[str, int]:
    """The ordering key of an update: its chat (or person, or itself)."""
    if update.effective_chat is not None:
        return ("chat", update.effective_chat.id)
    if update.effective_user is not None:
        return ("user", update.effective_user.id)
    return ("update", update.update_id)


def chat_name(key: tuple[str, int]) -> str:
    """The key of a chat's turn in a shared store (``chat:42``)."""
    return f"{key[0]}:{key[1]}"


def chat_of(name: str) -> tuple[str, int]:
    """The ordering key back from :func:`chat_name`."""
    kind, _, number = name.partition(":")
    return (kind, int(number))


def update_problem(data: JsonValue) -> str | None:
    """Why ``data`` is not an update we can safely record and apply, or ``None``.

    Checked before anything is recorded: ``update_id`` and every integer in range (SQLite
    stores 64 bits), the ids of chats and people integers of at most 53 bits, texts within
    Telegram's limits, a shallow structure, and PTB able to read it."""
    update_id = data.get("update_id") if isinstance(data, dict) else None
    if type(update_id) is not int:
        return "not a Telegram update"
    if not 0 <= update_id < MAX_INT:
        return "update_id out of range"
    stack: list[tuple[JsonValue, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return "too deeply nested"
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ID_OBJECTS:
                    if not isinstance(item, dict):
                        return f"{key} is not an object"
                    ident = item.get("id")
                    if type(ident) is not int or not -MAX_ID < ident < MAX_ID:
                        return f"{key}.id is not a Telegram id"
                limit = TEXT_LIMITS.get(key)
                if limit is not None and isinstance(item, str):
                    size = len(item.encode("utf-8", "replace")) if key == "data" else len(item)
                    if size > limit:
                        return f"{key} too long"
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif type(value) is int and not -MAX_INT <= value < MAX_INT:
            return "integer out of range"
    return None


def parse(data: JsonValue, bot: Bot) -> Update:
    """The PTB update of checked ``data``; :class:`ValueError` if it fails a check."""
    problem = update_problem(data)
    if problem is not None or not isinstance(data, dict):
        raise ValueError(problem or "not a Telegram update")
    try:
        update = Update.de_json(data, bot)
    except Exception as exc:
        raise ValueError(f"unreadable by PTB ({type(exc).__name__})") from None
    if update is None:
        raise ValueError("unreadable by PTB")
    return update
