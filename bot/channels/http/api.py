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

import contextlib
import dataclasses
import datetime as dt
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Never, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from bot.adapters.webhooks import route
from bot.app.choices import ChoiceIds
from bot.app.conversation import ConversationService, Step
from bot.app.identity import Identity, pseudonym
from bot.app.ordering import KeyedQueues
from bot.app.outbox import EventRouter
from bot.app.privacy import erase_conversation, features_export
from bot.app.reload import EngineHolder, holder_of
from bot.channels.http.auth import KeyCheck, allowed_context, owned
from bot.channels.http.body import Model, read_body
from bot.channels.http.cors import CORS
from bot.channels.http.errors import (
    ApiError,
    error_response,
    http_exception,
    json_response,
    model_response,
    not_found,
    server_error,
)
from bot.channels.http.openapi import openapi_document
from bot.channels.http.ratelimit import RateLimiter
from bot.channels.http.schemas import (
    API_PREFIX,
    Answer,
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
from bot.engine.flow import Engine, Turn
from bot.engine.session import Input, Session
from bot.json_types import JsonObject
from bot.knowledge.establishments import Establishment
from bot.storage.base import (
    ApiKey,
    CodeTaken,
    Conversation,
    IntegrationStore,
    OutboxEvent,
    TranscriptLine,
    hash_key,
    new_id,
)

if TYPE_CHECKING:
    from bot.app.features import Features

T = TypeVar("T")
SECRET_PREFIX = "pcs_"
#: How many times a turn is planned when its new barometer group's code keeps being taken.
CODE_ATTEMPTS = 3


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
        self._authenticate = KeyCheck(store, self.limiter, demo_key, key_cache_seconds)
        # Requests of one conversation one after the other (as Telegram's chats).
        self._order: KeyedQueues[Never] = KeyedQueues(max_concurrency=100_000)
        # The conversation row is the API's state: the service runs the engine, the features
        # and the routing; the row, its transcript and the events are saved in one.
        router = EventRouter(self.establishments, route, lambda: self.engine.kb)
        self.service = ConversationService(
            self.holder, features=features, router=router, commits_to=store
        )
        # What a client may send as a choice: the last turn's, or a command (as on Telegram).
        self.choices = ChoiceIds(self.holder)

    @property
    def engine(self) -> Engine:
        """The engine of the current knowledge base (swapped on reload): read it per request."""
        return self.holder.engine

    def member(self, conversation_id: str) -> str:
        """The pseudonymous key of an API conversation for the barometer and its erasure."""
        return pseudonym(self.secret, "api", conversation_id)

    def identity(self, conversation_id: str, establishment: str) -> Identity:
        return Identity(
            "api", self.member(conversation_id), owner=establishment, subject=conversation_id
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

    async def _body(self, request: Request, model: type[Model], empty_ok: bool) -> Model:
        return await read_body(request, model, empty_ok=empty_ok, deadline=self.body_timeout)

    async def _in_turn(self, conversation_id: str, work: Callable[[], Awaitable[T]]) -> T:
        """One turn of a conversation at a time: in this process (the ordering), then across
        instances sharing the store (PostgreSQL: an advisory lock; SQLite: nothing more)."""

        async def turn() -> T:
            async with self.store.conversation_turn(conversation_id):
                return await work()

        return await self._order.run(conversation_id, turn)

    async def _handle(self, request: Request, work: Callable[[], Awaitable[Response]]) -> Response:
        try:
            response = await work()
        except ApiError as exc:
            return error_response(exc)
        return response

    def _context(self, key: ApiKey, context: str | None) -> str | None:
        return allowed_context(self.establishments, key, context)

    async def _owned(self, request: Request, key: ApiKey, conversation_id: str) -> Conversation:
        return await owned(self.store, request, key, conversation_id)

    # -- endpoints -----------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        async def work() -> Response:
            key = await self._authenticate(request)
            body: NewConversation = await self._body(request, NewConversation, empty_ok=True)
            context = self._context(key, body.context)
            conversation_id = new_id("conv_")
            step = await self.service.begin(
                self.identity(conversation_id, key.establishment), context
            )
            turn = step.turn
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
            events = _events(step)
            await self.store.save_turn(
                conversation,
                created=True,
                lines=_bot_lines(turn, now),
                events=events,
                features=step.features,
            )
            await self.service.committed(step)
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

            async def once() -> tuple[Turn, list[OutboxEvent]]:
                conversation = await self._owned(request, key, conversation_id)
                session = Session.from_dict(conversation.session)
                now = time.time()
                person: JsonObject
                if body.choice is not None:
                    if not self.choices.accepts(body.choice, conversation.offered):
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
                identity = self.identity(conversation.id, conversation.establishment)
                step = await self.service.step(identity, session, event)
                turn = step.turn
                updated = dataclasses.replace(
                    conversation,
                    session=turn.session.to_dict(),
                    offered=_offered(turn),
                    updated_at=now,
                )
                events = _events(step)
                lines = [TranscriptLine(now, "person", person), *_bot_lines(turn, now)]
                await self.store.save_turn(
                    updated, created=False, lines=lines, events=events, features=step.features
                )
                await self.service.committed(step)
                return turn, events

            async def in_turn() -> tuple[Turn, list[OutboxEvent]]:
                # A new barometer group's code taken by another turn since it was drawn:
                # nothing was written, the turn is planned again (with another code).
                for _ in range(CODE_ATTEMPTS - 1):
                    with contextlib.suppress(CodeTaken):
                        return await once()
                return await once()

            turn, events = await self._in_turn(conversation_id, in_turn)
            if events and self.on_events:
                self.on_events()
            return model_response(turn_out(turn))

        return await self._handle(request, work)

    async def conversation(self, request: Request) -> Response:
        async def work() -> Response:
            key = await self._authenticate(request)
            conversation_id = request.path_params["conversation_id"]
            if request.method == "DELETE":

                async def erase() -> None:
                    conversation = await self._owned(request, key, conversation_id)
                    member = self.member(conversation_id)
                    await erase_conversation(self.features, member, conversation.session)
                    if not await self.store.delete_conversation(conversation_id, key.establishment):
                        raise not_found()

                await self._in_turn(conversation_id, erase)
                return Response(status_code=204)
            conversation = await self._owned(request, key, conversation_id)
            lines = await self.store.transcript(conversation_id)
            session = Session.from_dict(conversation.session)
            exported = await features_export(self.features, self.member(conversation.id))
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


def _events(step: Step) -> list[OutboxEvent]:
    return [entry for entry in step.outbox if isinstance(entry, OutboxEvent)]
