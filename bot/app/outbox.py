"""Event routing, once for every channel: which establishments an engine event goes to.

The rule itself (who is concerned: owner, contexts, territories, the person's choice for a
contact request) is :func:`bot.adapters.webhooks.route`, handed in by the composition root so
that this layer imports no HTTP client. The entries come back to the service, which writes them
in the same transaction as the turn (the durable webhook outbox); the worker sends them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from bot.engine.recommendation import territory_chain
from bot.engine.replies import Event
from bot.json_types import as_text
from bot.storage.base import OutboxEvent

if TYPE_CHECKING:
    from bot.knowledge.establishments import Establishment
    from bot.knowledge.model import KnowledgeBase


class RoutingRule(Protocol):
    """The shape of :func:`bot.adapters.webhooks.route`."""

    def __call__(
        self,
        event: Event,
        establishments: Mapping[str, Establishment],
        *,
        owner: str | None = ...,
        subject: str | None = ...,
        territories: Iterable[str] = ...,
    ) -> Sequence[OutboxEvent]: ...


class EventRouter:
    """Outbox entries for a turn's events; ``kb()`` is the current knowledge base (territory
    parents change with a reload)."""

    def __init__(
        self,
        establishments: Mapping[str, Establishment],
        rule: RoutingRule,
        kb: Callable[[], KnowledgeBase],
    ) -> None:
        self.establishments = dict(establishments)
        self.rule = rule
        self.kb = kb

    def route(
        self,
        events: Sequence[Event],
        *,
        owner: str | None = None,
        subject: str | None = None,
        conversation: str | None = None,
    ) -> tuple[OutboxEvent, ...]:
        """Entries for ``events``. ``subject`` is kept beside each entry (never sent) so the
        person's erasure also removes undelivered payloads; ``conversation`` (an API
        conversation id) is what only the owner may receive with a contact request."""
        if not self.establishments or not events:
            return ()
        kb = self.kb()
        entries: list[OutboxEvent] = []
        for event in events:
            chain = territory_chain(kb, as_text(event.data.get("territory")))
            for entry in self.rule(
                event,
                self.establishments,
                owner=owner,
                subject=conversation,
                territories=chain,
            ):
                if subject is not None and subject != conversation:
                    entry = dataclasses.replace(entry, subject=subject)
                entries.append(entry)
        return tuple(entries)
