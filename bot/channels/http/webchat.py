"""The web chat: the demo page (``/``, carrying the demo widget key) and the embeddable widget's
files (``/widget.js``, ``/widget.css``), served from this package's ``static/`` directory."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.channels.http.cors import CORS


def webchat_routes(demo_key: str | None) -> list[BaseRoute]:
    """``/`` and the widget's files; ``demo_key`` is the widget key the demo page embeds."""

    async def demo_page(request: Request) -> Response:
        page = static_text("index.html")
        key = demo_key or ""
        page = page.replace("{{WIDGET_KEY}}", html.escape(key, quote=True))
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
        )

    return [
        Route("/", demo_page, methods=["GET"]),
        Route(
            "/widget.js",
            static("widget.js", "text/javascript"),
            methods=["GET"],
            middleware=[CORS],  # <script integrity=…> fetches it in CORS mode
        ),
        Route(
            "/widget.css",
            static("widget.css", "text/css"),
            methods=["GET"],
            middleware=[CORS],
        ),
    ]


def static(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return Response(
            static_text(name),
            media_type=f"{media_type}; charset=utf-8",
            headers={
                "cache-control": "public, max-age=300",
                "x-content-type-options": "nosniff",
            },
        )

    return serve


def static_text(name: str) -> str:
    return (resources.files("bot.channels.http") / "static" / name).read_text(encoding="utf-8")
