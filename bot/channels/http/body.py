"""Reading a request body within limits: 16 KiB at most, received within the body deadline,
a JSON object, validated by its model (each failure is its own French error)."""

from __future__ import annotations

import asyncio
import json
from typing import TypeVar

from pydantic import ValidationError
from starlette.requests import Request

from bot.channels.http.errors import ApiError, too_large, validation_error
from bot.channels.http.schemas import MAX_BODY_BYTES, ApiRequest

Model = TypeVar("Model", bound=ApiRequest)


async def read_body(
    request: Request, model: type[Model], *, empty_ok: bool, deadline: float
) -> Model:
    """The body as ``model``; an empty body counts as ``{}`` when ``empty_ok``."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline):  # a body trickled in never ends
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise too_large()
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"Corps de requête reçu trop lentement ({deadline:g} s au plus).",
            {"connection": "close"},
        ) from None
    raw = b"".join(chunks)
    if not raw.strip() and empty_ok:
        data: object = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(
                400, "invalid_json", "Le corps de la requête n'est pas du JSON valide."
            ) from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "Le corps doit être un objet JSON.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
