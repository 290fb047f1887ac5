"""Which establishments receive an engine event, and the outbox entries for them: the one rule
of event routing (handed to :class:`bot.app.outbox.EventRouter` by the composition)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from bot.adapters.webhooks.payloads import payload
from bot.engine import events
from bot.engine.replies import Event
from bot.json_types import as_list
from bot.knowledge.establishments import Establishment
from bot.storage.base import OutboxEvent, new_id

#: Events an establishment can receive.
EVENT_TYPES = events.WEBHOOK_EVENTS


def route(
    event: Event,
    establishments: Mapping[str, Establishment],
    *,
    owner: str | None = None,
    subject: str | None = None,
    territories: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> list[OutboxEvent]:
    """One outbox entry per establishment concerned by ``event`` and having a webhook.

    An establishment is concerned when it owns the conversation (its API key created it), when
    the conversation's context is one of its contexts, or when the person's territory (or a
    parent of it, given in ``territories``) is one it serves. ``subject`` (an API conversation
    id) is kept beside the entry so erasing the conversation also erases undelivered payloads.

    Every event says which establishment's key created the conversation (``establishment``,
    ``null`` for Telegram). Only the owner receives the ``conversation_id`` of a contact
    request: another establishment gets nothing that could unlock the conversation.
    """
    if event.kind not in EVENT_TYPES:
        return []
    context = event.data.get("context")
    places = set(territories)
    if event.data.get("territory"):
        places.add(str(event.data["territory"]))
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    data = {**event.data, "establishment": owner}
    entries = []
    consented = event.data.get("establishments") if event.kind == events.CONTACT_REQUESTED else None
    for establishment in establishments.values():
        if establishment.webhook_url is None:
            continue
        if consented is not None and establishment.id not in as_list(consented):
            continue  # a contact request goes only where the person agreed to send it
        if establishment.id != owner and not establishment.serves(
            str(context) if context else None, places
        ):
            continue
        sent = data
        if (
            event.kind == events.CONTACT_REQUESTED
            and subject is not None
            and establishment.id == owner
        ):
            sent = {**data, "conversation_id": subject}  # only the owner may read it back
        entries.append(
            OutboxEvent(
                id=new_id("msg_"),
                establishment=establishment.id,
                event_type=event.kind,
                payload=payload(event.kind, stamp, sent),
                subject=subject,
            )
        )
    return entries
