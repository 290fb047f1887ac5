"""The examples of the OpenAPI document, as JSON values (every one is validated against its
schema by tests/channels/test_api_schema.py)."""

from __future__ import annotations

from bot.channels.http.schemas import MAX_BODY_BYTES, ErrorCode
from bot.engine.flow import MAX_TEXT_LENGTH
from bot.json_types import JsonObject

CID = "conv_5f0c2a9e8b7d4c3a1e6f0b9d8c7a6e5f"
WELCOME: JsonObject = {
    "text": "Bonjour, je suis Passerelle…",
    "choices": [],
    "image_url": None,
    "image_alt": None,
}
FIRST_QUESTION: JsonObject = {
    "text": "Pour commencer, qui êtes-vous ?",
    "choices": [
        {"id": "patient", "label": "Je vis avec une maladie ou un handicap"},
        {"id": "proche", "label": "J'accompagne un proche malade"},
    ],
    "image_url": None,
    "image_alt": None,
}
CONTACT: JsonObject = {
    "id": "partenariat_en_sante_occitanie",
    "name": "Centre Opérationnel du Partenariat en Santé (COPS) Occitanie",
    "description": "Fait vivre le partenariat en santé en Occitanie.",
    "website": "https://www.partenariat-en-sante.org",
    "territories": ["fr-occitanie"],
    "roles": ["patient_partenaire_formateur"],
    "phone": None,
    "email": None,
}
RECOMMENDED: JsonObject = {
    "replies": [
        {"text": "Merci pour vos réponses. Voici les rôles…", "choices": [],
         "image_url": None, "image_alt": None},
        {"text": "Que souhaitez-vous faire maintenant ?", "image_url": None, "image_alt": None,
         "choices": [{"id": "cmd:relation", "label": "Être mis en relation"},
                     {"id": "cmd:recommencer", "label": "Recommencer"}]},
    ],
    "node": "recommendation",
    "recommendation": {
        "roles": [{
            "id": "patient_partenaire_formateur",
            "title": "Patient partenaire formateur",
            "definition": "Vous participez à la formation des étudiants et des professionnels.",
            "reasons": ["Vous souhaitez former les futurs soignants."],
            "first_steps": ["Renseignez-vous auprès de la faculté de santé près de chez vous."],
        }],
        "contacts": [CONTACT],
        "territory": "fr-occitanie",
    },
    "understood": {"profile": "patient", "experience": "chronique", "country": "fr",
                   "region": "occitanie", "territory": "fr-occitanie"},
}  # fmt: skip
NEXT_QUESTION: JsonObject = {
    "replies": [{"text": "Quelle est votre situation de santé ?", "image_url": None,
                 "image_alt": None,
                 "choices": [{"id": "chronique", "label": "Maladie chronique"}]}],
    "node": "situation",
    "recommendation": None,
    "understood": {"profile": "patient"},
}  # fmt: skip
CONVERSATION: JsonObject = {
    "conversation_id": CID,
    "context": "chu-exemple",
    "node": "situation",
    "kb_version": "1.2.0",
    "created_at": "2026-11-23T10:12:00.000+00:00",
    "updated_at": "2026-11-23T10:12:09.000+00:00",
    "answers": [{"question": "profil", "choice": "patient"}],
    "transcript": [
        {"at": "2026-11-23T10:12:00.000+00:00", "author": "bot",
         "text": "Pour commencer, qui êtes-vous ?", "choice": None,
         "choices": [{"id": "patient", "label": "Je vis avec une maladie ou un handicap"}]},
        {"at": "2026-11-23T10:12:09.000+00:00", "author": "person", "text": None,
         "choice": "patient", "choices": []},
    ],
    "session": {"node": "situation", "answers": [["profil", "patient"]]},
    "barometer_ratings": [],
    "followups": [],
    "webhooks_pending": [],
}  # fmt: skip
ROW: JsonObject = {
    "id": "patient_partenaire_formateur",
    "label": "Patient partenaire formateur",
    "count": 12,
}
STATS: JsonObject = {
    "since": "2026-01-01", "context": "chu-exemple", "k": 5,
    "conversations": 140, "completed": 96, "completion_rate": 0.69,
    "funnel": [{"id": "profil", "label": "Qui êtes-vous ?", "count": 140}],
    "dropoff": [{"id": "situation", "label": "Votre situation", "count": None}],
    "roles": [ROW], "territories": [{"id": "fr-occitanie", "label": "Occitanie", "count": 80}],
    "outcomes": [{"id": "contact", "label": "Mise en relation demandée", "count": 21}],
    "followup_by_role": [{"id": "patient_partenaire_formateur",
                          "label": "Patient partenaire formateur",
                          "answered": 9, "reached": 6, "share_reached": 0.67}],
    "followup_by_context": [],
}  # fmt: skip
EVENTS: dict[str, JsonObject] = {
    "contact.requested": {
        "type": "contact.requested",
        "timestamp": "2026-11-23T10:15:00+00:00",
        "data": {
            "establishments": ["chu-exemple"],
            "contacts": ["partenariat_en_sante_occitanie"],
            "roles": ["patient_partenaire_formateur"],
            "territory": "fr-occitanie",
            "context": "chu-exemple",
            "how_to_reach": "par courriel, le soir : camille@example.org",
            "consent": True,
            "kb_version": "1.2.0",
            "establishment": "chu-exemple",
            "conversation_id": CID,
        },
    },
    "conversation.completed": {
        "type": "conversation.completed",
        "timestamp": "2026-11-23T10:14:00+00:00",
        "data": {
            "roles": ["patient_partenaire_formateur"],
            "territory": "fr-occitanie",
            "context": "chu-exemple",
            "kb_version": "1.2.0",
            "establishment": "chu-exemple",
        },
    },
}
EVENT_SUMMARIES = {
    "contact.requested": "Une personne demande à être recontactée (après son consentement).",
    "conversation.completed": "Une conversation est arrivée à sa recommandation (anonyme).",
}
#: (status, error code, message) of each documented error, with an example per code.
ERRORS: dict[str, list[tuple[ErrorCode, str]]] = {
    "400": [("invalid_json", "Le corps de la requête n'est pas du JSON valide.")],
    "401": [("unauthorized", "Clé d'API inconnue ou révoquée.")],
    "403": [
        ("forbidden", "Les statistiques ne se lisent qu'avec une clé secrète (psk_…), jamais "
         "avec la clé publique du chat web."),
        ("forbidden_context", "Le contexte « chu-autre » n'appartient pas à l'établissement de "
         "cette clé (permis : chu-exemple)."),
    ],
    "404": [("conversation_not_found", "Conversation inconnue (ou effacée).")],
    "408": [("request_timeout", "Corps de requête reçu trop lentement (30 s au plus).")],
    "413": [("body_too_large", f"Corps de requête trop gros ({MAX_BODY_BYTES} octets au plus).")],
    "422": [
        ("unknown_field", "Champ inconnu : « texte »."),
        ("text_too_long", f"Le texte dépasse {MAX_TEXT_LENGTH} caractères : raccourcissez-le."),
        ("unknown_choice", "Ce choix n'est pas proposé à cette étape de la conversation : "
         "utilisez un « id » des derniers choix reçus."),
        ("invalid_request", "Requête invalide : donnez soit « text », soit « choice » "
         "(un seul des deux)."),
    ],
    "429": [("rate_limited",
             "Trop de requêtes pour cette clé : réessayez dans quelques secondes.")],
    "500": [("internal_error", "Erreur interne, réessayez plus tard.")],
}  # fmt: skip

CREATED: JsonObject = {
    "conversation_id": CID,
    "conversation_secret": None,
    "node": "profil",
    "recommendation": None,
    "replies": [WELCOME, FIRST_QUESTION],
}
