"""The HTTP client PTB calls the Bot API with: aiohttp behind PTB's public ``BaseRequest``.

Why not PTB's default ``HTTPXRequest``: httpcore (1.0) scans every connection of its pool, with a
``getpeername`` and a ``select`` system call each, twice per request, so a bot sending many
replies at once spends most of its CPU choosing a connection (profiled: 45–60 % of an update's
CPU on the webhook bench). aiohttp's connector takes an idle connection in constant time, and
its HTTP parser is compiled. Requests are the same as PTB's: form-encoded parameters, multipart
when a file is sent; errors are PTB's (``TimedOut``, ``NetworkError``), so every caller and
PTB's own retry logic see no difference.
"""

from __future__ import annotations

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


class AiohttpRequest(BaseRequest):
    """A ``BaseRequest`` on one ``aiohttp.ClientSession`` with at most ``pool_size``
    connections; timeouts are PTB's: ``connect`` to open a connection, ``pool`` to wait for a
    free one, ``read`` between two reads of the answer. ``write`` has no aiohttp equivalent:
    it bounds the whole request with the other three."""

    __slots__ = ("_connect", "_pool", "_pool_size", "_read", "_session", "_write")

    def __init__(
        self,
        pool_size: int = 16,
        *,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._pool_size = pool_size
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.USER_AGENT}
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """One call; a timeout PTB passes wins over this object's (a ``DefaultValue`` — PTB's
        marker for "not given" — does not)."""
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = _given(read_timeout, self._read)
        write = _given(write_timeout, self._write)
        connect = _given(connect_timeout, self._connect)
        pool = _given(pool_timeout, self._pool)
        parts = [read, write, connect, pool]
        total = None if None in parts else sum(p or 0.0 for p in parts)
        timeout = aiohttp.ClientTimeout(
            total=total,
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=read,
        )
        data: aiohttp.FormData | dict[str, str] | None = None
        if request_data is not None:
            data = request_data.json_parameters
            if request_data.contains_files:
                form = aiohttp.FormData(data)
                for name, (filename, content, mime) in request_data.multipart_data.items():
                    form.add_field(name, content, filename=filename, content_type=mime)
                data = form
        try:
            async with self._session.request(method, url, data=data, timeout=timeout) as answer:
                return answer.status, await answer.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{exc.__class__.__name__}: {exc}") from exc


def _given(value: object, default: float | None) -> float | None:
    return float(value) if isinstance(value, int | float) else None if value is None else default
