"""Read deadlines for the HTTP server: a client must send a request's head in time.

uvicorn closes idle keep-alive connections, but has no deadline for a request's head: a client
may open a connection and send nothing, or one header byte now and then, and hold the
connection (and its memory) for ever. :class:`HeaderTimeoutProtocol` (uvicorn's h11 protocol,
used through ``uvicorn.Config(http=…)``) answers ``408`` and closes the connection when the
request line and headers are not complete ``header_timeout`` seconds after the connection was
made or the previous response ended. The body has its own deadline, in the routes that read
one (``PASSERELLE_BODY_TIMEOUT``).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

from bot.config import HEADER_TIMEOUT

log = logging.getLogger(__name__)

_BODY = '{"error":{"code":"request_timeout","message":"Requête trop lente."}}'.encode()
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's head."""

    header_timeout: float = HEADER_TIMEOUT
    #: The pending deadline of the current request's head (each connection sets its own).
    _head_timer: asyncio.TimerHandle | None = None

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_head():
            self._arm()  # the first bytes of a new request: its head must follow in time
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm()  # the head is in; the application reads the body

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle keep-alive connections are closed by uvicorn; a new request restarts the timer.
        self._disarm()

    def _too_slow(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            log.info("connection closed: request head not received in time")
            self.transport.write(TIMEOUT_RESPONSE)
            self.transport.close()
