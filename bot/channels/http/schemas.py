"""The API's request and response models: they validate every body, build every answer, and
generate the schemas of the OpenAPI document (:mod:`bot.channels.http.openapi`)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.engine.flow import MAX_TEXT_LENGTH, Turn
from bot.engine.replies import Reply
from bot.json_types import as_list
from bot.storage.base import TranscriptLine

API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 16 * 1024
CONTEXT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


# -- request and response models (they also generate the OpenAPI document) ------------------
class ApiRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewConversation(ApiRequest):
    context: Annotated[
        str | None,
        Field(
            pattern=CONTEXT_PATTERN,
            description="Contexte de la conversation, par exemple l'identifiant de "
            "l'établissement dont les contacts passent en premier.",
        ),
    ] = None


class NewMessage(ApiRequest):
    """Exactly one of ``text`` (what the person typed) or ``choice`` (a choice ``id``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["text"]}, {"required": ["choice"]}]},
    )

    text: Annotated[str, Field(max_length=MAX_TEXT_LENGTH)] | None = None
    choice: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> NewMessage:
        if (self.text is None) == (self.choice is None):
            raise ValueError("donnez soit « text », soit « choice » (un seul des deux)")
        return self


class ChoiceOut(BaseModel):
    id: str
    label: str


class ReplyOut(BaseModel):
    text: str
    choices: list[ChoiceOut]
    image_url: str | None = Field(description="Image (data: URL, PNG) or null.")
    image_alt: str | None = Field(
        default=None, description="Text alternative of the image (scores in words), or null."
    )


class RoleOut(BaseModel):
    id: str
    title: str
    definition: str
    reasons: list[str]
    first_steps: list[str]


class ContactOut(BaseModel):
    id: str
    name: str
    description: str
    website: str
    territories: list[str]
    roles: list[str]
    phone: str | None
    email: str | None
    why: str = Field(default="", description="« Pourquoi ce contact », shown to the person.")
    own: bool = Field(default=False, description="The contact belongs to the person's territory.")


class RecommendationOut(BaseModel):
    roles: list[RoleOut]
    contacts: list[ContactOut]
    territory: str | None


class TurnOut(BaseModel):
    replies: list[ReplyOut]
    node: str
    recommendation: RecommendationOut | None
    #: The facts the bot holds now: fact name -> value id (``profile: proche``,
    #: ``territory: fr-bretagne``), plus ``condition`` and ``place`` ids when one was named.
    understood: dict[str, str] = Field(
        default_factory=dict,
        description="Ce que le bot retient à ce tour : nom de la réponse → identifiant de sa "
        "valeur (profile, experience, country, region, territory, condition, place…).",
    )


class ConversationCreated(TurnOut):
    conversation_id: str
    conversation_secret: str | None = Field(
        description="With a widget key only: the conversation's own secret, to send back in "
        "the X-Conversation-Secret header of every later call about it (shown once); null "
        "with a secret key."
    )


class Answer(BaseModel):
    question: str
    choice: str


class TranscriptEntry(BaseModel):
    at: str
    author: Literal["person", "bot"]
    text: str | None
    choice: str | None
    choices: list[ChoiceOut]


class BarometerRatingOut(BaseModel):
    group: str = Field(description="The barometer group's code.")
    round: int
    rater: str = Field(description="Who rated: the person's side in the group.")
    scores: str = Field(description="The scores given, as stored (JSON).")
    at: float = Field(description="When (Unix time, seconds).")


class FollowupOut(BaseModel):
    roles: str = Field(description="The roles recommended, as stored.")
    due_at: float = Field(description="When the follow-up is due (Unix time, seconds).")
    sent_at: float | None
    answer: str | None


class PendingWebhookOut(BaseModel):
    id: str = Field(description="The event's webhook-id.")
    establishment: str
    type: str = Field(description="The event type (contact.requested…).")
    payload: dict[str, Any] = Field(description="The body that will be delivered.")
    status: Literal["pending", "dead"]
    created_at: float = Field(description="Unix time, seconds.")


class ConversationOut(BaseModel):
    conversation_id: str
    context: str | None
    node: str
    kb_version: str
    created_at: str
    updated_at: str
    answers: list[Answer]
    transcript: list[TranscriptEntry]
    #: The engine's own serialisation (its shape follows the engine's state, not this API).
    session: dict[str, Any] = Field(description="The conversation state as stored.")
    barometer_ratings: list[BarometerRatingOut] = Field(description="Barometer ratings kept.")
    followups: list[FollowupOut] = Field(description="Follow-ups (none on the API).")
    webhooks_pending: list[PendingWebhookOut] = Field(
        description="Webhook events about this conversation not yet delivered."
    )


class StatsRow(BaseModel):
    id: str
    label: str
    count: int | None = Field(description="null when below the k-anonymity threshold.")


class StatsFollowupRow(BaseModel):
    id: str
    label: str
    answered: int | None
    reached: int | None
    share_reached: float | None


class StatsOut(BaseModel):
    """Usage figures of the caller's own context (see docs/stats.md); ``null`` = hidden."""

    since: str | None
    context: str | None
    k: int
    conversations: int | None
    completed: int | None
    completion_rate: float | None
    funnel: list[StatsRow]
    dropoff: list[StatsRow]
    roles: list[StatsRow]
    territories: list[StatsRow]
    outcomes: list[StatsRow]
    followup_by_role: list[StatsFollowupRow]
    followup_by_context: list[StatsFollowupRow]


#: Every ``error.code`` the API can answer (an enum in the OpenAPI document).
ErrorCode = Literal[
    "bad_request",
    "invalid_json",
    "invalid_request",
    "unknown_field",
    "text_too_long",
    "unknown_choice",
    "body_too_large",
    "request_timeout",
    "unauthorized",
    "forbidden",
    "forbidden_context",
    "conversation_not_found",
    "not_found",
    "method_not_allowed",
    "rate_limited",
    "internal_error",
]


class ErrorDetail(BaseModel):
    code: ErrorCode = Field(description="Stable, for programs; see docs/integration.md.")
    message: str = Field(description="In French, for people.")


class ErrorOut(BaseModel):
    error: ErrorDetail


class HealthOut(BaseModel):
    """``/healthz``: ``checks`` (each part's ``ok`` or what went wrong) once the server is up."""

    status: Literal["starting", "ok", "error"]
    checks: dict[str, str] | None = None


# -- engine turn and stored transcript → response models -----------------------------------
def iso(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="milliseconds")


def reply_out(reply: Reply) -> ReplyOut:
    image = alt = None
    if reply.image is not None:
        image = "data:image/png;base64," + base64.b64encode(reply.image.png).decode()
        alt = reply.image.alt
    return ReplyOut(
        text=reply.text,
        choices=[ChoiceOut(id=c.id, label=c.label) for c in reply.choices],
        image_url=image,
        image_alt=alt,
    )


def turn_out(turn: Turn) -> TurnOut:
    rec = turn.recommendation
    recommendation = None
    if rec is not None:
        recommendation = RecommendationOut(
            roles=[
                RoleOut(
                    id=role.id,
                    title=role.title,
                    definition=role.definition,
                    reasons=list(role.reasons),
                    first_steps=list(role.first_steps),
                )
                for role in rec.roles
            ],
            contacts=[ContactOut.model_validate(contact.to_dict()) for contact in rec.contacts],
            territory=rec.territory,
        )
    return TurnOut(
        replies=[reply_out(reply) for reply in turn.replies],
        node=turn.session.node,
        recommendation=recommendation,
        understood=dict(turn.understood),
    )


def transcript_entry(line: TranscriptLine) -> TranscriptEntry:
    return TranscriptEntry(
        at=iso(line.at),
        author="person" if line.author == "person" else "bot",
        text=line.body.get("text"),
        choice=line.body.get("choice"),
        choices=[ChoiceOut.model_validate(c) for c in as_list(line.body.get("choices"))],
    )
