"""The CORS policy of the API and of the widget's files."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

#: Every page may call the API: keys travel in the Authorization header, never in a cookie.
CORS = Middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_methods=["GET", "POST", "DELETE"],
    allow_headers=["authorization", "content-type", "x-conversation-secret"],
    expose_headers=["retry-after", "location"],
    max_age=600,
)
