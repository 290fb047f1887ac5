"""Charts: drawn in a worker process (never on the server's event loop), the same picture with
the cached background as drawn from scratch, and a dead worker replaced. Speed, lag and memory
are measured by bench/charts.py, not here."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bot.adapters import charts
from bot.adapters.charts import PALETTE, RADAR_SIZE, RadarSeries, radar_png, render
from tests.harness.charts import FIRST, SPOKES
from tests.harness.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
SECOND = [
    RadarSeries("Avant", [2.0] * 8, PALETTE[0], faded=True),
    RadarSeries("Patients", [float((i * 3) % 5) for i in range(8)], PALETTE[1]),
]


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.size == RADAR_SIZE
    return np.asarray(image.convert("RGB")).astype(int)


def test_the_cached_background_draws_the_same_chart_as_from_scratch() -> None:
    """Blitting: a chart drawn on the cached background equals the one drawn from scratch,
    and nothing of the previous chart on that background remains."""
    radar_png(SPOKES, FIRST, "Baromètre", subtitle="Groupe ABCD-2345")
    cached = pixels(radar_png(SPOKES, SECOND, "Baromètre", subtitle="Évaluation n° 2"))
    fresh = pixels(radar_png(SPOKES, SECOND, "Baromètre", subtitle="Évaluation n° 2", cached=False))
    differ = np.abs(cached - fresh).max(axis=2) > 40
    assert differ.mean() < 0.001  # a few antialiased pixels at most
    previous = pixels(radar_png(SPOKES, FIRST, "Baromètre", subtitle="Groupe ABCD-2345"))
    assert (np.abs(previous - fresh).max(axis=2) > 40).mean() > 0.005  # a different chart


def test_charts_are_drawn_in_a_worker_process_not_in_the_server() -> None:
    """The process awaiting a chart never imports matplotlib: the drawing (CPU-bound, holding
    the GIL) happens in the worker, so the event loop keeps serving meanwhile."""
    script = (
        "import asyncio, json, os, sys\n"
        "from bot.adapters import charts\n"
        "from tests.harness.charts import FIRST, SPOKES\n"
        "async def main():\n"
        "    png = await charts.render(charts.radar_png, SPOKES, FIRST, 'Baromètre')\n"
        "    pid = await asyncio.get_running_loop().run_in_executor(charts._pool(), charts._pid)\n"
        "    print(json.dumps({'size': len(png), 'png': png[:8].hex(), 'worker': pid,\n"
        "                      'me': os.getpid(), 'matplotlib': 'matplotlib' in sys.modules}))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert bytes.fromhex(seen["png"]) == b"\x89PNG\r\n\x1a\n" and seen["size"] > 5000
    assert seen["worker"] != seen["me"]
    assert seen["matplotlib"] is False


async def test_a_killed_worker_is_replaced_and_no_chart_is_lost() -> None:
    import asyncio

    await render(radar_png, SPOKES, FIRST, "Baromètre")
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(charts._pool(), charts._pid)
    os.kill(first, signal.SIGKILL)
    # The chart asked for while the worker is dead is still drawn (in a thread this once)…
    assert pixels(await render(radar_png, SPOKES, SECOND, "Baromètre")).any()
    # …and the next one goes to a new worker.
    assert pixels(await render(radar_png, SPOKES, FIRST, "Baromètre")).any()
    second = await loop.run_in_executor(charts._pool(), charts._pid)
    assert second != first


def test_the_worker_does_not_outlive_a_killed_server() -> None:
    script = (
        "import asyncio, os, signal\n"
        "from bot.adapters import charts\n"
        "from tests.harness.charts import FIRST, SPOKES\n"
        "async def main():\n"
        "    await charts.render(charts.radar_png, SPOKES, FIRST, 'Baromètre')\n"
        "    pid = await asyncio.get_running_loop().run_in_executor(charts._pool(), charts._pid)\n"
        "    print(pid, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL
    worker = int(done.stdout)
    wait_until(lambda: not alive(worker), "the old worker process gone")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text()
