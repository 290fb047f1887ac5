"""Loopback ports for servers the tests start in another process (which cannot be handed a
socket bound to port 0).

A port is taken below the kernel's ephemeral range, so no ``bind(0)`` and no outgoing
connection can be given it, and it is locked with ``flock`` on a file for as long as this
process lives, so two pytest workers (or two runs side by side) never get the same one. Servers
in this process bind port 0 and keep their socket instead (:func:`tests.harness.servers.serve`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path
from typing import IO

#: Below Linux's default ephemeral range (32768-60999), above the well-known services.
FIRST, LAST = 20000, 32767
LOCKS = Path(tempfile.gettempdir()) / "passerelle-test-ports"
_held: dict[int, IO[bytes]] = {}


def _ephemeral() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nobody listens on, reserved for this process until it exits."""
    LOCKS.mkdir(exist_ok=True)
    ephemeral = _ephemeral()
    candidates = [p for p in range(FIRST, LAST + 1) if p not in ephemeral and p not in _held]
    start = random.randrange(len(candidates))
    for port in candidates[start:] + candidates[:start]:
        lock = (LOCKS / str(port)).open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            lock.close()
            if error.errno in (errno.EAGAIN, errno.EACCES):
                continue  # another process holds it
            raise
        if not _bindable(port):
            lock.close()  # something outside the tests listens there
            continue
        _held[port] = lock
        return port
    raise RuntimeError(
        f"no free loopback port in {FIRST}-{LAST} (locks in {LOCKS}, pid {os.getpid()})"
    )
