"""A person's rights, once for every channel: export what is kept, erase it, and the retention
that erases it anyway after a period of idleness — across every store (conversation state,
memory, features: statistics, barometer, follow-ups; the webhook outbox).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot.engine.flow import Engine
from bot.engine.session import EXITED, RECOMMENDED, Session
from bot.json_types import JsonObject, JsonValue, as_float, as_list, as_object, loads
from bot.knowledge.model import text
from bot.storage.base import Storage, UserChange

if TYPE_CHECKING:
    from bot.app.features import Features
    from bot.app.scheduler import Scheduler
    from bot.knowledge.establishments import Establishment

log = logging.getLogger(__name__)

#: How long ids of applied updates are kept to recognise a re-delivery (Telegram retries
#: a webhook for about a day).
PROCESSED_IDS_SECONDS = 2 * 86400
#: Sessions of people who did not consent are dropped from memory after this much idleness.
MEMORY_IDLE_DAYS = 1.0
#: Retention runs this often, over every store (the first time at start-up).
RETENTION_EVERY = 6 * 3600.0
#: Several instances on one database: the retention lease lasts this long (under the period,
#: so another instance takes over at the next run when the holder died).
RETENTION_LEASE = 3 * 3600.0


class IdleConversations(Protocol):
    """What retention needs of the API's conversation rows (``IntegrationStore``)."""

    async def purge_idle_conversations(self, idle_days: int) -> int: ...


def schedule_retention(
    scheduler: Scheduler, purge: Callable[[], Awaitable[object]], *, first: float = 0.0
) -> None:
    """The one retention job of a process (:meth:`Privacy.purge`), ``first`` seconds from
    now, then every :data:`RETENTION_EVERY` seconds."""
    scheduler.every("retention", RETENTION_EVERY, purge, first=first)


class OutboxAbout(Protocol):
    """What privacy needs of the webhook outbox (``IntegrationStore``)."""

    async def outbox_about(self, subject: str) -> list[JsonObject]: ...


@dataclass(frozen=True)
class Summary:
    """What ``/mesdonnees`` answers: lines in plain French, then the whole export as a file
    (``None`` when nothing is kept)."""

    lines: list[str]
    document: bytes | None


class Privacy:
    """Export, erasure and retention of a person across every store."""

    def __init__(
        self,
        storage: Storage,
        memory: Storage,
        *,
        features: Features | None = None,
        integration: OutboxAbout | None = None,
        retention_days: int = 180,
        establishments: Mapping[str, Establishment] | None = None,
        conversations: IdleConversations | None = None,
    ) -> None:
        self.storage = storage
        self.memory = memory
        self.features = features
        self.integration = integration
        #: The API's conversations, erased by the same retention run as the people here.
        self.conversations = conversations
        self.retention_days = retention_days
        self.establishments = dict(establishments or {})

    async def export(self, user: str) -> JsonObject:
        """Everything stored about ``user``, as JSON-safe data."""
        export: JsonObject = {"conversation": await self.storage.export_user(user)}
        if self.features is not None:
            export.update(await self.features.export_user(user))
        if self.integration is not None:
            export["webhooks_pending"] = [*await self.integration.outbox_about(user)]
        return export

    async def erase(self, user: str, session: Mapping[str, JsonValue] | None = None) -> UserChange:
        """Erase ``user`` from the features (with the statistics rows of ``session``, their
        conversation, as an API DELETE does) and memory now; the returned change erases the
        durable rows (and undelivered webhook payloads) with the turn's commit."""
        await erase_conversation(self.features, user, session)
        await self.memory.erase_user(user)
        return UserChange(erase=True)

    async def purge(self) -> int:
        """One retention run: erase people (and API conversations) idle past the retention
        period; forget ids of old applied updates; return how many were erased. Several
        instances: only the one holding the retention lease runs it."""
        if not await self.storage.lease("retention", RETENTION_LEASE):
            return 0
        erased = await self.storage.purge_idle(self.retention_days)
        await self.memory.purge_idle(MEMORY_IDLE_DAYS)
        await self.storage.inbox_prune(PROCESSED_IDS_SECONDS)
        log.info("retention: %d idle person(s) erased", erased)
        if self.conversations is not None:
            idle = await self.conversations.purge_idle_conversations(self.retention_days)
            if idle:
                log.info("retention: %d idle API conversations erased", idle)
            erased += idle
        return erased

    async def summary(self, engine: Engine, user: str, probe: Session) -> Summary:
        """A summary in plain French, then everything kept as a JSON file (dates readable)."""
        stored = await self.storage.export_user(user)
        export = await self.export(user)
        if not any(export.values()):
            return Summary([engine.msg("mydata_none", probe)], None)
        view = _View(engine, self.establishments)
        lines = [engine.msg("mydata_intro", probe)]
        if "consent" in stored:
            at = as_object(stored["consent"])["at"]
            lines.append(engine.msg("mydata_consent", probe, date=date(as_float(at))))
        if "session" in stored:
            lines += view.describe(Session.from_dict(as_object(stored["session"])))
        lines += view.describe_features(probe, export)
        if "session" in stored:
            lines.append(
                engine.msg(
                    "mydata_retention",
                    probe,
                    date=date(as_float(stored.get("updated_at", time.time()))),
                    days=str(self.retention_days),
                )
            )
        body = json.dumps(view.readable(export), ensure_ascii=False, indent=2, sort_keys=True)
        return Summary(["\n".join(lines)], body.encode())


async def erase_conversation(
    features: Features | None, member: str, session: Mapping[str, JsonValue] | None
) -> None:
    """A conversation erased (API DELETE, Telegram /oubli): first the features' rows
    (statistics included: no padding is left behind), before the caller deletes the
    conversation (which scrubs the disk)."""
    if features is not None:
        await features.erase_conversation(member, session)


async def features_export(features: Features | None, member: str) -> JsonObject:
    """The features' rows about ``member`` (empty lists without features)."""
    if features is None:
        return {"barometer_ratings": [], "followups": []}
    return await features.export_user(member)


class _View:
    """The export in words: the conversation's place and answers as the person read them."""

    def __init__(self, engine: Engine, establishments: Mapping[str, Establishment]) -> None:
        self.engine = engine
        self.establishments = establishments

    def readable(self, export: JsonObject) -> JsonValue:
        """All of it, with questions and answers in words beside their ids, dates readable."""
        conversation = as_object(export.get("conversation"))
        data = conversation.get("session")
        if isinstance(data, dict):
            session = Session.from_dict(data)
            kb = self.engine.kb
            answers: list[JsonValue] = []
            for question_id, choice_id in session.answers:
                asked = kb.questions.get(question_id)
                chosen = (
                    next((c for c in asked.choices if c.id == choice_id), None) if asked else None
                )
                answers.append(
                    {
                        "question": text(asked.text, session.lang) if asked else None,
                        "answer": text(chosen.label, session.lang) if chosen else None,
                        "question_id": question_id,
                        "answer_id": choice_id,
                    }
                )
            readable_session: JsonObject = {
                k: v for k, v in data.items() if k not in ("node", "answers")
            }
            readable_session |= {"where": self.where(session), "answers": answers}
            stopped = kb.questions.get(session.stopped_at or "")
            if stopped is not None:
                readable_session["stopped_at"] = text(stopped.text, session.lang)
            conversation["session"] = readable_session
        return readable({**export, "conversation": conversation})

    def where(self, session: Session) -> str:
        kb, msg = self.engine.kb, self.engine.msg
        if session.mode:
            return msg("mydata_node_mode", session)
        question = kb.questions.get(session.node)
        if question is not None:
            return msg("mydata_node_question", session, question=text(question.text, session.lang))
        if session.node == RECOMMENDED:
            return msg("mydata_node_recommended", session)
        if session.node == EXITED:
            return msg("mydata_node_exited", session)
        return msg("mydata_node_start", session)

    def describe(self, session: Session) -> list[str]:
        kb, msg = self.engine.kb, self.engine.msg
        lines = [msg("mydata_where", session, node=self.where(session))]
        if session.answers:
            lines.append(msg("mydata_answers", session))
        for question_id, choice_id in session.answers:
            asked = kb.questions.get(question_id)
            if asked is None:
                continue  # from an older version of the questions: in the file only
            label = next(
                (text(c.label, session.lang) for c in asked.choices if c.id == choice_id),
                choice_id,
            )
            lines.append(f"• {text(asked.text, session.lang)} → {label}")
        if session.context:
            name = session.context
            if session.context in self.establishments:
                name = self.establishments[session.context].name
            lines.append(msg("mydata_context", session, name=name))
        return lines

    def describe_features(self, session: Session, export: Mapping[str, JsonValue]) -> list[str]:
        msg = self.engine.msg
        lines: list[str] = []
        ratings = [as_object(r) for r in as_list(export.get("barometer_ratings"))]
        if ratings:
            groups = ", ".join(sorted({str(r.get("group")) for r in ratings if r.get("group")}))
            lines.append(msg("mydata_barometer", session, count=str(len(ratings)), groups=groups))
        for followup in map(as_object, as_list(export.get("followups"))):
            if followup.get("sent_at"):
                continue
            due = followup.get("due_at")
            if isinstance(due, int | float):
                lines.append(msg("mydata_followup", session, date=date(due)))
        pending = [
            e for e in map(as_object, as_list(export.get("webhooks_pending"))) if e.get("type")
        ]
        if pending:
            lines.append(msg("mydata_pending", session, count=str(len(pending))))
        return lines


def date(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%d/%m/%Y")


def _is_time_key(key: str) -> bool:
    return key == "at" or key.endswith("_at")


def readable(value: JsonValue, key: str = "") -> JsonValue:
    """The export as a person can read it: dates in ISO 8601 (UTC) instead of Unix seconds,
    JSON held as text (scores, roles) unfolded."""
    if isinstance(value, dict):
        return {k: readable(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool) and _is_time_key(key):
        moment = dt.datetime.fromtimestamp(value, dt.UTC).replace(microsecond=0)
        return moment.isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(ValueError):
            return readable(loads(value), key)
    return value
