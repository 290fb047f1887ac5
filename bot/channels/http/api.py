"""The conversation API (``/api/v1``) as Starlette routes to add to the server's app, with the
demo page (``/``) and the embeddable web chat (:mod:`bot.channels.http.webchat`).

Every API answer is JSON; errors are ``{"error": {"code", "message"}}``. A conversation belongs
to the establishment whose key created it: a key of any other establishment gets 404, as if it
did not exist. One created with a public widget key also needs its own secret, returned once at
creation (``conversation_secret``) and sent back in the ``X-Conversation-Secret`` header: the
widget key, visible in every host page, never unlocks a transcript by itself. Conversations are
stored (state and transcript): the establishment's integration holds the consent relationship
with the person.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hmac
import json
import math
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from bot.adapters.webhooks import EVENT_TYPES, WebhookWorker, route
from bot.app.reload import EngineHolder, holder_of
from bot.channels.http.cors import CORS
from bot.channels.http.errors import (
    ApiError,
    error_response,
    http_exception,
    json_response,
    model_response,
    not_found,
    server_error,
    too_large,
    validation_error,
)
from bot.channels.http.openapi import openapi_document
from bot.channels.http.ratelimit import RateLimiter
from bot.channels.http.schemas import (
    API_PREFIX,
    MAX_BODY_BYTES,
    Answer,
    ApiRequest,
    ConversationCreated,
    ConversationOut,
    NewConversation,
    NewMessage,
    StatsOut,
    iso,
    transcript_entry,
    turn_out,
)
from bot.channels.http.webchat import webchat_routes
from bot.config import BODY_TIMEOUT
from bot.engine.flow import CMD, Engine, Turn
from bot.engine.recommendation import territory_chain
from bot.engine.session import Input, Session
from bot.knowledge.establishments import Establishment
from bot.storage.base import pseudonym
from bot.storage.integration import (
    ApiKey,
    Conversation,
    IntegrationStore,
    TranscriptLine,
    hash_key,
    new_id,
)

if TYPE_CHECKING:
    from bot.app.features import Features

#: Engine commands a client may send as a choice at any time (``cmd:aide``…).
COMMANDS = frozenset({"aide", "retour", "recommencer", "contacts", "glossaire", "stop", "relation"})
DEMO_KEY_ID = "key_demo"
DEMO_ESTABLISHMENT = "demo"
#: The header carrying a widget conversation's own secret (``conversation_secret``).
SECRET_HEADER = "x-conversation-secret"
SECRET_PREFIX = "pcs_"


# -- the API ---------------------------------------------------------------------------------
class ConversationApi:
    """Handlers of ``/api/v1``; :meth:`routes` gives the routes to mount in the server's app."""

    def __init__(
        self,
        engine: Engine | EngineHolder,
        store: IntegrationStore,
        establishments: Mapping[str, Establishment] | None = None,
        *,
        limiter: RateLimiter | None = None,
        demo_key: str | None = None,
        on_events: Callable[[], None] | None = None,
        key_cache_seconds: float = 5.0,
        features: Features | None = None,
        secret: bytes | None = None,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.holder = holder_of(engine)
        self.features = features
        # The deployment passes its PASSERELLE_SECRET; never a constant otherwise.
        self.secret = secret if secret is not None else secrets.token_bytes(32)
        self.body_timeout = body_timeout
        self.store = store
        self.establishments = dict(establishments or {})
        self.limiter = limiter or RateLimiter()
        self.demo_key = demo_key
        self.on_events = on_events
        self.key_cache_seconds = key_cache_seconds
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._keys: dict[str, tuple[float, ApiKey | None]] = {}

    @property
    def engine(self) -> Engine:
        """The engine of the current knowledge base (swapped on reload): read it per request."""
        return self.holder.engine

    def member(self, conversation_id: str) -> str:
        """The pseudonymous key of an API conversation for the barometer and its erasure."""
        return pseudonym(self.secret, "api", conversation_id)

    async def _features(self, turn: Turn, conversation_id: str, establishment: str) -> Turn:
        if self.features is None:
            return turn
        return await self.features.after_turn(
            turn,
            channel="api",
            member=self.member(conversation_id),
            establishment=establishment,
        )

    # -- plumbing ------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        """``/api/v1`` (its own JSON errors and CORS), ``/`` and ``/widget.js``."""
        api = Starlette(
            routes=[
                Route("/openapi.json", self.openapi, methods=["GET"]),
                Route("/stats", self.stats, methods=["GET"]),
                Route("/conversations", self.create, methods=["POST"]),
                Route("/conversations/{conversation_id}/messages", self.message, methods=["POST"]),
                Route(
                    "/conversations/{conversation_id}",
                    self.conversation,
                    methods=["GET", "DELETE"],
                ),
            ],
            exception_handlers={HTTPException: http_exception, Exception: server_error},
        )
        # CORS outside the whole sub-app, so that even a 500 reaches the page readable.
        cors = CORS.cls(api, *CORS.args, **CORS.kwargs)
        return [Mount(API_PREFIX, app=cors), *webchat_routes(self.demo_key)]

    async def _authenticate(self, request: Request) -> ApiKey:
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
            if cached is not None and now - cached[0] < self.key_cache_seconds:
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

    async def _body(self, request: Request, model: type[ApiRequest], empty_ok: bool) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            raise too_large()
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):  # a body trickled in never ends
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise too_large()
                    chunks.append(chunk)
        except TimeoutError:
            raise ApiError(
                408,
                "request_timeout",
                f"Corps de requête reçu trop lentement ({self.body_timeout:g} s au plus).",
                {"connection": "close"},
            ) from None
        raw = b"".join(chunks)
        if not raw.strip() and empty_ok:
            data: Any = {}
        else:
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):
                raise ApiError(
                    400, "invalid_json", "Le corps de la requête n'est pas du JSON valide."
                ) from None
        if not isinstance(data, dict):
            raise ApiError(422, "invalid_request", "Le corps doit être un objet JSON.")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc) from None

    @contextlib.asynccontextmanager
    async def _lock(self, conversation_id: str) -> AsyncIterator[None]:
        """One turn of a conversation at a time: in this process, then across instances
        sharing the store (PostgreSQL: an advisory lock)."""
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        async with lock, self.store.conversation_turn(conversation_id):
            yield

    async def _handle(self, request: Request, work: Callable[[], Any]) -> Response:
        try:
            response: Response = await work()
        except ApiError as exc:
            return error_response(exc)
        return response

    def _is_command(self, choice: str) -> bool:
        """Engine commands (and side modes such as the barometer) are accepted at any step."""
        name = choice[len(CMD) :] if choice.startswith(CMD) else None
        return name is not None and (name in COMMANDS or name in self.engine.modes)

    def _context(self, key: ApiKey, context: str | None) -> str | None:
        """``context`` if the key's establishment may use it (its id or one of its declared
        contexts), else a 403: no key speaks for another establishment."""
        if context is None:
            return None
        establishment = self.establishments.get(key.establishment)
        allowed = {key.establishment, *(establishment.contexts if establishment else ())}
        if context not in allowed:
            raise ApiError(
                403,
                "forbidden_context",
                f"Le contexte « {context} » n'appartient pas à l'établissement de cette clé "
                f"(permis : {', '.join(sorted(allowed))}).",
            )
        return context

    async def _owned(self, request: Request, key: ApiKey, conversation_id: str) -> Conversation:
        """The conversation if the key's establishment owns it and, for a widget key, the
        request carries the conversation's own secret; else 404 (as if it did not exist)."""
        conversation = await self.store.load_conversation(conversation_id, key.establishment)
        if conversation is None:
            raise not_found()
        if key.kind == "widget":
            given = request.headers.get(SECRET_HEADER, "").strip()
            expected = conversation.secret_hash or ""
            # Compared in constant time, and a conversation without a secret never matches.
            if not hmac.compare_digest(hash_key(given), expected) or not expected:
                raise not_found()
        return conversation

    def _route_events(self, turn: Turn, conversation: Conversation) -> list[Any]:
        entries = []
        for event in turn.events:
            if event.kind not in EVENT_TYPES:  # barometer.*, followup.*: never sent out
                continue
            chain = territory_chain(self.engine.kb, event.data.get("territory"))
            entries += route(
                event,
                self.establishments,
                owner=conversation.establishment,
                subject=conversation.id,
                territories=chain,
            )
        return entries

    # -- endpoints -----------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        async def work() -> Response:
            key = await self._authenticate(request)
            body: NewConversation = await self._body(request, NewConversation, empty_ok=True)
            context = self._context(key, body.context)
            conversation_id = new_id("conv_")
            start = self.engine.start(context, owner=key.establishment)
            turn = await self._features(start, conversation_id, key.establishment)
            now = time.time()
            secret = SECRET_PREFIX + secrets.token_urlsafe(32) if key.kind == "widget" else None
            conversation = Conversation(
                id=conversation_id,
                key_id=key.id,
                establishment=key.establishment,
                session=turn.session.to_dict(),
                offered=_offered(turn),
                created_at=now,
                updated_at=now,
                secret_hash=hash_key(secret) if secret is not None else None,
            )
            events = self._route_events(turn, conversation)
            await self.store.save_turn(
                conversation, created=True, lines=_bot_lines(turn, now), events=events
            )
            if events and self.on_events:
                self.on_events()
            created = ConversationCreated(
                conversation_id=conversation.id, conversation_secret=secret, **dict(turn_out(turn))
            )
            location = f"{API_PREFIX}/conversations/{conversation.id}"
            return model_response(created, 201, {"location": location})

        return await self._handle(request, work)

    async def message(self, request: Request) -> Response:
        async def work() -> Response:
            key = await self._authenticate(request)
            conversation_id = request.path_params["conversation_id"]
            body: NewMessage = await self._body(request, NewMessage, empty_ok=False)
            async with self._lock(conversation_id):
                conversation = await self._owned(request, key, conversation_id)
                session = Session.from_dict(conversation.session)
                now = time.time()
                person: dict[str, Any]
                if body.choice is not None:
                    if body.choice not in conversation.offered and not self._is_command(
                        body.choice
                    ):
                        raise ApiError(
                            422,
                            "unknown_choice",
                            "Ce choix n'est pas proposé à cette étape de la conversation : "
                            "utilisez un « id » des derniers choix reçus.",
                        )
                    event = Input.choice(body.choice, session.node)
                    person = {"choice": body.choice}
                else:
                    event = Input.text(body.text or "")
                    person = {"text": body.text or ""}
                turn = await self._features(
                    self.engine.handle(session, event), conversation.id, conversation.establishment
                )
                updated = dataclasses.replace(
                    conversation,
                    session=turn.session.to_dict(),
                    offered=_offered(turn),
                    updated_at=now,
                )
                events = self._route_events(turn, updated)
                lines = [TranscriptLine(now, "person", person), *_bot_lines(turn, now)]
                await self.store.save_turn(updated, created=False, lines=lines, events=events)
            if events and self.on_events:
                self.on_events()
            return model_response(turn_out(turn))

        return await self._handle(request, work)

    async def conversation(self, request: Request) -> Response:
        async def work() -> Response:
            key = await self._authenticate(request)
            conversation_id = request.path_params["conversation_id"]
            if request.method == "DELETE":
                async with self._lock(conversation_id):
                    conversation = await self._owned(request, key, conversation_id)
                    if self.features is not None:
                        # First the features' rows (statistics included: no padding is left
                        # behind), then the conversation, whose erasure also scrubs the disk.
                        await self.features.erase_conversation(
                            self.member(conversation_id), conversation.session
                        )
                    if not await self.store.delete_conversation(conversation_id, key.establishment):
                        raise not_found()
                return Response(status_code=204)
            conversation = await self._owned(request, key, conversation_id)
            lines = await self.store.transcript(conversation_id)
            session = Session.from_dict(conversation.session)
            exported = (
                await self.features.export_user(self.member(conversation.id))
                if self.features is not None
                else {"barometer_ratings": [], "followups": []}
            )
            return model_response(
                ConversationOut(
                    conversation_id=conversation.id,
                    context=session.context,
                    node=session.node,
                    kb_version=session.kb_version,
                    created_at=iso(conversation.created_at),
                    updated_at=iso(conversation.updated_at),
                    answers=[Answer(question=q, choice=c) for q, c in session.answers],
                    transcript=[transcript_entry(line) for line in lines],
                    session=conversation.session,
                    barometer_ratings=exported["barometer_ratings"],
                    followups=exported["followups"],
                    webhooks_pending=await self.store.outbox_about(conversation.id),
                )
            )

        return await self._handle(request, work)

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document())

    async def stats(self, request: Request) -> Response:
        """``GET /stats?since=YYYY-MM-DD``: figures of the caller's own context only."""

        async def work() -> Response:
            key = await self._authenticate(request)
            if key.kind != "api":
                raise ApiError(
                    403,
                    "forbidden",
                    "Les statistiques ne se lisent qu'avec une clé secrète (psk_…), jamais avec "
                    "la clé publique du chat web.",
                )
            raw = request.query_params.get("since")
            since = None
            if raw:
                try:
                    since = dt.date.fromisoformat(raw)
                except ValueError:
                    raise ApiError(
                        422, "invalid_request", "« since » doit être une date AAAA-MM-JJ."
                    ) from None
            if self.features is None:
                raise ApiError(404, "not_found", "Statistiques non disponibles sur ce serveur.")
            establishment = self.establishments.get(key.establishment)
            contexts = establishment.contexts if establishment is not None else ()
            figures = await self.features.stats_json(key.establishment, since, contexts=contexts)
            return model_response(StatsOut.model_validate(figures))

        return await self._handle(request, work)

    # -- web chat ------------------------------------------------------------------------


def create_app(
    api: ConversationApi,
    *,
    worker: WebhookWorker | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """A standalone app serving the API and the web chat: opens the store and the features
    (and starts the webhook worker) at start-up, closes them at shutdown."""
    from bot.server import build_app

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await api.store.open()
        if api.features is not None:
            await api.features.open()
        if worker is not None:
            await worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            if api.features is not None:
                await api.features.close()
            await api.store.close()

    return build_app(routes=[*extra_routes, *api.routes()], lifespans=[lifespan])


def _offered(turn: Turn) -> tuple[str, ...]:
    return tuple(choice.id for reply in turn.replies for choice in reply.choices)


def _bot_lines(turn: Turn, now: float) -> list[TranscriptLine]:
    return [
        TranscriptLine(
            now,
            "bot",
            {
                "text": reply.text,
                "choices": [{"id": c.id, "label": c.label} for c in reply.choices],
            },
        )
        for reply in turn.replies
    ]
