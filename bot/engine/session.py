"""The conversation state and the inputs the engine accepts.

A :class:`Session` is a plain value: the engine never mutates one, it returns a new one. It
serialises to JSON-safe data so any storage can keep it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from bot.json_types import JsonObject, JsonValue, as_int, as_list, as_object, as_text

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


#: Answers read ahead, by question id (several for a multiple-answer question).
Prefill = dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Undo:
    """What « Ce n'est pas ça » restores: the state before the last message was applied."""

    node: str
    answers: tuple[tuple[str, str], ...]
    prefill: Prefill
    condition: str | None = None
    place: str | None = None
    relative: str | None = None

    def to_dict(self) -> JsonObject:
        return {
            "node": self.node,
            "answers": [list(pair) for pair in self.answers],
            "prefill": {q: list(c) for q, c in self.prefill.items()},
            "condition": self.condition,
            "place": self.place,
            "relative": self.relative,
        }

    @classmethod
    def from_dict(cls, data: object) -> Undo | None:
        if not isinstance(data, dict):
            return None
        return cls(
            node=str(data.get("node") or ""),
            answers=_answers(data.get("answers")),
            prefill=_prefill(data.get("prefill")),
            condition=_text(data.get("condition")),
            place=_text(data.get("place")),
            relative=_text(data.get("relative")),
        )


@dataclass(frozen=True)
class Lead:
    """« Which comes first? », answered: ``choice`` ("" when they weigh the same), for the
    answers ``among`` it was asked about."""

    choice: str
    among: tuple[str, ...]


@dataclass(frozen=True)
class Session:
    """Everything the engine needs to go on with a conversation.

    ``extra`` is for the layers above the engine (e.g. the statistics id): the engine keeps
    it as it is and never reads it. In stored form (:meth:`to_dict`) the engine's own fields
    sit in ``extra`` too, under the keys older versions used, so any stored session loads.
    """

    kb_version: str
    node: str = NOT_STARTED
    answers: tuple[tuple[str, str], ...] = ()
    context: str | None = None
    lang: str = "fr"
    pending: Pending | None = None
    stopped_at: str | None = None
    turns: int = 0
    extra: JsonObject = field(default_factory=dict)
    #: The establishment whose API key created the conversation.
    owner: str | None = None
    #: The side mode the conversation is in (``barometre``, ``suivi``), and the modes' own
    #: JSON state by key (``barometer``, ``followup``).
    mode: str | None = None
    mode_state: JsonObject = field(default_factory=dict)
    #: Barometer group codes the person joined.
    groups: tuple[str, ...] = ()
    prefill: Prefill = field(default_factory=dict)
    #: The condition (``lexique/conditions.yaml`` id) and place (``lexique/lieux.yaml``) named.
    condition: str | None = None
    place: str | None = None
    #: How to say back the relative (« votre fils »).
    relative: str | None = None
    #: ``f`` when the person spoke of herself in the feminine.
    gender: str | None = None
    lead: Lead | None = None
    #: For one turn only: what « Ce n'est pas ça » would undo, and an open glossary.
    undo: Undo | None = None
    glossary: bool = False
    #: The repair ladder: misses in a row at ``missed_at``, the last « pas compris » sentence
    #: said, and the question where « passer » is offered.
    misses: int = 0
    missed_at: str | None = None
    last_miss: str | None = None
    offer_skip: str | None = None
    #: A contact request: the establishments (id, name) consented to, how to reach the person.
    handoff: tuple[tuple[str, str], ...] = ()
    contact_how: str | None = None

    def answered(self, question_id: str, choice_id: str) -> Session:
        return replace(self, answers=(*self.answers, (question_id, choice_id)))

    def to_dict(self) -> JsonObject:
        extra: JsonObject = dict(self.extra)
        own: JsonObject = {
            "owner": self.owner,
            "mode": self.mode,
            GROUPS_KEY: list(self.groups) or None,
            "prefill": {q: list(c) for q, c in self.prefill.items()} or None,
            "condition": self.condition,
            "place": self.place,
            "relative": self.relative,
            "gender": self.gender,
            "lead": {"choice": self.lead.choice, "among": list(self.lead.among)}
            if self.lead
            else None,
            "undo": self.undo.to_dict() if self.undo else None,
            "glossary": True if self.glossary else None,
            "misses": {"node": self.missed_at, "count": self.misses} if self.misses else None,
            "last_miss": self.last_miss,
            "offer_skip": self.offer_skip,
            "handoff_ids": [i for i, _ in self.handoff] or None,
            "handoff_names": [n for _, n in self.handoff] or None,
            "contact_how": self.contact_how,
        }
        extra.update({k: v for k, v in own.items() if v is not None})
        extra.update(self.mode_state)
        return {
            "kb_version": self.kb_version,
            "node": self.node,
            "answers": [list(pair) for pair in self.answers],
            "context": self.context,
            "lang": self.lang,
            "pending": str(self.pending) if self.pending else None,
            "stopped_at": self.stopped_at,
            "turns": self.turns,
            "extra": extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, JsonValue]) -> Session:
        """A stored session, of this version or an older one (all in ``extra``)."""
        extra = as_object(data.get("extra"))
        misses = extra.pop("misses", None)
        ids = [str(i) for i in as_list(extra.pop("handoff_ids", None))]
        names = [str(n) for n in as_list(extra.pop("handoff_names", None))]
        lead = extra.pop("lead", None)
        return cls(
            kb_version=str(data.get("kb_version", "")),
            node=str(data.get("node", NOT_STARTED)),
            answers=_answers(data.get("answers")),
            context=as_text(data.get("context")),
            lang=str(data.get("lang", "fr")),
            pending=Pending.parse(data.get("pending")),
            stopped_at=as_text(data.get("stopped_at")),
            turns=as_int(data.get("turns", 0)),
            owner=_text(extra.pop("owner", None)),
            mode=_text(extra.pop("mode", None)),
            mode_state={k: extra.pop(k) for k in MODE_STATES if k in extra},
            groups=tuple(str(c) for c in as_list(extra.pop(GROUPS_KEY, None))),
            prefill=_prefill(extra.pop("prefill", None)),
            condition=_text(extra.pop("condition", None)),
            place=_text(extra.pop("place", None)),
            relative=_text(extra.pop("relative", None)),
            gender=_text(extra.pop("gender", None)),
            lead=Lead(
                str(lead.get("choice") or ""), tuple(str(c) for c in as_list(lead.get("among")))
            )
            if isinstance(lead, dict)
            else None,
            undo=Undo.from_dict(extra.pop("undo", None)),
            glossary=bool(extra.pop("glossary", False)),
            misses=as_int(misses.get("count", 0)) if isinstance(misses, dict) else 0,
            missed_at=_text(misses.get("node")) if isinstance(misses, dict) else None,
            last_miss=_text(extra.pop("last_miss", None)),
            offer_skip=_text(extra.pop("offer_skip", None)),
            handoff=tuple(zip(ids, names, strict=False)),
            contact_how=_text(extra.pop("contact_how", None)),
            extra=extra,
        )


#: Keys of the modes' own state in stored sessions (see :attr:`Session.mode_state`).
MODE_STATES = ("barometer", "followup")
GROUPS_KEY = "barometer_groups"


def _text(value: object) -> str | None:
    return str(value) if value else None


def _answers(value: object) -> tuple[tuple[str, str], ...]:
    return tuple(
        (str(pair[0]), str(pair[1]))
        for pair in (value if isinstance(value, list | tuple) else [])
        if isinstance(pair, list | tuple) and len(pair) == 2
    )


def _prefill(value: object) -> Prefill:
    if not isinstance(value, dict):
        return {}
    return {str(q): tuple(str(c) for c in choices) for q, choices in value.items() if choices}


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
