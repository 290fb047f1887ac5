"""The network guard: while :func:`offline` is active, name resolution and connections to
anything but loopback fail loudly (the ``no_network`` fixture of ``tests/conftest.py``)."""

from __future__ import annotations

import _socket
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class NetworkBlocked(RuntimeError):
    """A test tried to reach something outside loopback."""


def _is_loopback(host: Any) -> bool:
    return isinstance(host, str) and (host in LOOPBACK or host.startswith("127."))


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Refuse name resolution and connections to anything but loopback while active."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            raise NetworkBlocked(f"network access blocked in tests: {address[0]}")

    def connect(self: _socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: _socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            raise NetworkBlocked(f"network access blocked in tests: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo
