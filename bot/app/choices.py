"""The choice ids a conversation is sent, defined once for every channel.

:class:`ChoiceIds` follows the engine of the current knowledge base (rebuilt after a reload):
:attr:`~ChoiceIds.known` is every id the engine puts on a button (Telegram finds among them the
long ones it sent as a hash); :attr:`~ChoiceIds.anytime` the commands accepted at any step,
whatever the last message offered: the engine's commands, the contact request, the side modes
of that engine (the barometer; the follow-up where the channel can write first).
(``known`` also holds the buttons only the current step shows: « passer », « ce n'est pas
ça », a place, a lead wish, a glossary term, the barometer's and the follow-up's answers.)

:meth:`ChoiceIds.accepts` is the rule: a choice the last message offered, or a command. An old
button or a foreign id is refused and changes nothing; each channel says so its own way (the
API answers 422 ``unknown_choice``; Telegram asks the current question again). Telegram
does not know what its older messages offered: the engine judges a button by the question it
was on, and a command no button carries (:meth:`ChoiceIds.unknown_command`) is refused there
as it is on the API.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from bot.app.reload import EngineHolder, holder_of
from bot.engine.barometer import choice_ids as barometer_choice_ids
from bot.engine.base import LEAD, NOT_THAT, PLACE, RELATION, SKIP
from bot.engine.flow import CANCEL, CMD, CONFIRM, RESUME, TERM, Engine
from bot.engine.followup import NAME as FOLLOWUP
from bot.engine.followup import NO as FOLLOWUP_NO
from bot.engine.followup import YES as FOLLOWUP_YES
from bot.knowledge.model import COMMANDS


@dataclass(frozen=True)
class _Sets:
    engine: Engine
    known: frozenset[str]
    anytime: frozenset[str]
    by_key: dict[str, str]


class ChoiceIds:
    """The sets of the current engine; ``key`` (a channel's short form of an id, Telegram's
    hash) indexes :attr:`known` for :meth:`lookup`."""

    def __init__(
        self, engine: Engine | EngineHolder, key: Callable[[str], str] | None = None
    ) -> None:
        self.holder = holder_of(engine)
        self.key = key
        self._sets: _Sets | None = None

    def _current(self) -> _Sets:
        engine = self.holder.engine
        if self._sets is None or self._sets.engine is not engine:  # a reload swapped it
            self._sets = self._build(engine)
        return self._sets

    def _build(self, engine: Engine) -> _Sets:
        kb = engine.kb
        anytime = frozenset(CMD + name for name in (*COMMANDS, RELATION, *engine.modes))
        answers = {c.id for q in kb.questions.values() for c in q.choices}
        known = answers | anytime | {LEAD, *(LEAD + a for a in answers)}
        known |= {TERM + term for term in kb.glossary}
        known |= {PLACE + place for place in engine.understanding.places}
        known |= {CONFIRM, CANCEL, RESUME, SKIP, NOT_THAT, *barometer_choice_ids(kb)}
        known |= {CMD + FOLLOWUP, FOLLOWUP_YES, FOLLOWUP_NO}
        by_key = {self.key(i): i for i in sorted(known)} if self.key is not None else {}
        return _Sets(engine, frozenset(known), anytime, by_key)

    @property
    def known(self) -> frozenset[str]:
        return self._current().known

    @property
    def anytime(self) -> frozenset[str]:
        return self._current().anytime

    def accepts(self, choice: str, offered: Collection[str]) -> bool:
        """Whether ``choice`` may be sent now: offered by the last message, or a command."""
        return choice in offered or choice in self.anytime

    def unknown_command(self, choice: str) -> bool:
        """A command id no button of this base carries (a forged or foreign one): refused
        wherever it comes from (other ids are judged against the question they answer)."""
        return choice.startswith(CMD) and choice not in self.known

    def lookup(self, key: str) -> str | None:
        """The known id whose ``key`` this is (``None``: none, an old or foreign button)."""
        return self._current().by_key.get(key)
