"""Chart benchmark: render time, event-loop lag while rendering, memory after rendering.

    .venv/bin/python bench/charts.py [--runs 20]

Prints figures only (no assertion), each beside a baseline measured in the same run: charts as
they were drawn before (from scratch, matplotlib's PNG writer, in a thread of the server's own
process), measured in a child process so that its matplotlib does not weigh on this one.
Targets: radar < 100 ms, loop lag during a render < 10 ms, memory after rendering < 120 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.adapters import charts  # noqa: E402  (imports no matplotlib: charts are drawn elsewhere)

RADAR_TARGET_MS, LAG_TARGET_MS, MEMORY_TARGET_MB = 100.0, 10.0, 120.0
RENDERS_FOR_LAG = 10


def chart_data() -> tuple[list[charts.Spoke], list[charts.RadarSeries], list[charts.FunnelStep]]:
    from bot.knowledge.loader import load

    kb = load(ROOT / "contenus")
    assert kb.barometer is not None
    criteria = kb.barometer.criteria()
    dimensions = kb.barometer.dimensions
    spokes = [charts.Spoke(c.short["fr"], dimensions[d].label["fr"]) for d, c in criteria]
    count = len(spokes)
    series = [
        charts.RadarSeries("Avant", [2.0] * count, charts.PALETTE[0], faded=True),
        charts.RadarSeries("Professionnels", [float(i % 5) for i in range(count)]),
        charts.RadarSeries(
            "Patients", [float((i * 3) % 5) for i in range(count)], charts.PALETTE[1]
        ),
    ]
    steps = [charts.FunnelStep(f"question {i}", 200 - 15 * i) for i in range(10)]
    steps[4] = charts.FunnelStep("question masquée", None)
    return spokes, series, steps


async def loop_lag(render: Callable[[], Awaitable[object]], renders: int) -> list[float]:
    """Lateness (ms) of each tick of a 5 ms ticker while ``renders`` charts are awaited."""
    late: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            late.append((time.perf_counter() - start) * 1000 - 5)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    for _ in range(renders):
        await render()
    done.set()
    await task
    return late


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else max(values)


def baseline(runs: int) -> dict[str, float]:
    """In a child process: the previous way, from scratch, in a thread of the same process."""
    spokes, series, steps = chart_data()

    def radar() -> bytes:
        return charts.radar_png(
            spokes, series, "Baromètre", subtitle="Groupe ABCD-2345", cached=False, legacy=True
        )

    radar_ms = statistics.median(charts.timings(runs, radar))
    funnel_ms = statistics.median(
        charts.timings(runs, charts.funnel_png, steps, "Parcours des conversations")
    )
    lag = asyncio.run(loop_lag(lambda: asyncio.to_thread(radar), RENDERS_FOR_LAG))
    return {
        "radar": radar_ms,
        "funnel": funnel_ms,
        "lag": max(lag),
        "lag95": p95(lag),
        "memory": charts.rss_mb(),
    }


async def current(runs: int) -> dict[str, float]:
    """This process as the server runs: charts awaited from the event loop, drawn in the worker."""
    spokes, series, steps = chart_data()
    loop = asyncio.get_running_loop()
    pool = charts._pool()
    started = time.perf_counter()
    await loop.run_in_executor(pool, charts._pid)
    cold = (time.perf_counter() - started) * 1000

    def awaited() -> Awaitable[bytes]:
        return charts.render(
            charts.radar_png, spokes, series, "Baromètre", subtitle="Groupe ABCD-2345"
        )

    radar = await loop.run_in_executor(
        pool, charts.timings, runs, charts.radar_png, spokes, series, "Baromètre"
    )
    funnel = await loop.run_in_executor(
        pool, charts.timings, runs, charts.funnel_png, steps, "Parcours des conversations"
    )
    round_trips = []
    for _ in range(runs):
        start = time.perf_counter()
        await awaited()
        round_trips.append((time.perf_counter() - start) * 1000)
    idle = await loop_lag(lambda: asyncio.sleep(0.06), RENDERS_FOR_LAG)
    lag = await loop_lag(awaited, RENDERS_FOR_LAG)
    worker_memory = await loop.run_in_executor(pool, charts.rss_mb)
    return {
        "cold": cold,
        "radar": statistics.median(radar),
        "awaited": statistics.median(round_trips),
        "funnel": statistics.median(funnel),
        "idle": max(idle),
        "lag": max(lag),
        "lag95": p95(lag),
        "memory": charts.rss_mb(),
        "worker_memory": worker_memory,
        "matplotlib_here": float("matplotlib" in sys.modules),
    }


def verdict(value: float, target: float) -> str:
    return "ok" if value < target else "OVER TARGET"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        print(json.dumps(baseline(args.runs)))
        return 0

    child = subprocess.run(
        [sys.executable, __file__, "--baseline", "--runs", str(args.runs)],
        capture_output=True,
        text=True,
        check=True,
    )
    before: dict[str, Any] = json.loads(child.stdout)
    now = asyncio.run(current(args.runs))
    charts.shutdown()

    def row(name: str, old: float | None, new: float, target: float | None, unit: str) -> None:
        ratio = f"{new / old:5.2f}" if old else "    -"
        was = f"{old:8.1f}" if old is not None else "       -"
        aim = f"< {target:.0f} {unit}: {verdict(new, target)}" if target else ""
        print(f"{name:<44} {was} {new:8.1f} {ratio}   {aim}")

    print(f"Charts, {args.runs} runs (baseline: drawn from scratch in a thread, same run)")
    print(f"{'':<44} {'baseline':>8} {'now':>8} ratio   target")
    row("radar, warm (median ms, where it is drawn)", before["radar"], now["radar"],
        RADAR_TARGET_MS, "ms")  # fmt: skip
    row("radar, awaited from the event loop (ms)", None, now["awaited"], None, "")
    row("funnel, warm (median ms)", before["funnel"], now["funnel"], None, "")
    row(f"event-loop lag during {RENDERS_FOR_LAG} radars (worst ms)", before["lag"], now["lag"],
        LAG_TARGET_MS, "ms")  # fmt: skip
    row("  95th percentile of the ticks (ms)", before["lag95"], now["lag95"], None, "")
    row("  the same ticker, nothing to draw (worst ms)", None, now["idle"], None, "")
    row("memory after rendering, server process (MB)", before["memory"], now["memory"],
        MEMORY_TARGET_MB, "MB")  # fmt: skip
    row("memory after rendering, chart worker (MB)", None, now["worker_memory"],
        MEMORY_TARGET_MB, "MB")  # fmt: skip
    row("chart worker start, warm-up included (ms)", None, now["cold"], None, "")
    print(f"matplotlib imported by the server process: {'yes' if now['matplotlib_here'] else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
