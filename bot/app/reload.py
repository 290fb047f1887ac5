"""The engine every channel serves, swapped atomically when the knowledge base is reloaded.

Channels keep an :class:`EngineHolder` (not an :class:`Engine`) and read ``holder.engine`` once
per request or update. :class:`Reloader` loads and validates ``contenus/`` off the event loop,
builds the new engine of every holder, then assigns them all without yielding to the loop: a
request sees either the old base everywhere or the new one everywhere. An invalid base is
refused with the validator's messages and the old engines keep serving.

Sessions started on the old version carry over: :meth:`Engine.upgrade` keeps the same node if
it still exists, else goes back to the nearest earlier question, with one sentence; an open
« which comes first? » stays open while every answer still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

from bot.engine.flow import Engine
from bot.knowledge.loader import load_with_problems
from bot.knowledge.model import KnowledgeBase

log = logging.getLogger(__name__)

EngineFactory = Callable[[KnowledgeBase], Engine]


class EngineHolder:
    """One shared, swappable reference to an engine, and how to build another one."""

    def __init__(self, engine: Engine, factory: EngineFactory | None = None) -> None:
        self.engine = engine
        modes = tuple(engine.modes.values())
        receivers = engine.receivers
        self.factory: EngineFactory = factory or (
            lambda kb: Engine(kb, modes=modes, receivers=receivers)
        )
        self._listeners: list[Callable[[Engine], None]] = []

    @property
    def kb(self) -> KnowledgeBase:
        return self.engine.kb

    def on_swap(self, listener: Callable[[Engine], None]) -> None:
        """Call ``listener(new_engine)`` right after each swap (synchronously)."""
        self._listeners.append(listener)

    def swap(self, engine: Engine) -> None:
        self.engine = engine
        for listener in self._listeners:
            listener(engine)


def holder_of(engine: Engine | EngineHolder) -> EngineHolder:
    return engine if isinstance(engine, EngineHolder) else EngineHolder(engine)


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    version: str
    problems: tuple[str, ...] = ()


class Reloader:
    """Reloads ``directory`` (and the establishment's ``extra`` contents) into ``holders``."""

    def __init__(
        self, directory: Path, holders: list[EngineHolder], extra: Path | None = None
    ) -> None:
        self.directory = directory
        self.extra = extra
        self.holders = holders
        self._lock = asyncio.Lock()
        #: Called after a reload asked here (SIGHUP, ``POST /admin/reload``) succeeded: tells
        #: the deployment's other instances to reload too (PostgreSQL: NOTIFY).
        self.on_reloaded: list[Callable[[], Awaitable[None]]] = []

    async def reload(self, *, announce: bool = True) -> ReloadResult:
        """Reload now; with ``announce``, then tell the other instances (:attr:`on_reloaded`;
        an instance reloading because another told it does not announce again)."""
        result = await self._reload()
        if result.ok and announce:
            for hook in self.on_reloaded:
                try:
                    await hook()
                except Exception as exc:  # the local reload stands; say the others did not
                    log.warning("reload not announced to other instances: %s", type(exc).__name__)
        return result

    async def _reload(self) -> ReloadResult:
        async with self._lock:
            kb, problems = await asyncio.to_thread(load_with_problems, self.directory, self.extra)
            errors = tuple(str(p) for p in problems if p.severity == "error")
            current = self.holders[0].kb.version if self.holders else ""
            if kb is None or errors:
                log.warning("knowledge base reload refused: %d error(s)", len(errors))
                return ReloadResult(False, current, errors or ("base illisible",))
            engines = [holder.factory(kb) for holder in self.holders]
            # No await from here on: every channel switches in the same loop iteration.
            for holder, engine in zip(self.holders, engines, strict=True):
                holder.swap(engine)
            log.info("knowledge base reloaded: version %s", kb.version)
            return ReloadResult(True, kb.version)


def sighup_lifespan(reloader: Reloader) -> Callable[[object], AbstractAsyncContextManager[None]]:
    """A server lifespan reloading the knowledge base on ``SIGHUP`` (of any app: unused)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[ReloadResult]] = set()

        def on_signal() -> None:
            task = loop.create_task(reloader.reload())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        installed = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, on_signal)
            installed = True
        try:
            yield
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in list(tasks):
                with contextlib.suppress(Exception):
                    await task

    return lifespan
