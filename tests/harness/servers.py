"""One way to run an ASGI app for a test: a real uvicorn server on a loopback socket bound to
port 0 and kept open (so no other process can take the port between choosing and listening).

``with serve(app) as url`` runs it in a thread with its own event loop (for synchronous tests
and clients); ``async with serve(app) as url`` runs it in the caller's loop (so the app and the
test share it, as the fake Bot API and PTB do). Either way the app's lifespan runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from tests.harness.wait import DEADLINE


class serve:
    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((host, 0))
        port = self.sock.getsockname()[1]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            ws="none",
            backlog=4096,
            # Longer than any test's idle gap: a client reusing a kept-alive connection never
            # races uvicorn closing it (httpx.ReadError under load with the 5 s default).
            timeout_keep_alive=int(DEADLINE),
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    # -- in a thread -------------------------------------------------------------------------
    def __enter__(self) -> str:
        thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + DEADLINE
        while not self.server.started:
            if not thread.is_alive():
                self.sock.close()
                raise RuntimeError("the test server stopped during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test server did not start within {DEADLINE:.0f} s")
            time.sleep(0.005)
        return self.url

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=DEADLINE)
        self.sock.close()

    # -- in the caller's event loop ----------------------------------------------------------
    async def __aenter__(self) -> str:
        task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        self._task = task
        deadline = time.monotonic() + DEADLINE
        while not self.server.started:
            if task.done():
                self.sock.close()
                task.result()
                raise RuntimeError("the test server stopped during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test server did not start within {DEADLINE:.0f} s")
            await asyncio.sleep(0.005)
        return self.url

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(SystemExit):
                await self._task
        self.sock.close()
