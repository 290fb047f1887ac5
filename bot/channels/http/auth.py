"""Who is calling the API, and what they may reach: the bearer key (looked up in the store and
cached a few seconds, or the demo widget key), its rate limit, the contexts of its
establishment, and the conversations it owns."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Mapping

from starlette.requests import Request

from bot.channels.http.errors import ApiError, not_found
from bot.channels.http.ratelimit import RateLimiter
from bot.knowledge.establishments import Establishment
from bot.storage.base import ApiKey, Conversation, IntegrationStore, hash_key

DEMO_KEY_ID = "key_demo"
DEMO_ESTABLISHMENT = "demo"
#: The header carrying a widget conversation's own secret (``conversation_secret``).
SECRET_HEADER = "x-conversation-secret"


class KeyCheck:
    """The API key of a request (401 without a valid one, 429 over its rate limit).

    A widget key's bucket is per key and client address: the key is public, one page must not
    exhaust it for every other visitor."""

    def __init__(
        self,
        store: IntegrationStore,
        limiter: RateLimiter,
        demo_key: str | None,
        cache_seconds: float,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.demo_key = demo_key
        self.cache_seconds = cache_seconds
        self._keys: dict[str, tuple[float, ApiKey | None]] = {}

    async def __call__(self, request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise ApiError(
                401,
                "unauthorized",
                "Clé d'API manquante : en-tête « Authorization: Bearer <clé> ».",
                {"www-authenticate": "Bearer"},
            )
        key: ApiKey | None
        if self.demo_key and hmac.compare_digest(secret.encode(), self.demo_key.encode()):
            key = ApiKey(DEMO_KEY_ID, DEMO_ESTABLISHMENT, "widget", secret[:10], 0.0)
        else:
            now = time.monotonic()
            cached = self._keys.get(secret)
            if cached is not None and now - cached[0] < self.cache_seconds:
                key = cached[1]
            else:
                key = await self.store.find_key(secret) if len(secret) < 200 else None
                if len(self._keys) > 1000:
                    self._keys.clear()
                self._keys[secret] = (now, key)
        if key is None:
            raise ApiError(
                401,
                "unauthorized",
                "Clé d'API inconnue ou révoquée.",
                {"www-authenticate": 'Bearer error="invalid_token"'},
            )
        bucket = key.id
        if key.kind == "widget":
            bucket += "|" + (request.client.host if request.client else "")
        wait = self.limiter.check(bucket)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                "Trop de requêtes pour cette clé : réessayez dans quelques secondes.",
                {"retry-after": str(max(1, math.ceil(wait)))},
            )
        return key


def allowed_context(
    establishments: Mapping[str, Establishment], key: ApiKey, context: str | None
) -> str | None:
    """``context`` if the key's establishment may use it (its id or one of its declared
    contexts), else a 403: no key speaks for another establishment."""
    if context is None:
        return None
    establishment = establishments.get(key.establishment)
    allowed = {key.establishment, *(establishment.contexts if establishment else ())}
    if context not in allowed:
        raise ApiError(
            403,
            "forbidden_context",
            f"Le contexte « {context} » n'appartient pas à l'établissement de cette clé "
            f"(permis : {', '.join(sorted(allowed))}).",
        )
    return context


async def owned(
    store: IntegrationStore, request: Request, key: ApiKey, conversation_id: str
) -> Conversation:
    """The conversation if the key's establishment owns it and, for a widget key, the
    request carries the conversation's own secret; else 404 (as if it did not exist)."""
    conversation = await store.load_conversation(conversation_id, key.establishment)
    if conversation is None:
        raise not_found()
    if key.kind == "widget":
        given = request.headers.get(SECRET_HEADER, "").strip()
        expected = conversation.secret_hash or ""
        # Compared in constant time, and a conversation without a secret never matches.
        if not hmac.compare_digest(hash_key(given), expected) or not expected:
            raise not_found()
    return conversation
