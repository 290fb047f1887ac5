"""The admin route of the HTTP server: reload the knowledge base on demand."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.app.reload import Reloader


def admin_routes(reloader: Reloader, token: str | None) -> list[BaseRoute]:
    """``POST /admin/reload`` (``Authorization: Bearer $PASSERELLE_ADMIN_TOKEN``): 200 with the
    new version, 422 with the validator's messages (the old base keeps serving), 401 without a
    bearer token, 403 with a wrong one or when no admin token is configured."""

    async def reload(request: Request) -> JSONResponse:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return JSONResponse(
                {"error": {"code": "unauthorized", "message": "Jeton d'administration manquant."}},
                401,
                headers={"www-authenticate": "Bearer"},
            )
        if not token or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return JSONResponse(
                {"error": {"code": "forbidden", "message": "Jeton d'administration refusé."}}, 403
            )
        result = await reloader.reload()
        if not result.ok:
            return JSONResponse(
                {
                    "error": {
                        "code": "invalid_knowledge_base",
                        "message": "Base refusée : l'ancienne version reste en service.",
                        "problems": list(result.problems),
                    },
                    "version": result.version,
                },
                422,
            )
        return JSONResponse({"reloaded": True, "version": result.version})

    return [Route("/admin/reload", reload, methods=["POST"])]
