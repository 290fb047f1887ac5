"""Waiting for a signal instead of sleeping: poll a condition until it holds, under a generous
deadline that fails with a message saying what never happened."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Generous: the machine running the tests may be busy; a passing test never waits this long.
DEADLINE = 120.0
#: How long a browser action or ``expect`` waits for its signal (the answer shown, the log no
#: longer busy), in milliseconds: a bound on a hang, not a speed target. Playwright's 5 s
#: default is shorter than one turn drawing a chart on a loaded 2-core machine.
BROWSER_WAIT_MS = 30_000


def wait_until(condition: Callable[[], object], what: str = "", seconds: float = DEADLINE) -> None:
    """Return as soon as ``condition()`` is true; fail after ``seconds`` saying ``what``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {seconds:.0f} s: {what or condition}")
        time.sleep(0.02)


async def eventually(
    condition: Callable[[], object | Awaitable[object]], what: str = "", seconds: float = DEADLINE
) -> None:
    """:func:`wait_until` for a coroutine (the event loop keeps running while it waits);
    ``condition`` may be a coroutine function (a store's query)."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {seconds:.0f} s: {what or condition}")
        await asyncio.sleep(0.02)


async def within(awaitable: Awaitable[T], what: str, seconds: float = DEADLINE) -> T:
    """Await ``awaitable``; fail after ``seconds`` saying ``what`` never finished."""
    async with asyncio.timeout(seconds) as scope:
        try:
            return await awaitable
        except TimeoutError:
            if not scope.expired():
                raise
    raise AssertionError(f"still waiting after {seconds:.0f} s: {what}")
