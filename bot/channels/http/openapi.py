"""The OpenAPI 3.1 document of ``/api/v1`` and of its webhooks, generated from the models
that also build every answer (:mod:`bot.channels.http.schemas`) and every delivery
(:data:`bot.adapters.webhooks.EVENT_MODELS`).

The document is JSON (``dict[str, Any]``): its shape is OpenAPI 3.1's, checked by
tests/channels/test_api_schema.py (schemathesis, and every example against its schema)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot.adapters.webhooks import EVENT_MODELS
from bot.channels.http.examples import (
    CID,
    CONVERSATION,
    CREATED,
    ERRORS,
    EVENT_SUMMARIES,
    EVENTS,
    NEXT_QUESTION,
    RECOMMENDED,
    STATS,
)
from bot.channels.http.schemas import (
    API_PREFIX,
    ConversationCreated,
    ConversationOut,
    ErrorCode,
    ErrorOut,
    NewConversation,
    NewMessage,
    StatsOut,
    TurnOut,
)

_OPENAPI: dict[str, Any] | None = None


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/api/v1`` and of its webhooks, generated from the
    models that also build every answer and every delivery."""
    global _OPENAPI
    if _OPENAPI is not None:
        return _OPENAPI
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (NewConversation, "validation"),
        (NewMessage, "validation"),
        (ConversationCreated, "serialization"),
        (TurnOut, "serialization"),
        (ConversationOut, "serialization"),
        (StatsOut, "serialization"),
        (ErrorOut, "serialization"),
        *[(model, "serialization") for model in EVENT_MODELS.values()],
    ]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas = top.get("$defs", {})

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def content(name: str, **examples: Any) -> dict[str, Any]:
        media: dict[str, Any] = {"schema": ref(name)}
        if examples:
            media["examples"] = {key: {"value": value} for key, value in examples.items()}
        return {"application/json": media}

    def error(status: str, description: str, codes: Sequence[ErrorCode] = ()) -> dict[str, Any]:
        known = [(c, m) for c, m in ERRORS[status] if not codes or c in codes]
        examples = {code: {"error": {"code": code, "message": msg}} for code, msg in known}
        listed = ", ".join(f"`{code}`" for code, _ in known)
        return {"description": f"{description} (code {listed}).", "content": content(
            "ErrorOut", **examples)}  # fmt: skip

    def body(name: str, required: bool = True, **examples: Any) -> dict[str, Any]:
        return {"required": required, "content": content(name, **examples)}

    common = {
        "401": error("401", "Clé manquante, inconnue ou révoquée"),
        "429": {
            **error("429", "Trop de requêtes pour cette clé"),
            "headers": {
                "Retry-After": {
                    "description": "Secondes à attendre.",
                    "schema": {"type": "integer"},
                }
            },
        },
        "500": error("500", "Erreur interne du serveur ; réessayez plus tard"),
    }
    conversation_id = {
        "name": "conversation_id",
        "in": "path",
        "required": True,
        "description": "L'identifiant reçu à la création (`conv_…`).",
        "schema": {"type": "string"},
        "example": CID,
    }
    conversation_secret = {
        "name": "X-Conversation-Secret",
        "in": "header",
        "required": False,
        "description": "Avec une clé de chat web (pwk_…) : le conversation_secret reçu à la "
        "création (sans lui, ou avec un autre, la conversation est introuvable : 404).",
        "schema": {"type": "string"},
        "example": "pcs_4nq0Zb3m1T8yVwK2rXo5sLd9eHcUjP7f6aGiYtBzQkM",
    }
    bad_body = {
        "400": error("400", "Corps qui n'est pas du JSON valide"),
        "408": error("408", "Corps reçu trop lentement (PASSERELLE_BODY_TIMEOUT)"),
        "413": error("413", "Corps de plus de 16 Kio"),
    }
    not_found = {
        "404": error(
            "404",
            "Conversation inconnue, effacée, d'un autre établissement, ou (clé de chat web) "
            "sans son secret",
        ),
    }
    webhooks = {
        kind: {
            "post": {
                "operationId": "webhook_" + kind.replace(".", "_"),
                "summary": EVENT_SUMMARIES[kind],
                "description": "Signé selon Standard Webhooks : en-têtes `webhook-id`, "
                "`webhook-timestamp`, `webhook-signature` (voir docs/integration.md).",
                "requestBody": body(model.__name__, example=EVENTS[kind]),
                "responses": {
                    "2XX": {"description": "Reçu : l'événement ne sera plus envoyé."},
                    "default": {"description": "Autre réponse : nouvel essai plus tard."},
                },
            }
        }
        for kind, model in EVENT_MODELS.items()
    }
    _OPENAPI = {
        "openapi": "3.1.0",
        "info": {
            "title": "Passerelle — API de conversation",
            "version": "1.0.0",
            "description": "Converser avec le moteur d'orientation de Passerelle, et les "
            "événements qu'il envoie aux établissements (webhooks). Voir docs/integration.md.",
        },
        "servers": [{"url": API_PREFIX}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "webhooks": webhooks,
        "paths": {
            "/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "Statistiques d'usage anonymes du contexte de la clé",
                    "parameters": [
                        {
                            "name": "since",
                            "in": "query",
                            "required": False,
                            "description": "Date de début (AAAA-MM-JJ).",
                            "schema": {"type": "string", "format": "date"},
                            "example": "2026-01-01",
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Les chiffres du contexte de l'appelant seulement.",
                            "content": content("StatsOut", stats=STATS),
                        },
                        "404": {
                            "description": "Statistiques non disponibles sur ce serveur "
                            "(code `not_found`).",
                            "content": content(
                                "ErrorOut",
                                not_found={
                                    "error": {
                                        "code": "not_found",
                                        "message": "Statistiques non disponibles sur ce serveur.",
                                    }
                                },
                            ),
                        },
                        "422": {
                            "description": "Date « since » invalide (code `invalid_request`).",
                            "content": content(
                                "ErrorOut",
                                invalid_request={
                                    "error": {
                                        "code": "invalid_request",
                                        "message": "« since » doit être une date AAAA-MM-JJ.",
                                    }
                                },
                            ),
                        },
                        "403": error(
                            "403",
                            "Clé de chat web (publique) : statistiques refusées",
                            ("forbidden",),
                        ),
                        **common,
                    },
                }
            },
            "/conversations": {
                "post": {
                    "operationId": "createConversation",
                    "summary": "Commencer une conversation",
                    "requestBody": body(
                        "NewConversation", required=False, context={"context": "chu-exemple"}
                    ),
                    "responses": {
                        "201": {
                            "description": "Conversation créée, avec les premiers messages.",
                            "headers": {
                                "Location": {
                                    "description": "L'adresse de la conversation.",
                                    "schema": {"type": "string"},
                                }
                            },
                            "content": content(
                                "ConversationCreated",
                                created=CREATED,
                                widget={
                                    **CREATED,
                                    "conversation_secret": "pcs_4nq0Zb3m1T8yVwK2rXo5sLd9eHcUjP7"
                                    "f6aGiYtBzQkM",
                                },
                            ),
                            "links": {
                                "SendMessage": {
                                    "operationId": "sendMessage",
                                    "parameters": {
                                        "conversation_id": "$response.body#/conversation_id"
                                    },
                                },
                                "GetConversation": {
                                    "operationId": "getConversation",
                                    "parameters": {
                                        "conversation_id": "$response.body#/conversation_id"
                                    },
                                },
                            },
                        },
                        "403": error(
                            "403",
                            "Contexte d'un autre établissement que celui de la clé",
                            ("forbidden_context",),
                        ),
                        **bad_body,
                        "422": error(
                            "422",
                            "Champ inconnu ou contexte invalide",
                            ("unknown_field", "invalid_request"),
                        ),
                        **common,
                    },
                }
            },
            "/conversations/{conversation_id}/messages": {
                "post": {
                    "operationId": "sendMessage",
                    "summary": "Envoyer un texte ou un choix",
                    "parameters": [conversation_id, conversation_secret],
                    "requestBody": body(
                        "NewMessage",
                        choice={"choice": "patient"},
                        text={"text": "je suis aidante de ma mère"},
                    ),
                    "responses": {
                        "200": {
                            "description": "Les réponses du moteur ; `recommendation` n'est "
                            "rempli qu'au tour où la recommandation est faite (null ensuite).",
                            "content": content(
                                "TurnOut", question=NEXT_QUESTION, recommendation=RECOMMENDED
                            ),
                        },
                        **bad_body,
                        "422": error("422", "Message refusé"),
                        **not_found,
                        **common,
                    },
                }
            },
            "/conversations/{conversation_id}": {
                "get": {
                    "operationId": "getConversation",
                    "summary": "L'état et la transcription conservés",
                    "parameters": [conversation_id, conversation_secret],
                    "responses": {
                        "200": {
                            "description": "La conversation, et tout ce qui est conservé à "
                            "son sujet (droit d'accès).",
                            "content": content("ConversationOut", conversation=CONVERSATION),
                        },
                        **not_found,
                        **common,
                    },
                },
                "delete": {
                    "operationId": "deleteConversation",
                    "summary": "Effacer la conversation (état, transcription, webhooks en attente)",
                    "parameters": [conversation_id, conversation_secret],
                    "responses": {
                        "204": {"description": "Effacée."},
                        **not_found,
                        **common,
                    },
                },
            },
        },
    }
    return _OPENAPI
