"""The conversation API (``/api/v1``), the demo page (``/``) and the embeddable web chat
(``/widget.js``), as Starlette routes to add to the server's app.

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
import base64
import contextlib
import dataclasses
import datetime as dt
import hmac
import html
import json
import math
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from bot.adapters.webhooks import EVENT_MODELS, EVENT_TYPES, WebhookWorker, route
from bot.app.reload import EngineHolder, holder_of
from bot.config import BODY_TIMEOUT
from bot.engine.flow import CMD, MAX_TEXT_LENGTH, Engine, Turn
from bot.engine.recommendation import territory_chain
from bot.engine.replies import Reply
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

API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 16 * 1024
CONTEXT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Engine commands a client may send as a choice at any time (``cmd:aide``…).
COMMANDS = frozenset({"aide", "retour", "recommencer", "contacts", "glossaire", "stop", "relation"})
DEMO_KEY_ID = "key_demo"
DEMO_ESTABLISHMENT = "demo"
#: The header carrying a widget conversation's own secret (``conversation_secret``).
SECRET_HEADER = "x-conversation-secret"
SECRET_PREFIX = "pcs_"


# -- request and response models (they also generate the OpenAPI document) ------------------
class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewConversation(_Request):
    context: Annotated[
        str | None,
        Field(
            pattern=CONTEXT_PATTERN,
            description="Contexte de la conversation, par exemple l'identifiant de "
            "l'établissement dont les contacts passent en premier.",
        ),
    ] = None


class NewMessage(_Request):
    """Exactly one of ``text`` (what the person typed) or ``choice`` (a choice ``id``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["text"]}, {"required": ["choice"]}]},
    )

    text: Annotated[str, Field(max_length=MAX_TEXT_LENGTH)] | None = None
    choice: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> NewMessage:
        if (self.text is None) == (self.choice is None):
            raise ValueError("donnez soit « text », soit « choice » (un seul des deux)")
        return self


class ChoiceOut(BaseModel):
    id: str
    label: str


class ReplyOut(BaseModel):
    text: str
    choices: list[ChoiceOut]
    image_url: str | None = Field(description="Image (data: URL, PNG) or null.")
    image_alt: str | None = Field(
        default=None, description="Text alternative of the image (scores in words), or null."
    )


class RoleOut(BaseModel):
    id: str
    title: str
    definition: str
    reasons: list[str]
    first_steps: list[str]


class ContactOut(BaseModel):
    id: str
    name: str
    description: str
    website: str
    territories: list[str]
    roles: list[str]
    phone: str | None
    email: str | None
    why: str = Field(default="", description="« Pourquoi ce contact », shown to the person.")
    own: bool = Field(default=False, description="The contact belongs to the person's territory.")


class RecommendationOut(BaseModel):
    roles: list[RoleOut]
    contacts: list[ContactOut]
    territory: str | None


class TurnOut(BaseModel):
    replies: list[ReplyOut]
    node: str
    recommendation: RecommendationOut | None
    #: The facts the bot holds now: fact name -> value id (``profile: proche``,
    #: ``territory: fr-bretagne``), plus ``condition`` and ``place`` ids when one was named.
    understood: dict[str, str] = Field(
        default_factory=dict,
        description="Ce que le bot retient à ce tour : nom de la réponse → identifiant de sa "
        "valeur (profile, experience, country, region, territory, condition, place…).",
    )


class ConversationCreated(TurnOut):
    conversation_id: str
    conversation_secret: str | None = Field(
        description="With a widget key only: the conversation's own secret, to send back in "
        "the X-Conversation-Secret header of every later call about it (shown once); null "
        "with a secret key."
    )


class Answer(BaseModel):
    question: str
    choice: str


class TranscriptEntry(BaseModel):
    at: str
    author: Literal["person", "bot"]
    text: str | None
    choice: str | None
    choices: list[ChoiceOut]


class ConversationOut(BaseModel):
    conversation_id: str
    context: str | None
    node: str
    kb_version: str
    created_at: str
    updated_at: str
    answers: list[Answer]
    transcript: list[TranscriptEntry]
    session: dict[str, Any] = Field(description="The conversation state as stored.")
    barometer_ratings: list[dict[str, Any]] = Field(description="Barometer ratings kept.")
    followups: list[dict[str, Any]] = Field(description="Follow-ups (none on the API).")
    webhooks_pending: list[dict[str, Any]] = Field(
        description="Webhook events about this conversation not yet delivered."
    )


class StatsRow(BaseModel):
    id: str
    label: str
    count: int | None = Field(description="null when below the k-anonymity threshold.")


class StatsFollowupRow(BaseModel):
    id: str
    label: str
    answered: int | None
    reached: int | None
    share_reached: float | None


class StatsOut(BaseModel):
    """Usage figures of the caller's own context (see docs/stats.md); ``null`` = hidden."""

    since: str | None
    context: str | None
    k: int
    conversations: int | None
    completed: int | None
    completion_rate: float | None
    funnel: list[StatsRow]
    dropoff: list[StatsRow]
    roles: list[StatsRow]
    territories: list[StatsRow]
    outcomes: list[StatsRow]
    followup_by_role: list[StatsFollowupRow]
    followup_by_context: list[StatsFollowupRow]


#: Every ``error.code`` the API can answer (an enum in the OpenAPI document).
ErrorCode = Literal[
    "bad_request",
    "invalid_json",
    "invalid_request",
    "unknown_field",
    "text_too_long",
    "unknown_choice",
    "body_too_large",
    "request_timeout",
    "unauthorized",
    "forbidden",
    "forbidden_context",
    "conversation_not_found",
    "not_found",
    "method_not_allowed",
    "rate_limited",
    "internal_error",
]


class ErrorDetail(BaseModel):
    code: ErrorCode = Field(description="Stable, for programs; see docs/integration.md.")
    message: str = Field(description="In French, for people.")


class ErrorOut(BaseModel):
    error: ErrorDetail


# -- errors ----------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(
        self, status: int, code: ErrorCode, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


#: Any page may call the API: keys travel in the Authorization header, never in a cookie.
CORS = Middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_methods=["GET", "POST", "DELETE"],
    allow_headers=["authorization", "content-type", "x-conversation-secret"],
    expose_headers=["retry-after", "location"],
    max_age=600,
)


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers=dict(headers or {}), media_type="application/json")


def _model(
    model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A response body made by the model the OpenAPI document describes it with."""
    return _json(model.model_dump(mode="json"), status, headers)


def error_response(error: ApiError) -> Response:
    body = ErrorOut(error=ErrorDetail(code=error.code, message=error.message))
    return _model(body, error.status, error.headers)


_HTTP_CODES: dict[int, tuple[ErrorCode, str]] = {
    400: ("bad_request", "Requête invalide."),
    404: ("not_found", "Cette adresse n'existe pas dans l'API."),
    405: ("method_not_allowed", "Méthode non permise sur cette adresse."),
}


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code, message = _HTTP_CODES.get(status, ("bad_request", "Requête invalide."))
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    return error_response(ApiError(status, code, message, headers))


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(500, "internal_error", "Erreur interne, réessayez plus tard."))


# -- rate limiting ---------------------------------------------------------------------------
@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """A token bucket per key: ``rate`` requests per second on average, bursts of ``burst``."""

    rate: float = 20.0
    burst: int = 60
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def check(self, name: str, now: float | None = None) -> float:
        """0 if allowed (and counted), else the seconds to wait."""
        now = time.monotonic() if now is None else now
        bucket = self.buckets.get(name)
        if bucket is None:
            if len(self.buckets) > 10_000:
                self.buckets.clear()
            bucket = self.buckets[name] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


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
            exception_handlers={HTTPException: _http_exception, Exception: _server_error},
        )
        # CORS outside the whole sub-app, so that even a 500 reaches the page readable.
        cors = CORS.cls(api, *CORS.args, **CORS.kwargs)
        return [
            Mount(API_PREFIX, app=cors),
            Route("/", self.demo_page, methods=["GET"]),
            Route(
                "/widget.js",
                self.static("widget.js", "text/javascript"),
                methods=["GET"],
                middleware=[CORS],  # <script integrity=…> fetches it in CORS mode
            ),
            Route(
                "/widget.css",
                self.static("widget.css", "text/css"),
                methods=["GET"],
                middleware=[CORS],
            ),
        ]

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

    async def _body(self, request: Request, model: type[_Request], empty_ok: bool) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            raise _too_large()
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):  # a body trickled in never ends
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise _too_large()
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
            raise _validation_error(exc) from None

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
            raise _not_found()
        if key.kind == "widget":
            given = request.headers.get(SECRET_HEADER, "").strip()
            expected = conversation.secret_hash or ""
            # Compared in constant time, and a conversation without a secret never matches.
            if not hmac.compare_digest(hash_key(given), expected) or not expected:
                raise _not_found()
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
                conversation_id=conversation.id, conversation_secret=secret, **dict(_turn_out(turn))
            )
            location = f"{API_PREFIX}/conversations/{conversation.id}"
            return _model(created, 201, {"location": location})

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
            return _model(_turn_out(turn))

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
                        raise _not_found()
                return Response(status_code=204)
            conversation = await self._owned(request, key, conversation_id)
            lines = await self.store.transcript(conversation_id)
            session = Session.from_dict(conversation.session)
            exported = (
                await self.features.export_user(self.member(conversation.id))
                if self.features is not None
                else {"barometer_ratings": [], "followups": []}
            )
            return _model(
                ConversationOut(
                    conversation_id=conversation.id,
                    context=session.context,
                    node=session.node,
                    kb_version=session.kb_version,
                    created_at=_iso(conversation.created_at),
                    updated_at=_iso(conversation.updated_at),
                    answers=[Answer(question=q, choice=c) for q, c in session.answers],
                    transcript=[_transcript_entry(line) for line in lines],
                    session=conversation.session,
                    barometer_ratings=exported["barometer_ratings"],
                    followups=exported["followups"],
                    webhooks_pending=await self.store.outbox_about(conversation.id),
                )
            )

        return await self._handle(request, work)

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_document())

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
            return _model(StatsOut.model_validate(figures))

        return await self._handle(request, work)

    # -- web chat ------------------------------------------------------------------------
    async def demo_page(self, request: Request) -> Response:
        page = _static_text("index.html")
        key = self.demo_key or ""
        page = page.replace("{{WIDGET_KEY}}", html.escape(key, quote=True))
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
        )

    def static(self, name: str, media_type: str) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            return Response(
                _static_text(name),
                media_type=f"{media_type}; charset=utf-8",
                headers={
                    "cache-control": "public, max-age=300",
                    "x-content-type-options": "nosniff",
                },
            )

        return serve


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


# -- helpers ---------------------------------------------------------------------------------
def _static_text(name: str) -> str:
    return (resources.files("bot.channels") / "static" / name).read_text(encoding="utf-8")


def _too_large() -> ApiError:
    return ApiError(
        413, "body_too_large", f"Corps de requête trop gros ({MAX_BODY_BYTES} octets au plus)."
    )


def _not_found() -> ApiError:
    return ApiError(404, "conversation_not_found", "Conversation inconnue (ou effacée).")


#: pydantic's messages are English: the ones a client can meet, in French.
_FRENCH_ERRORS = {
    "string_type": "une chaîne de caractères est attendue",
    "string_too_short": "la valeur ne doit pas être vide",
    "string_too_long": "la valeur est trop longue",
    "string_pattern_mismatch": "1 à 64 caractères parmi A-Z a-z 0-9 _ - sont attendus",
    "missing": "champ obligatoire manquant",
    "model_type": "un objet JSON est attendu",
    "model_attributes_type": "un objet JSON est attendu",
}


def _validation_error(exc: ValidationError) -> ApiError:
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            return ApiError(422, "unknown_field", f"Champ inconnu : « {where} ».")
        if error["type"] == "string_too_long" and where == "text":
            return ApiError(
                422,
                "text_too_long",
                f"Le texte dépasse {MAX_TEXT_LENGTH} caractères : raccourcissez-le.",
            )
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    detail = _FRENCH_ERRORS.get(first["type"]) or first["msg"].removeprefix("Value error, ")
    return ApiError(
        422, "invalid_request", f"Requête invalide{f' ({where})' if where else ''} : {detail}."
    )


def _offered(turn: Turn) -> tuple[str, ...]:
    return tuple(choice.id for reply in turn.replies for choice in reply.choices)


def _iso(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="milliseconds")


def _reply_out(reply: Reply) -> ReplyOut:
    image = alt = None
    if reply.image is not None:
        image = "data:image/png;base64," + base64.b64encode(reply.image.png).decode()
        alt = reply.image.alt
    return ReplyOut(
        text=reply.text,
        choices=[ChoiceOut(id=c.id, label=c.label) for c in reply.choices],
        image_url=image,
        image_alt=alt,
    )


def _turn_out(turn: Turn) -> TurnOut:
    rec = turn.recommendation
    recommendation = None
    if rec is not None:
        recommendation = RecommendationOut(
            roles=[
                RoleOut(
                    id=role.id,
                    title=role.title,
                    definition=role.definition,
                    reasons=list(role.reasons),
                    first_steps=list(role.first_steps),
                )
                for role in rec.roles
            ],
            contacts=[ContactOut.model_validate(contact.to_dict()) for contact in rec.contacts],
            territory=rec.territory,
        )
    return TurnOut(
        replies=[_reply_out(reply) for reply in turn.replies],
        node=turn.session.node,
        recommendation=recommendation,
        understood=dict(turn.understood),
    )


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


def _transcript_entry(line: TranscriptLine) -> TranscriptEntry:
    return TranscriptEntry(
        at=_iso(line.at),
        author="person" if line.author == "person" else "bot",
        text=line.body.get("text"),
        choice=line.body.get("choice"),
        choices=[ChoiceOut.model_validate(c) for c in line.body.get("choices", [])],
    )


# -- OpenAPI ---------------------------------------------------------------------------------
# Every example below is validated against its schema by tests/test_api_schema.py.
_CID = "conv_5f0c2a9e8b7d4c3a1e6f0b9d8c7a6e5f"
_WELCOME: dict[str, Any] = {
    "text": "Bonjour, je suis Passerelle…",
    "choices": [],
    "image_url": None,
    "image_alt": None,
}
_FIRST_QUESTION: dict[str, Any] = {
    "text": "Pour commencer, qui êtes-vous ?",
    "choices": [
        {"id": "patient", "label": "Je vis avec une maladie ou un handicap"},
        {"id": "proche", "label": "J'accompagne un proche malade"},
    ],
    "image_url": None,
    "image_alt": None,
}
_CONTACT: dict[str, Any] = {
    "id": "partenariat_en_sante_occitanie",
    "name": "Centre Opérationnel du Partenariat en Santé (COPS) Occitanie",
    "description": "Fait vivre le partenariat en santé en Occitanie.",
    "website": "https://www.partenariat-en-sante.org",
    "territories": ["fr-occitanie"],
    "roles": ["patient_partenaire_formateur"],
    "phone": None,
    "email": None,
}
_RECOMMENDED: dict[str, Any] = {
    "replies": [
        {"text": "Merci pour vos réponses. Voici les rôles…", "choices": [],
         "image_url": None, "image_alt": None},
        {"text": "Que souhaitez-vous faire maintenant ?", "image_url": None, "image_alt": None,
         "choices": [{"id": "cmd:relation", "label": "Être mis en relation"},
                     {"id": "cmd:recommencer", "label": "Recommencer"}]},
    ],
    "node": "recommendation",
    "recommendation": {
        "roles": [{
            "id": "patient_partenaire_formateur",
            "title": "Patient partenaire formateur",
            "definition": "Vous participez à la formation des étudiants et des professionnels.",
            "reasons": ["Vous souhaitez former les futurs soignants."],
            "first_steps": ["Renseignez-vous auprès de la faculté de santé près de chez vous."],
        }],
        "contacts": [_CONTACT],
        "territory": "fr-occitanie",
    },
    "understood": {"profile": "patient", "experience": "chronique", "country": "fr",
                   "region": "occitanie", "territory": "fr-occitanie"},
}  # fmt: skip
_NEXT_QUESTION: dict[str, Any] = {
    "replies": [{"text": "Quelle est votre situation de santé ?", "image_url": None,
                 "image_alt": None,
                 "choices": [{"id": "chronique", "label": "Maladie chronique"}]}],
    "node": "situation",
    "recommendation": None,
    "understood": {"profile": "patient"},
}  # fmt: skip
_CONVERSATION: dict[str, Any] = {
    "conversation_id": _CID,
    "context": "chu-exemple",
    "node": "situation",
    "kb_version": "1.2.0",
    "created_at": "2026-11-23T10:12:00.000+00:00",
    "updated_at": "2026-11-23T10:12:09.000+00:00",
    "answers": [{"question": "profil", "choice": "patient"}],
    "transcript": [
        {"at": "2026-11-23T10:12:00.000+00:00", "author": "bot",
         "text": "Pour commencer, qui êtes-vous ?", "choice": None,
         "choices": [{"id": "patient", "label": "Je vis avec une maladie ou un handicap"}]},
        {"at": "2026-11-23T10:12:09.000+00:00", "author": "person", "text": None,
         "choice": "patient", "choices": []},
    ],
    "session": {"node": "situation", "answers": [["profil", "patient"]]},
    "barometer_ratings": [],
    "followups": [],
    "webhooks_pending": [],
}  # fmt: skip
_ROW: dict[str, Any] = {
    "id": "patient_partenaire_formateur",
    "label": "Patient partenaire formateur",
    "count": 12,
}
_STATS: dict[str, Any] = {
    "since": "2026-01-01", "context": "chu-exemple", "k": 5,
    "conversations": 140, "completed": 96, "completion_rate": 0.69,
    "funnel": [{"id": "profil", "label": "Qui êtes-vous ?", "count": 140}],
    "dropoff": [{"id": "situation", "label": "Votre situation", "count": None}],
    "roles": [_ROW], "territories": [{"id": "fr-occitanie", "label": "Occitanie", "count": 80}],
    "outcomes": [{"id": "contact", "label": "Mise en relation demandée", "count": 21}],
    "followup_by_role": [{"id": "patient_partenaire_formateur",
                          "label": "Patient partenaire formateur",
                          "answered": 9, "reached": 6, "share_reached": 0.67}],
    "followup_by_context": [],
}  # fmt: skip
_EVENTS: dict[str, dict[str, Any]] = {
    "contact.requested": {
        "type": "contact.requested",
        "timestamp": "2026-11-23T10:15:00+00:00",
        "data": {
            "establishments": ["chu-exemple"],
            "contacts": ["partenariat_en_sante_occitanie"],
            "roles": ["patient_partenaire_formateur"],
            "territory": "fr-occitanie",
            "context": "chu-exemple",
            "how_to_reach": "par courriel, le soir : camille@example.org",
            "consent": True,
            "kb_version": "1.2.0",
            "establishment": "chu-exemple",
            "conversation_id": _CID,
        },
    },
    "conversation.completed": {
        "type": "conversation.completed",
        "timestamp": "2026-11-23T10:14:00+00:00",
        "data": {
            "roles": ["patient_partenaire_formateur"],
            "territory": "fr-occitanie",
            "context": "chu-exemple",
            "kb_version": "1.2.0",
            "establishment": "chu-exemple",
        },
    },
}
_EVENT_SUMMARIES = {
    "contact.requested": "Une personne demande à être recontactée (après son consentement).",
    "conversation.completed": "Une conversation est arrivée à sa recommandation (anonyme).",
}
#: (status, error code, message) of each documented error, with an example per code.
_ERRORS: dict[str, list[tuple[ErrorCode, str]]] = {
    "400": [("invalid_json", "Le corps de la requête n'est pas du JSON valide.")],
    "401": [("unauthorized", "Clé d'API inconnue ou révoquée.")],
    "403": [
        ("forbidden", "Les statistiques ne se lisent qu'avec une clé secrète (psk_…), jamais "
         "avec la clé publique du chat web."),
        ("forbidden_context", "Le contexte « chu-autre » n'appartient pas à l'établissement de "
         "cette clé (permis : chu-exemple)."),
    ],
    "404": [("conversation_not_found", "Conversation inconnue (ou effacée).")],
    "408": [("request_timeout", "Corps de requête reçu trop lentement (30 s au plus).")],
    "413": [("body_too_large", f"Corps de requête trop gros ({MAX_BODY_BYTES} octets au plus).")],
    "422": [
        ("unknown_field", "Champ inconnu : « texte »."),
        ("text_too_long", f"Le texte dépasse {MAX_TEXT_LENGTH} caractères : raccourcissez-le."),
        ("unknown_choice", "Ce choix n'est pas proposé à cette étape de la conversation : "
         "utilisez un « id » des derniers choix reçus."),
        ("invalid_request", "Requête invalide : donnez soit « text », soit « choice » "
         "(un seul des deux)."),
    ],
    "429": [("rate_limited",
             "Trop de requêtes pour cette clé : réessayez dans quelques secondes.")],
    "500": [("internal_error", "Erreur interne, réessayez plus tard.")],
}  # fmt: skip

_CREATED: dict[str, Any] = {
    "conversation_id": _CID,
    "conversation_secret": None,
    "node": "profil",
    "recommendation": None,
    "replies": [_WELCOME, _FIRST_QUESTION],
}

_OPENAPI: dict[str, Any] | None = None


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/api/v1`` and of its webhooks, generated from the
    models that also build every answer and every delivery."""
    global _OPENAPI
    if _OPENAPI is not None:
        return _OPENAPI
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (NewConversation, "validation"),
        (NewMessage, "validation"),
        (ConversationCreated, "serialization"),
        (TurnOut, "serialization"),
        (ConversationOut, "serialization"),
        (StatsOut, "serialization"),
        (ErrorOut, "serialization"),
        *[(model, "serialization") for model in EVENT_MODELS.values()],
    ]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas = top.get("$defs", {})

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def content(name: str, **examples: Any) -> dict[str, Any]:
        media: dict[str, Any] = {"schema": ref(name)}
        if examples:
            media["examples"] = {key: {"value": value} for key, value in examples.items()}
        return {"application/json": media}

    def error(status: str, description: str, codes: Sequence[ErrorCode] = ()) -> dict[str, Any]:
        known = [(c, m) for c, m in _ERRORS[status] if not codes or c in codes]
        examples = {code: {"error": {"code": code, "message": msg}} for code, msg in known}
        listed = ", ".join(f"`{code}`" for code, _ in known)
        return {"description": f"{description} (code {listed}).", "content": content(
            "ErrorOut", **examples)}  # fmt: skip

    def body(name: str, required: bool = True, **examples: Any) -> dict[str, Any]:
        return {"required": required, "content": content(name, **examples)}

    common = {
        "401": error("401", "Clé manquante, inconnue ou révoquée"),
        "429": {
            **error("429", "Trop de requêtes pour cette clé"),
            "headers": {
                "Retry-After": {
                    "description": "Secondes à attendre.",
                    "schema": {"type": "integer"},
                }
            },
        },
        "500": error("500", "Erreur interne du serveur ; réessayez plus tard"),
    }
    conversation_id = {
        "name": "conversation_id",
        "in": "path",
        "required": True,
        "description": "L'identifiant reçu à la création (`conv_…`).",
        "schema": {"type": "string"},
        "example": _CID,
    }
    conversation_secret = {
        "name": "X-Conversation-Secret",
        "in": "header",
        "required": False,
        "description": "Avec une clé de chat web (pwk_…) : le conversation_secret reçu à la "
        "création (sans lui, ou avec un autre, la conversation est introuvable : 404).",
        "schema": {"type": "string"},
        "example": "pcs_4nq0Zb3m1T8yVwK2rXo5sLd9eHcUjP7f6aGiYtBzQkM",
    }
    bad_body = {
        "400": error("400", "Corps qui n'est pas du JSON valide"),
        "408": error("408", "Corps reçu trop lentement (PASSERELLE_BODY_TIMEOUT)"),
        "413": error("413", "Corps de plus de 16 Kio"),
    }
    not_found = {
        "404": error(
            "404",
            "Conversation inconnue, effacée, d'un autre établissement, ou (clé de chat web) "
            "sans son secret",
        ),
    }
    webhooks = {
        kind: {
            "post": {
                "operationId": "webhook_" + kind.replace(".", "_"),
                "summary": _EVENT_SUMMARIES[kind],
                "description": "Signé selon Standard Webhooks : en-têtes `webhook-id`, "
                "`webhook-timestamp`, `webhook-signature` (voir docs/integration.md).",
                "requestBody": body(model.__name__, example=_EVENTS[kind]),
                "responses": {
                    "2XX": {"description": "Reçu : l'événement ne sera plus envoyé."},
                    "default": {"description": "Autre réponse : nouvel essai plus tard."},
                },
            }
        }
        for kind, model in EVENT_MODELS.items()
    }
    _OPENAPI = {
        "openapi": "3.1.0",
        "info": {
            "title": "Passerelle — API de conversation",
            "version": "1.0.0",
            "description": "Converser avec le moteur d'orientation de Passerelle, et les "
            "événements qu'il envoie aux établissements (webhooks). Voir docs/integration.md.",
        },
        "servers": [{"url": API_PREFIX}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "webhooks": webhooks,
        "paths": {
            "/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "Statistiques d'usage anonymes du contexte de la clé",
                    "parameters": [
                        {
                            "name": "since",
                            "in": "query",
                            "required": False,
                            "description": "Date de début (AAAA-MM-JJ).",
                            "schema": {"type": "string", "format": "date"},
                            "example": "2026-01-01",
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Les chiffres du contexte de l'appelant seulement.",
                            "content": content("StatsOut", stats=_STATS),
                        },
                        "404": {
                            "description": "Statistiques non disponibles sur ce serveur "
                            "(code `not_found`).",
                            "content": content(
                                "ErrorOut",
                                not_found={
                                    "error": {
                                        "code": "not_found",
                                        "message": "Statistiques non disponibles sur ce serveur.",
                                    }
                                },
                            ),
                        },
                        "422": {
                            "description": "Date « since » invalide (code `invalid_request`).",
                            "content": content(
                                "ErrorOut",
                                invalid_request={
                                    "error": {
                                        "code": "invalid_request",
                                        "message": "« since » doit être une date AAAA-MM-JJ.",
                                    }
                                },
                            ),
                        },
                        "403": error(
                            "403",
                            "Clé de chat web (publique) : statistiques refusées",
                            ("forbidden",),
                        ),
                        **common,
                    },
                }
            },
            "/conversations": {
                "post": {
                    "operationId": "createConversation",
                    "summary": "Commencer une conversation",
                    "requestBody": body(
                        "NewConversation", required=False, context={"context": "chu-exemple"}
                    ),
                    "responses": {
                        "201": {
                            "description": "Conversation créée, avec les premiers messages.",
                            "headers": {
                                "Location": {
                                    "description": "L'adresse de la conversation.",
                                    "schema": {"type": "string"},
                                }
                            },
                            "content": content(
                                "ConversationCreated",
                                created=_CREATED,
                                widget={
                                    **_CREATED,
                                    "conversation_secret": "pcs_4nq0Zb3m1T8yVwK2rXo5sLd9eHcUjP7"
                                    "f6aGiYtBzQkM",
                                },
                            ),
                            "links": {
                                "SendMessage": {
                                    "operationId": "sendMessage",
                                    "parameters": {
                                        "conversation_id": "$response.body#/conversation_id"
                                    },
                                },
                                "GetConversation": {
                                    "operationId": "getConversation",
                                    "parameters": {
                                        "conversation_id": "$response.body#/conversation_id"
                                    },
                                },
                            },
                        },
                        "403": error(
                            "403",
                            "Contexte d'un autre établissement que celui de la clé",
                            ("forbidden_context",),
                        ),
                        **bad_body,
                        "422": error(
                            "422",
                            "Champ inconnu ou contexte invalide",
                            ("unknown_field", "invalid_request"),
                        ),
                        **common,
                    },
                }
            },
            "/conversations/{conversation_id}/messages": {
                "post": {
                    "operationId": "sendMessage",
                    "summary": "Envoyer un texte ou un choix",
                    "parameters": [conversation_id, conversation_secret],
                    "requestBody": body(
                        "NewMessage",
                        choice={"choice": "patient"},
                        text={"text": "je suis aidante de ma mère"},
                    ),
                    "responses": {
                        "200": {
                            "description": "Les réponses du moteur ; `recommendation` n'est "
                            "rempli qu'au tour où la recommandation est faite (null ensuite).",
                            "content": content(
                                "TurnOut", question=_NEXT_QUESTION, recommendation=_RECOMMENDED
                            ),
                        },
                        **bad_body,
                        "422": error("422", "Message refusé"),
                        **not_found,
                        **common,
                    },
                }
            },
            "/conversations/{conversation_id}": {
                "get": {
                    "operationId": "getConversation",
                    "summary": "L'état et la transcription conservés",
                    "parameters": [conversation_id, conversation_secret],
                    "responses": {
                        "200": {
                            "description": "La conversation, et tout ce qui est conservé à "
                            "son sujet (droit d'accès).",
                            "content": content("ConversationOut", conversation=_CONVERSATION),
                        },
                        **not_found,
                        **common,
                    },
                },
                "delete": {
                    "operationId": "deleteConversation",
                    "summary": "Effacer la conversation (état, transcription, webhooks en attente)",
                    "parameters": [conversation_id, conversation_secret],
                    "responses": {
                        "204": {"description": "Effacée."},
                        **not_found,
                        **common,
                    },
                },
            },
        },
    }
    return _OPENAPI
