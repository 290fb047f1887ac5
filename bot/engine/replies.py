"""What the engine answers: channel-neutral replies, recommendations and events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bot.json_types import JsonObject


@dataclass(frozen=True)
class Choice:
    """A button. ``id`` is stable across wording changes; ``label`` is what the person reads."""

    id: str
    label: str
    #: A shorter label for narrow buttons (a phone's keyboard); ``label`` everywhere else.
    short: str | None = None


@dataclass(frozen=True)
class Image:
    """A picture (PNG bytes) with the text alternative every channel must be able to show."""

    png: bytes
    alt: str
    name: str = "image.png"


#: What a reply is, for channels that lay some out differently (Telegram: one message per role,
#: bold headings). Plain text is always complete on its own.
PLAIN, ROLE, CONTACTS, GUIDE, STALE = "", "role", "contacts", "guide", "stale"


@dataclass(frozen=True)
class Reply:
    text: str
    choices: tuple[Choice, ...] = ()
    image: Image | None = None
    kind: str = PLAIN

    def to_dict(self) -> JsonObject:
        return {
            "text": self.text,
            "choices": [{"id": c.id, "label": c.label} for c in self.choices],
        }


@dataclass(frozen=True)
class ContactInfo:
    id: str
    name: str
    description: str
    website: str
    territories: tuple[str, ...]
    roles: tuple[str, ...]
    phone: str | None = None
    email: str | None = None
    #: « Pourquoi ce contact », one line for the person.
    why: str = ""
    #: True when the contact belongs to the person's own territory (not a wider level).
    own: bool = False

    def to_dict(self) -> JsonObject:
        data = asdict(self)
        data["territories"] = list(self.territories)
        data["roles"] = list(self.roles)
        return data


@dataclass(frozen=True)
class RoleMatch:
    """A recommended role with the reasons drawn from the person's own answers."""

    id: str
    title: str
    definition: str
    score: int
    reasons: tuple[str, ...]
    to_start: tuple[str, ...]
    not_yet: tuple[tuple[str, str], ...]
    first_steps: tuple[str, ...]
    caution: str | None

    def to_dict(self) -> JsonObject:
        return {
            "id": self.id,
            "title": self.title,
            "definition": self.definition,
            "score": self.score,
            "reasons": list(self.reasons),
            "to_start": list(self.to_start),
            "not_yet": [{"need": need, "how_to": how} for need, how in self.not_yet],
            "first_steps": list(self.first_steps),
            "caution": self.caution,
        }


@dataclass(frozen=True)
class Recommendation:
    roles: tuple[RoleMatch, ...]
    contacts: tuple[ContactInfo, ...]
    territory: str | None
    guide: bool = False
    #: Said above the contacts when they come from a wider level than asked (never empty).
    contacts_note: str | None = None
    country: str | None = None

    def to_dict(self) -> JsonObject:
        return {
            "roles": [role.to_dict() for role in self.roles],
            "contacts": [contact.to_dict() for contact in self.contacts],
            "territory": self.territory,
            "guide": self.guide,
            "contacts_note": self.contacts_note,
            "country": self.country,
        }


@dataclass(frozen=True)
class Event:
    """Something an integration may want to hear about (e.g. ``conversation.completed``)."""

    kind: str
    data: JsonObject = field(default_factory=dict)
