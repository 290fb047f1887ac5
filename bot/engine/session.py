"""The conversation state and the inputs the engine accepts.

A :class:`Session` is a plain value: the engine never mutates one, it returns a new one. It
serialises to JSON-safe data so any storage can keep it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

NOT_STARTED = ""
RECOMMENDED = "recommendation"
EXITED = "exit"
#: The answer kept when a person does not know (« je ne sais pas », « passer »): the question
#: counts as answered and the recommendation treats the fact as unknown.
UNKNOWN = "inconnu"


class Pending(StrEnum):
    """A yes/no or short question the next input answers before the flow goes on. Stored as
    its value (« restart »…), the form older sessions already have."""

    RESTART = "restart"
    CONTACT_CONSENT = "contact_consent"
    CONTACT_HOW = "contact_how"
    CONTACT_CONFIRM = "contact_confirm"
    #: Several wishes whose order changes the first role: « which comes first? ».
    WISH_LEAD = "wish_lead"

    @classmethod
    def parse(cls, value: object) -> Pending | None:
        """The pending question of stored data; an unknown one (a newer or older version)
        is dropped, so the person is simply asked where they stand."""
        try:
            return cls(str(value)) if value else None
        except ValueError:
            return None


@dataclass(frozen=True)
class Session:
    kb_version: str
    node: str = NOT_STARTED
    answers: tuple[tuple[str, str], ...] = ()
    context: str | None = None
    lang: str = "fr"
    pending: Pending | None = None
    stopped_at: str | None = None
    turns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def answered(self, question_id: str, choice_id: str) -> Session:
        return replace(self, answers=(*self.answers, (question_id, choice_id)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kb_version": self.kb_version,
            "node": self.node,
            "answers": [list(pair) for pair in self.answers],
            "context": self.context,
            "lang": self.lang,
            "pending": str(self.pending) if self.pending else None,
            "stopped_at": self.stopped_at,
            "turns": self.turns,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        return cls(
            kb_version=str(data.get("kb_version", "")),
            node=str(data.get("node", NOT_STARTED)),
            answers=tuple(
                (str(pair[0]), str(pair[1]))
                for pair in data.get("answers", [])
                if isinstance(pair, list | tuple) and len(pair) == 2
            ),
            context=data.get("context"),
            lang=str(data.get("lang", "fr")),
            pending=Pending.parse(data.get("pending")),
            stopped_at=data.get("stopped_at"),
            turns=int(data.get("turns", 0)),
            extra=dict(data.get("extra") or {}),
        )


InputKind = Literal["start", "choice", "text", "command"]


@dataclass(frozen=True)
class Input:
    """What the person did: pressed a button (``choice``), typed (``text``), or used a command.

    ``node`` is the question a button was shown with, so a button from an older message is
    recognised as such instead of being applied to the current question.
    """

    kind: InputKind
    value: str = ""
    node: str | None = None

    @classmethod
    def text(cls, value: str) -> Input:
        return cls("text", value)

    @classmethod
    def choice(cls, value: str, node: str | None = None) -> Input:
        return cls("choice", value, node)

    @classmethod
    def command(cls, value: str) -> Input:
        return cls("command", value)

    @classmethod
    def start(cls, context: str = "") -> Input:
        return cls("start", context)
