"""Standard Webhooks signatures, apart so that a receiver's verification (tests, examples,
an integrator reading the code) finds the one rule without the worker around it."""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(secret: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
