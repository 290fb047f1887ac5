"""The guard against posting to private addresses (SSRF): checked at every attempt, because a
host name's addresses may change after the configuration was checked."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from bot.knowledge.establishments import address_problem, literal_address, target_problem

#: How long a webhook host's resolved addresses are trusted (see :func:`check_target`).
RESOLVE_TTL = 60.0
_resolved: dict[str, tuple[float, str | None]] = {}


async def check_target(url: str) -> str | None:
    """Why ``url`` must not be posted to now, or ``None``: the checks of the configuration
    (:func:`bot.knowledge.establishments.target_problem`), and the addresses its host name
    resolves to (none private, link-local or of a metadata service; cached for a minute). A name
    that cannot be resolved is left to the HTTP client, which fails the attempt the usual way."""
    problem = target_problem(url)
    if problem is not None:
        return problem
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost" or literal_address(host) is not None:
        return None
    now = time.monotonic()
    cached = _resolved.get(host)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return None
    problem = None
    for info in infos:
        address = literal_address(str(info[4][0]).split("%", 1)[0])
        if address is not None and (address.is_loopback or address_problem(address)):
            problem = f"{host} désigne {address}, une adresse qui n'est pas publique"
            break
    if len(_resolved) > 1000:
        _resolved.clear()
    _resolved[host] = (now + RESOLVE_TTL, problem)
    return problem
