"""Chart rendering benchmark: warm render times, memory of the plotting stack, loop lag.

    .venv/bin/python bench/charts.py [--runs 20]

Prints figures only (no assertion): the target is under 150 ms per chart, warm, and a loop lag
while rendering in a worker thread close to the lag with nothing to do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    """Resident memory of this process, from /proc (Linux), else the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(render: Callable[[], bytes], runs: int) -> tuple[float, float, int]:
    render()  # warm-up: fonts, caches
    samples = []
    size = 0
    for _ in range(runs):
        start = time.perf_counter()
        size = len(render())
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples), size


async def loop_lag(render: Callable[[], bytes], renders: int, in_thread: bool) -> float:
    """Worst lateness (ms) of a 5 ms ticker while ``renders`` charts are drawn."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, (time.perf_counter() - start) * 1000 - 5)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    for _ in range(renders):
        if in_thread:
            await asyncio.to_thread(render)
        else:
            render()
            await asyncio.sleep(0)
    done.set()
    await task
    return worst


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    before = rss_mb()
    start = time.perf_counter()
    from bot import charts

    import_ms = (time.perf_counter() - start) * 1000
    after = rss_mb()

    from bot.knowledge.loader import load

    kb = load(Path(__file__).resolve().parent.parent / "contenus")
    assert kb.barometer is not None
    criteria = kb.barometer.criteria()
    spokes = [
        charts.Spoke(c.short["fr"], kb.barometer.dimensions[d].label["fr"]) for d, c in criteria
    ]
    pro = [float(i % 5) for i in range(len(spokes))]
    usr = [float((i * 3) % 5) for i in range(len(spokes))]
    old = [2.0] * len(spokes)

    def radar() -> bytes:
        return charts.radar_png(
            spokes,
            [
                charts.RadarSeries("Avant", old, charts.PALETTE[0], faded=True),
                charts.RadarSeries("Professionnels", pro, charts.PALETTE[0]),
                charts.RadarSeries("Patients", usr, charts.PALETTE[1]),
            ],
            "Baromètre",
            subtitle="Groupe ABCD-2345, évaluation n° 2",
        )

    steps = [charts.FunnelStep(f"question {i}", 200 - 15 * i) for i in range(10)]
    steps[4] = charts.FunnelStep("question masquée", None)

    def funnel() -> bytes:
        return charts.funnel_png(steps, "Parcours des conversations")

    print(f"import bot.charts (matplotlib, Agg): {import_ms:.0f} ms")
    print(
        f"memory: {before:.0f} MB before, {after:.0f} MB after importing the plotting stack "
        f"(+{after - before:.0f} MB)"
    )
    for name, render in (("radar (3 series, 11 spokes)", radar), ("funnel (10 steps)", funnel)):
        median, worst, size = timed(render, args.runs)
        flag = "ok" if median < 150 else "OVER TARGET"
        print(
            f"{name}: median {median:.1f} ms, max {worst:.1f} ms, {size // 1024} KiB "
            f"[target < 150 ms: {flag}]"
        )
    print(f"memory after rendering: {rss_mb():.0f} MB")

    idle = asyncio.run(loop_lag(lambda: b"", 5, in_thread=False))
    threaded = asyncio.run(loop_lag(radar, 5, in_thread=True))
    inline = asyncio.run(loop_lag(radar, 5, in_thread=False))
    print(
        f"event-loop lag (worst, 5 ms ticker, 5 radars): idle {idle:.1f} ms, "
        f"rendering in a worker thread {threaded:.1f} ms, rendering on the loop {inline:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
