"""Where the person lives, and what that changes: the country whose rules hold, the choices
offered there, the next question, and who can receive a request to be put in touch.

Pure: no I/O. The channels feed :func:`handoff_receivers` with the deployment's establishments
(anything shaped like :class:`Receiver`), and the engine uses the same function, so what the
person is promised and where the request goes can never differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from bot.knowledge.model import COUNTRY_FACT, Choice, KnowledgeBase, Question


def holds(condition: dict[str, list[str]] | None, facts: dict[str, str]) -> bool:
    return all(facts.get(fact) in values for fact, values in (condition or {}).items())


def territory_chain(kb: KnowledgeBase, territory: str | None) -> list[str]:
    """``fr-occitanie`` -> ``["fr-occitanie", "fr"]``: most specific first."""
    chain: list[str] = []
    while territory and territory in kb.territories and territory not in chain:
        chain.append(territory)
        territory = kb.territories[territory].parent
    return chain


def country_of(kb: KnowledgeBase, facts: dict[str, str]) -> str | None:
    """The person's country (``fr``, ``be``…), or ``None`` while it is not known yet."""
    territory = facts.get(kb.flow.territory_fact)
    if territory in kb.territories:
        return kb.territories[str(territory)].country
    country = facts.get(COUNTRY_FACT)
    countries = {t.country for t in kb.territories.values()}
    return country if country in countries else None


def holds_in(countries: Sequence[str], country: str | None) -> bool:
    """Whether a statement marked for ``countries`` (empty: everywhere) may be told here.

    A marked statement is never told while the country is unknown: ``kb check`` makes sure
    the flow asks the country before any marked choice or question."""
    return not countries or (country is not None and country in countries)


def offered(choice: Choice, country: str | None) -> bool:
    """A choice marked for some countries is offered only there; while the country is still
    unknown every choice is offered (``kb check`` refuses marked choices at that point)."""
    return not choice.countries or country is None or country in choice.countries


def next_target(question: Question, choice: Choice, facts: dict[str, str]) -> str | None:
    """The choice's own ``next``, else the first ``next_when`` that holds, else ``next``."""
    if choice.next:
        return choice.next
    for branch in question.next_when:
        if holds(branch.when, facts):
            return branch.next
    return question.next


class Receiver(Protocol):
    """What the hand-off needs to know of an establishment (``bot.knowledge.establishments``)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def contexts(self) -> tuple[str, ...]: ...

    @property
    def territories(self) -> tuple[str, ...]: ...

    @property
    def webhook_url(self) -> str | None: ...


def receives(
    receiver: Receiver, context: str | None, territories: Iterable[str], owner: str | None = None
) -> bool:
    """Whether ``receiver`` is concerned by a conversation: it owns it (its API key created it),
    the conversation's context is one of its own, or it serves the territory (or a parent)."""
    if owner is not None and receiver.id == owner:
        return True
    if context is not None and (context == receiver.id or context in receiver.contexts):
        return True
    return bool(set(receiver.territories).intersection(territories))


R = TypeVar("R", bound=Receiver)


def handoff_receivers(
    receivers: Iterable[R],
    *,
    context: str | None,
    territories: Iterable[str],
    owner: str | None = None,
) -> tuple[R, ...]:
    """The establishments a ``contact.requested`` of this conversation would reach: those with
    a webhook that are concerned by it. Empty: nobody would receive a request, so none may be
    offered or promised."""
    places = tuple(territories)
    return tuple(
        r for r in receivers if r.webhook_url is not None and receives(r, context, places, owner)
    )


def asked_after_the_country(kb: KnowledgeBase) -> frozenset[str]:
    """The questions (and ``recommendation``) the flow only reaches once the country is known:
    a session carried over from an older flow that sits there without a country must be asked
    it first."""
    arrivals: dict[str, set[bool]] = {}
    todo: list[tuple[str, bool]] = [(kb.flow.start, False)]
    while todo:
        node, known = todo.pop()
        if known in arrivals.setdefault(node, set()):
            continue
        arrivals[node].add(known)
        question = kb.questions.get(node)
        if question is None:
            continue
        for choice in question.choices:
            after = (
                known
                or question.fact == COUNTRY_FACT
                or choice.sets.get(kb.flow.territory_fact) in kb.territories
            )
            targets = [choice.next] if choice.next else [b.next for b in question.next_when]
            if not choice.next and question.next:
                targets.append(question.next)
            todo += [(t, after) for t in targets if t]
    return frozenset(node for node, seen in arrivals.items() if seen == {True})


def country_question(kb: KnowledgeBase) -> str | None:
    """The question that asks the country, if the flow has one."""
    return next((qid for qid, q in kb.questions.items() if q.fact == COUNTRY_FACT), None)
