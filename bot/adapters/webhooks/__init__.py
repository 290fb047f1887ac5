"""Outgoing webhooks: routing engine events to establishments (:mod:`.routing`), the bodies
sent (:mod:`.payloads`), Standard Webhooks signatures (:mod:`.signing`), the guard against
posting to private addresses (:mod:`.target`), and the delivery worker draining the durable
outbox (:mod:`.worker`).

Each delivery is a ``POST`` of a JSON body ``{"type", "timestamp", "data"}`` with the headers
``webhook-id`` (stable across retries: receivers deduplicate on it), ``webhook-timestamp``
(Unix seconds of this attempt) and ``webhook-signature`` = ``v1,`` + base64 of
HMAC-SHA256(secret, ``"{id}.{timestamp}.{body}"``). A 2xx answer acknowledges the event;
anything else is retried with exponential backoff and jitter for 24 hours, then dead-lettered.
"""

from bot.adapters.webhooks.payloads import (
    EVENT_MODELS,
    ContactRequested,
    ContactRequestedData,
    ConversationCompleted,
    ConversationCompletedData,
    payload,
)
from bot.adapters.webhooks.routing import EVENT_TYPES, route
from bot.adapters.webhooks.signing import sign
from bot.adapters.webhooks.target import RESOLVE_TTL, check_target
from bot.adapters.webhooks.worker import RetryPolicy, WebhookWorker, describe

__all__ = [
    "EVENT_MODELS",
    "EVENT_TYPES",
    "RESOLVE_TTL",
    "ContactRequested",
    "ContactRequestedData",
    "ConversationCompleted",
    "ConversationCompletedData",
    "RetryPolicy",
    "WebhookWorker",
    "check_target",
    "describe",
    "payload",
    "route",
    "sign",
]
