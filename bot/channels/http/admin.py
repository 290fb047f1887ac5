"""The admin route of the HTTP server: reload the knowledge base on demand."""

from __future__ import annotations

import hmac
from typing import Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.app.reload import Reloader
from bot.channels.http.errors import model_response


class AdminError(BaseModel):
    code: Literal["unauthorized", "forbidden"]
    message: str


class AdminErrorOut(BaseModel):
    error: AdminError


class RefusedError(BaseModel):
    code: Literal["invalid_knowledge_base"] = "invalid_knowledge_base"
    message: str
    problems: list[str]


class RefusedOut(BaseModel):
    """The new base was refused: ``version`` is the one still serving."""

    error: RefusedError
    version: str


class ReloadedOut(BaseModel):
    reloaded: bool
    version: str


def admin_routes(reloader: Reloader, token: str | None) -> list[BaseRoute]:
    """``POST /admin/reload`` (``Authorization: Bearer $PASSERELLE_ADMIN_TOKEN``): 200 with the
    new version, 422 with the validator's messages (the old base keeps serving), 401 without a
    bearer token, 403 with a wrong one or when no admin token is configured."""

    async def reload(request: Request) -> Response:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            missing = AdminError(code="unauthorized", message="Jeton d'administration manquant.")
            return model_response(AdminErrorOut(error=missing), 401, {"www-authenticate": "Bearer"})
        if not token or not hmac.compare_digest(given.strip().encode(), token.encode()):
            refused = AdminError(code="forbidden", message="Jeton d'administration refusé.")
            return model_response(AdminErrorOut(error=refused), 403)
        result = await reloader.reload()
        if not result.ok:
            error = RefusedError(
                message="Base refusée : l'ancienne version reste en service.",
                problems=list(result.problems),
            )
            return model_response(RefusedOut(error=error, version=result.version), 422)
        return model_response(ReloadedOut(reloaded=True, version=result.version))

    return [Route("/admin/reload", reload, methods=["POST"])]
