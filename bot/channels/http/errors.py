"""The API's errors: :class:`ApiError` raised anywhere in a handler becomes the JSON answer
``{"error": {"code", "message"}}`` (:class:`~bot.channels.http.schemas.ErrorOut`), and
pydantic's validation errors become French messages with a stable code."""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from bot.channels.http.schemas import MAX_BODY_BYTES, ErrorCode, ErrorDetail, ErrorOut
from bot.engine.flow import MAX_TEXT_LENGTH


class ApiError(Exception):
    def __init__(
        self, status: int, code: ErrorCode, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def json_response(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers=dict(headers or {}), media_type="application/json")


def model_response(
    model: BaseModel,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    exclude_none: bool = False,
) -> Response:
    """A response body made by the model the OpenAPI document describes it with."""
    body = model.model_dump(mode="json", exclude_none=exclude_none)
    return json_response(body, status, headers)


def error_response(error: ApiError) -> Response:
    body = ErrorOut(error=ErrorDetail(code=error.code, message=error.message))
    return model_response(body, error.status, error.headers)


_HTTP_CODES: dict[int, tuple[ErrorCode, str]] = {
    400: ("bad_request", "Requête invalide."),
    404: ("not_found", "Cette adresse n'existe pas dans l'API."),
    405: ("method_not_allowed", "Méthode non permise sur cette adresse."),
}


async def http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code, message = _HTTP_CODES.get(status, ("bad_request", "Requête invalide."))
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    return error_response(ApiError(status, code, message, headers))


async def server_error(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(500, "internal_error", "Erreur interne, réessayez plus tard."))


def too_large() -> ApiError:
    return ApiError(
        413, "body_too_large", f"Corps de requête trop gros ({MAX_BODY_BYTES} octets au plus)."
    )


def not_found() -> ApiError:
    return ApiError(404, "conversation_not_found", "Conversation inconnue (ou effacée).")


#: pydantic's messages are English: the ones a client can meet, in French.
_FRENCH_ERRORS = {
    "string_type": "une chaîne de caractères est attendue",
    "string_too_short": "la valeur ne doit pas être vide",
    "string_too_long": "la valeur est trop longue",
    "string_pattern_mismatch": "1 à 64 caractères parmi A-Z a-z 0-9 _ - sont attendus",
    "missing": "champ obligatoire manquant",
    "model_type": "un objet JSON est attendu",
    "model_attributes_type": "un objet JSON est attendu",
}


def validation_error(exc: ValidationError) -> ApiError:
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            return ApiError(422, "unknown_field", f"Champ inconnu : « {where} ».")
        if error["type"] == "string_too_long" and where == "text":
            return ApiError(
                422,
                "text_too_long",
                f"Le texte dépasse {MAX_TEXT_LENGTH} caractères : raccourcissez-le.",
            )
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    detail = _FRENCH_ERRORS.get(first["type"]) or first["msg"].removeprefix("Value error, ")
    return ApiError(
        422, "invalid_request", f"Requête invalide{f' ({where})' if where else ''} : {detail}."
    )
