"""Load proof: N simulated people × T turns each through the Telegram webhook on loopback.

The real server (durable SQLite, synchronous=FULL) under uvicorn, the fake Bot API and the
people in one process. Each person starts, consents, then sends T messages, each one after the
reply to the previous one arrived (as a person would). Counts every reply the fake Telegram
received per person: zero lost and zero duplicated, or the run fails. Prints p50/p99 latency
(POST → reply) and peak RSS. Bounded in time (``--timeout``).

    python bench/load.py                         # 1000 people × 20 turns (make soak)
    python bench/load.py --users 100 --turns 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WEBHOOK_SECRET = "load-webhook-secret-0123456789"
SECRET = b"load-pseudonym-secret-0123456789"
INPUTS = ("aide", "glossaire", "contacts", "retour")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def run(users: int, turns: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    from bot.app.engines import build_engine
    from bot.cli.compose import build_server_app
    from bot.config import Settings
    from bot.knowledge.loader import load
    from bot.server import freeze_startup_objects
    from tests.harness.fakebotapi import TOKEN, FakeBotAPI
    from tests.harness.servers import serve
    from tests.harness.telegram import settled
    from tests.harness.webhook_client import UNANSWERED, WebhookClient

    engine = build_engine(load(ROOT / "contenus"))
    latencies: list[float] = []
    redelivered = 0
    async with FakeBotAPI() as api:
        settings = Settings(
            telegram_token=TOKEN,
            telegram_api_base_url=api.base_url,
            secret=SECRET,
            db_path=workdir / "load.db",
            telegram_rate=0,
            webhook_url="https://load.invalid/telegram/webhook",
            webhook_secret=WEBHOOK_SECRET,
        )
        app = build_server_app(settings, engine, pause=0)
        async with serve(app) as url:
            freeze_startup_objects()  # as `passerelle serve` does once ready
            gate = asyncio.Semaphore(concurrency)
            telegram = WebhookClient(WEBHOOK_SECRET, connections=concurrency, timeout=60)
            async with telegram:

                async def say(person: Any, update: dict[str, Any]) -> float:
                    nonlocal redelivered
                    before = api.count_to(person.id)
                    start = time.perf_counter()
                    for attempt in range(5):  # like Telegram: no 200 → deliver again
                        try:
                            status = await telegram.post(url + "/telegram/webhook", update)
                        except UNANSWERED:
                            if attempt == 4:
                                raise
                            redelivered += 1
                            continue
                        break
                    assert status == 200, status
                    await api.wait_for(lambda: api.count_to(person.id) > before, timeout=60)
                    return time.perf_counter() - start

                async def person(index: int) -> tuple[int, int]:
                    who = api.user(3_000_000 + index)
                    async with gate:
                        await say(who, who.text("/start"))
                        consent = next(m for m in reversed(api.to_chat(who.id)) if m.buttons)
                        await say(who, who.press(consent, consent.buttons[0][1]))
                        start = api.count_to(who.id)
                        for turn in range(turns):
                            latencies.append(await say(who, who.text(INPUTS[turn % 4])))
                    return who.id, start

                began = time.perf_counter()
                starts = await asyncio.gather(*(person(i) for i in range(users)))
                elapsed = time.perf_counter() - began
            channel = app.state.telegram
            await settled(api, channel, channel.storage)  # a late duplicate would have landed
            # Every text turn is answered by exactly one message.
            got = {chat: api.count_to(chat) - start for chat, start in starts}
    lost = sum(max(0, turns - n) for n in got.values())
    duplicated = sum(max(0, n - turns) for n in got.values())
    return {
        "users": users,
        "turns": turns,
        "replies": sum(got.values()),
        "lost": lost,
        "duplicated": duplicated,
        "redelivered": redelivered,
        "seconds": elapsed,
        "rate": users * (turns + 2) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(
            asyncio.wait_for(run(args.users, args.turns, args.concurrency, Path(tmp)), args.timeout)
        )
    print(json.dumps(result))
    print(
        f"{result['users']} people × {result['turns']} turns through the webhook: "
        f"{result['replies']} replies, {result['lost']} lost, {result['duplicated']} duplicated "
        f"({result['redelivered']} POSTs re-delivered after a connection error); "
        f"{result['rate']:.0f} updates/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, peak RSS {result['rss_mb']:.0f} MB, "
        f"{result['seconds']:.0f} s"
    )
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
