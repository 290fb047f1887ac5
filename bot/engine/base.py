"""What every part of the engine shares: the ids of its own buttons, :class:`Turn`, the
:class:`Mode` contract, and small helpers on choices and sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bot.engine.replies import Event, Recommendation, Reply
from bot.engine.session import Input, Session
from bot.engine.understanding import Reading
from bot.knowledge.model import Choice as Option
from bot.knowledge.model import Question

if TYPE_CHECKING:
    from bot.engine.flow import Engine

#: Messages longer than this are not analysed at all (they are answered kindly).
MAX_TEXT_LENGTH = 2000

CMD = "cmd:"
TERM = "term:"
CONFIRM = "cmd:confirmer"
CANCEL = "cmd:annuler"
RESUME = "cmd:reprendre"
RELATION = "relation"
PLACE = "place:"
NOT_THAT = "cmd:pas_ca"
SKIP = "cmd:passer"
#: « which comes first? » buttons: ``lead:<choice id>``, ``lead:`` for « they weigh the same ».
LEAD = "lead:"
#: How close (rapidfuzz WRatio) a choice must be to be offered as « Vouliez-vous dire … ? ».
CLOSEST_CUTOFF = 60.0
#: Longest "how to reach me" text kept for a contact request.
MAX_CONTACT_HOW = 500


@dataclass(frozen=True)
class Turn:
    """The engine's answer to one input."""

    replies: tuple[Reply, ...]
    session: Session
    recommendation: Recommendation | None = None
    events: tuple[Event, ...] = field(default=())
    #: The facts the bot holds now (fact name -> value id, plus ``condition`` and ``place``).
    understood: dict[str, str] = field(default_factory=dict)

    @property
    def node(self) -> str:
        return self.session.node

    def to_dict(self) -> dict[str, object]:
        return {
            "replies": [reply.to_dict() for reply in self.replies],
            "node": self.session.node,
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
            "understood": dict(self.understood),
        }


def owner_of(session: Session) -> str | None:
    return session.owner


class Mode(Protocol):
    """A side conversation with its own steps (e.g. the barometer), entered by a command.

    While ``session.mode == name`` every input goes to :meth:`handle`; the mode clears it to
    hand the conversation back to the orientation flow.
    """

    name: str
    words: frozenset[str]

    def handle(self, engine: Engine, session: Session, event: Input) -> Turn: ...


def has_choice(question: Question, choice_id: str) -> bool:
    return any(choice.id == choice_id for choice in question.choices)


def choice_of(question: Question, choice_id: str) -> Option:
    return next(choice for choice in question.choices if choice.id == choice_id)


def reads_more(reading: Reading, asked: str) -> bool:
    """Does the reading hold more than the answer to the asked question?"""
    return bool(
        reading.condition
        or reading.place
        or any(q != asked for q in reading.answers)
        or len(reading.answers.get(asked, [])) > 1
    )


def lower_first(value: str) -> str:
    return value[:1].lower() + value[1:] if value[:2] != value[:2].upper() else value


def named_condition(session: Session) -> str | None:
    """The condition the person named (an id of ``lexique/conditions.yaml``), if any."""
    return session.condition


def all_key(fact: str) -> str:
    """The ``understood`` key listing every answer of a multiple-answer fact."""
    return "wishes" if fact == "wish" else f"{fact}_all"
