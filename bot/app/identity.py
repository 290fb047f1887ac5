"""Who a conversation is with, as the application layer knows them: pseudonyms only.

A channel turns its platform id (a Telegram user id, an API conversation id) into a keyed hash
with :func:`pseudonym` and hands the service an :class:`Identity`; no raw id goes further in.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


def pseudonym(secret: bytes, channel: str, raw_id: str | int) -> str:
    """Keyed hash of a channel's user id: stable for one deployment, useless without the secret."""
    digest = hmac.new(secret, f"{channel}:{raw_id}".encode(), hashlib.sha256).hexdigest()
    return f"{channel[:2]}_{digest[:40]}"


@dataclass(frozen=True)
class Identity:
    """One person in one channel, for one turn.

    ``user`` is the pseudonymous key every store knows them by; ``address`` how the channel can
    write to them first (a Telegram chat id: follow-ups need it), ``None`` if it cannot;
    ``owner`` the establishment whose API key created the conversation; ``subject`` the key
    that erasure uses to find undelivered webhook payloads (the API conversation id; the
    pseudonym itself by default)."""

    channel: str
    user: str
    address: str | None = None
    owner: str | None = None
    subject: str | None = None

    @property
    def erasure_key(self) -> str:
        return self.subject if self.subject is not None else self.user


class Pseudonyms:
    """The deployment's pseudonymisation key, bound once (``PASSERELLE_SECRET``)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def of(self, channel: str, raw_id: str | int) -> str:
        return pseudonym(self._secret, channel, raw_id)
