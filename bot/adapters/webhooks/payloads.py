"""The delivery bodies, as models: every body sent is built from them and they also make the
OpenAPI ``webhooks`` section, so the documented shape and what is sent cannot drift apart."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.engine import events
from bot.json_types import JsonValue


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactRequestedData(_Payload):
    """What the person agreed to send, after seeing it, so that someone reaches out to them."""

    establishments: list[str] = Field(
        description="Les établissements à qui la personne a accepté d'envoyer la demande (ceux "
        "que le texte de consentement nommait) ; elle n'est envoyée qu'à eux."
    )
    contacts: list[str] = Field(
        description="Identifiants des contacts montrés à la personne (pour information : la "
        "demande ne leur est pas envoyée)."
    )
    roles: list[str] = Field(description="Rôles recommandés (identifiants).")
    territory: str | None = Field(description="Territoire de la personne, ou null.")
    context: str | None = Field(description="Contexte de la conversation, ou null.")
    how_to_reach: str = Field(description="Comment et quand la joindre, écrit par elle-même.")
    consent: Literal[True] = Field(description="Toujours vrai : elle a confirmé l'envoi.")
    kb_version: str = Field(description="Version de la base de contenus.")
    establishment: str | None = Field(
        description="L'établissement dont la clé a créé la conversation (null pour Telegram)."
    )
    conversation_id: str | None = Field(
        default=None,
        description="Conversation de l'API ; seulement pour l'établissement qui la possède "
        "(absent pour Telegram et pour les autres destinataires).",
    )


class ConversationCompletedData(_Payload):
    """Anonymous: no text typed by the person, no identifier."""

    roles: list[str] = Field(description="Rôles recommandés (identifiants).")
    territory: str | None
    context: str | None
    kb_version: str
    establishment: str | None = Field(
        description="L'établissement dont la clé a créé la conversation (null pour Telegram)."
    )


class ContactRequested(_Payload):
    type: Literal["contact.requested"]
    timestamp: str = Field(description="Date de l'événement (ISO 8601, UTC).")
    data: ContactRequestedData


class ConversationCompleted(_Payload):
    type: Literal["conversation.completed"]
    timestamp: str = Field(description="Date de l'événement (ISO 8601, UTC).")
    data: ConversationCompletedData


#: The delivery body model of each event type.
EVENT_MODELS: dict[str, type[ContactRequested] | type[ConversationCompleted]] = {
    events.CONTACT_REQUESTED: ContactRequested,
    events.CONVERSATION_COMPLETED: ConversationCompleted,
}


def payload(kind: str, timestamp: str, data: Mapping[str, JsonValue]) -> str:
    """The JSON body of one event, validated by its model (a drift fails loudly in tests)."""
    body = EVENT_MODELS[kind].model_validate({"type": kind, "timestamp": timestamp, "data": data})
    dumped = body.model_dump(mode="json", exclude_none=False)
    if dumped["data"].get("conversation_id") is None:
        dumped["data"].pop("conversation_id", None)
    return json.dumps(dumped, ensure_ascii=False, separators=(",", ":"))
