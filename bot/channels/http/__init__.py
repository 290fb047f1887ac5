"""The HTTP channel: the conversation API (``/api/v1``), the web chat, the admin route and the
server's read limits. One module per concern:

- :mod:`.api` — :class:`ConversationApi` (the endpoints); :mod:`.auth` — keys, contexts,
  ownership; :mod:`.body` — reading a body within limits;
- :mod:`.schemas` — the request/response models; :mod:`.openapi` (+ :mod:`.examples`) — the
  OpenAPI 3.1 document generated from them; :mod:`.errors` — the JSON error answers;
- :mod:`.ratelimit` — the per-key token bucket; :mod:`.cors` — the CORS policy;
- :mod:`.webchat` — the demo page and the widget's files (``static/``);
- :mod:`.admin` — ``POST /admin/reload``; :mod:`.limits` — the request-head deadline (uvicorn).
"""

from bot.channels.http.api import ConversationApi
from bot.channels.http.ratelimit import RateLimiter

__all__ = ["ConversationApi", "RateLimiter"]
