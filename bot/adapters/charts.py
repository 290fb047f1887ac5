# Over 400 lines on purpose: both charts and the warmed worker that draws them (one boundary).
"""Charts as PNG bytes: the barometer radar (with a group overlay) and the statistics funnel.

matplotlib's object API with the Agg canvas only: no ``pyplot``, so no global figure state and
nothing shown on screen. Drawing is CPU-bound Python that holds the GIL, so async code never
draws itself: :func:`render` runs a drawing function in a small process pool (a ``forkserver``
or ``spawn`` worker, warmed up once), and the event loop only waits for the bytes. matplotlib
is imported in that worker only (the server's own memory stays small); where no worker can be
started, a thread is used instead. Like any ``spawn``/``forkserver`` worker, it imports the
program's main module again: entry points keep the ``if __name__ == "__main__":`` guard (the
``passerelle`` command, ``python -m bot.cli`` and the benchmarks do).

The radar keeps, per set of spokes and title, its static parts (axes, grid, labels, title)
drawn once; each chart restores that background and draws only its series, subtitle and
legend (blitting), which is what makes it fast. Image sizes are fixed (see
:data:`RADAR_SIZE`, :data:`FUNNEL_SIZE`) whatever the content.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import io
import logging
import math
import multiprocessing
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from matplotlib.artist import Artist
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon

log = logging.getLogger(__name__)
P = ParamSpec("P")

DPI = 100
#: Pixel sizes of the images (width, height).
RADAR_SIZE = (900, 900)
FUNNEL_SIZE = (1000, 640)
MAX_SCORE = 4

#: Colour-blind-safe palette (Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
#: Spoke labels by dimension: dark tones, distinct from the series colours.
DIMENSION_COLOURS = ("#1F3A93", "#1B6E4F", "#7B2D83", "#7A5200")

#: PNG compression (zlib level): 1 takes about half the time of the default 6, for 7 % more bytes.
PNG_LEVEL = 1
#: Radar backgrounds kept (one per language and title, in practice).
TEMPLATES = 8
#: A worker process is replaced after this many charts (bounds its memory over months).
TASKS_PER_WORKER = 500

_LOCK = threading.Lock()


@dataclass(frozen=True)
class RadarSeries:
    """One line on the radar: ``values`` in the order of the spokes, ``None`` when unknown."""

    name: str
    values: Sequence[float | None]
    colour: str = PALETTE[0]
    #: The previous round: drawn light and dashed, behind the others.
    faded: bool = False


@dataclass(frozen=True)
class Spoke:
    label: str
    group: str = ""


def _figure(size: tuple[int, int]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _encode(figure: Figure) -> bytes:
    """The canvas as it is now (drawn or blitted), as an opaque RGB PNG."""
    from PIL import Image as PILImage

    canvas: Any = figure.canvas
    width, height = canvas.get_width_height()
    rgba = PILImage.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    rgba.convert("RGB").save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def _png(figure: Figure) -> bytes:
    figure.canvas.draw()
    return _encode(figure)


def _closed(angles: Sequence[float], values: Sequence[float | None]) -> tuple[list[float], ...]:
    points = [(a, v) for a, v in zip(angles, values, strict=True) if v is not None]
    if not points:
        return [], []
    return [p[0] for p in points] + [points[0][0]], [p[1] for p in points] + [points[0][1]]


class _Radar:
    """One radar's figure with its static parts; :meth:`render` adds the series. With
    ``blit``, the static parts are drawn once here and restored for every chart."""

    def __init__(self, spokes: Sequence[Spoke], title: str, *, blit: bool = True) -> None:
        from matplotlib.projections.polar import PolarAxes

        figure = _figure(RADAR_SIZE)
        figure.subplots_adjust(left=0.2, right=0.8, top=0.8, bottom=0.17)
        axes = figure.add_subplot(projection="polar")
        assert isinstance(axes, PolarAxes)
        self.angles = [2 * math.pi * i / len(spokes) for i in range(len(spokes))]
        axes.set_theta_offset(math.pi / 2)
        axes.set_theta_direction(-1)
        axes.set_ylim(0, MAX_SCORE)
        axes.set_yticks(range(MAX_SCORE + 1))
        axes.set_yticklabels([str(i) for i in range(MAX_SCORE + 1)], fontsize=8, color="#555555")
        axes.set_rlabel_position(360 / len(spokes) / 2)
        axes.set_xticks(self.angles)
        axes.set_xticklabels(
            [textwrap.fill(s.label, 16) for s in spokes], fontsize=9, linespacing=1.05
        )
        axes.tick_params(axis="x", pad=14)
        self.groups = list(dict.fromkeys(s.group for s in spokes if s.group))
        self.group_colour = {
            g: DIMENSION_COLOURS[i % len(DIMENSION_COLOURS)] for i, g in enumerate(self.groups)
        }
        for tick_label, spoke in zip(axes.get_xticklabels(), spokes, strict=True):
            if spoke.group:
                tick_label.set_color(self.group_colour[spoke.group])
        axes.grid(color="#BBBBBB", linewidth=0.6)
        axes.set_autoscale_on(False)
        figure.suptitle(title, fontsize=15, fontweight="bold", y=0.965)
        self.figure, self.axes, self.blit = figure, axes, blit
        self.background: Any = None
        if blit:
            figure.canvas.draw()
            self.background = figure.canvas.copy_from_bbox(figure.bbox)  # type: ignore[attr-defined]

    def render(
        self, series: Sequence[RadarSeries], subtitle: str, *, legacy: bool = False
    ) -> bytes:
        from matplotlib.patches import Patch

        figure, axes = self.figure, self.axes
        fills: list[Polygon] = []
        lines: list[Line2D] = []
        for one in sorted(series, key=lambda s: not s.faded):
            xs, ys = _closed(self.angles, one.values)
            if not xs:
                continue
            if one.faded:
                (line,) = axes.plot(
                    xs, ys, color=one.colour, linewidth=1.5, linestyle="--", alpha=0.35
                )
                fills += axes.fill(xs, ys, color=one.colour, alpha=0.06)
            else:
                (line,) = axes.plot(
                    xs, ys, color=one.colour, linewidth=2.2, marker="o", markersize=5
                )
                fills += axes.fill(xs, ys, color=one.colour, alpha=0.18)
            line.set_label(one.name)
            lines.append(line)
        extra: list[Artist] = []
        if subtitle:
            extra.append(
                figure.text(0.5, 0.915, subtitle, ha="center", fontsize=10, color="#444444")
            )
        legend_items: list[Artist] = [
            *lines,
            *(Patch(color=self.group_colour[g], label=g) for g in self.groups),
        ]
        if legend_items:
            extra.append(
                figure.legend(
                    handles=legend_items,
                    loc="lower center",
                    ncol=min(3, len(legend_items)),
                    fontsize=9,
                    frameon=False,
                )
            )
        try:
            if legacy:  # how charts were drawn before (full draw, matplotlib's PNG writer)
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
                return buffer.getvalue()
            if not self.blit:
                return _png(figure)
            canvas: Any = figure.canvas
            canvas.restore_region(self.background)
            for artist in [*fills, *lines]:  # patches under lines, as a full draw orders them
                axes.draw_artist(artist)
            for artist in extra:
                figure.draw_artist(artist)
            return _encode(figure)
        finally:
            for artist in [*fills, *lines, *extra]:
                artist.remove()


_RADARS: OrderedDict[tuple[tuple[Spoke, ...], str], _Radar] = OrderedDict()


def radar_png(
    spokes: Sequence[Spoke],
    series: Sequence[RadarSeries],
    title: str,
    *,
    subtitle: str = "",
    cached: bool = True,
    legacy: bool = False,
) -> bytes:
    """A radar of scores 0–4, one spoke per criterion, spoke labels coloured by dimension.

    ``cached=False`` builds the figure from scratch (``legacy`` also draws it the way it was
    drawn before the background cache): for the benchmark's baseline only."""
    if len(spokes) < 3:
        raise ValueError("a radar chart needs at least three spokes")
    for one in series:
        if len(one.values) != len(spokes):
            raise ValueError(f"series {one.name!r} has {len(one.values)} values, not {len(spokes)}")
    with _LOCK:
        if not cached:
            return _Radar(spokes, title, blit=False).render(series, subtitle, legacy=legacy)
        key = (tuple(spokes), title)
        radar = _RADARS.get(key)
        if radar is None:
            radar = _RADARS[key] = _Radar(spokes, title)
            if len(_RADARS) > TEMPLATES:
                _RADARS.popitem(last=False)
        _RADARS.move_to_end(key)
        return radar.render(series, subtitle)


@dataclass(frozen=True)
class FunnelStep:
    """A step of the funnel; ``count`` is ``None`` when hidden (fewer than k people)."""

    label: str
    count: int | None


def funnel_png(steps: Sequence[FunnelStep], title: str, *, hidden_label: str = "masqué") -> bytes:
    """Horizontal centred bars, widest first: how many conversations reached each step."""
    if not steps:
        raise ValueError("a funnel needs at least one step")
    with _LOCK:
        figure = _figure(FUNNEL_SIZE)
        figure.subplots_adjust(left=0.3, right=0.97, top=0.88, bottom=0.06)
        axes = figure.add_subplot()
        known = [s.count for s in steps if s.count is not None]
        top = max(known) if known and max(known) > 0 else 1
        for row, step in enumerate(steps):
            y = len(steps) - 1 - row
            if step.count is None:
                axes.barh(y, top * 0.02, left=-top * 0.01, color="#DDDDDD", height=0.7)
                axes.text(0, y, hidden_label, ha="center", va="center", fontsize=9, color="#555555")
                continue
            width = step.count
            axes.barh(y, width, left=-width / 2, color=PALETTE[0], height=0.7)
            share = f" ({round(100 * step.count / top)} %)" if top else ""
            axes.text(
                0,
                y,
                f"{step.count}{share}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if step.count > top * 0.25 else "black",
            )
        axes.set_yticks(range(len(steps)))
        axes.set_yticklabels(
            [textwrap.fill(s.label, 38) for s in reversed(steps)], fontsize=9, linespacing=1.05
        )
        axes.set_xlim(-top * 0.55, top * 0.55)
        axes.set_xticks([])
        axes.tick_params(axis="y", length=0)
        for side in ("top", "right", "bottom", "left"):
            axes.spines[side].set_visible(False)
        figure.suptitle(title, fontsize=14, fontweight="bold")
        return _png(figure)


# -- off the event loop ---------------------------------------------------------------------------
_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_THREADS_ONLY = False
_AT_EXIT = False
#: A worker has drawn at least once: a broken pool after that is a crash, not a set-up problem.
_WORKED = False


def _worked() -> None:
    global _WORKED
    _WORKED = True


def warm_up() -> None:
    """In a new worker: import matplotlib, load the fonts, draw once, so that the first chart
    a person waits for is as fast as the next ones. Ctrl+C and SIGTERM sent to the whole group
    (a terminal, systemd) are for the server: it stops its worker itself, in order."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.sentinel is not None:
        # However the server ends (even killed), its worker does not outlive it.
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    radar_png([Spoke("a"), Spoke("b"), Spoke("c")], [RadarSeries("x", [1.0, 2.0, 3.0])], "x")
    _RADARS.clear()


def _exit_with(sentinel: int) -> None:
    import multiprocessing.connection
    import os

    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _context() -> BaseContext:
    methods = multiprocessing.get_all_start_methods()
    # Never fork the server itself (threads, sockets, the event loop): a clean worker instead.
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _pool() -> concurrent.futures.ProcessPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=_context(),
                initializer=warm_up,
                max_tasks_per_child=TASKS_PER_WORKER,
            )
            # At exit, the executor waits for its worker to finish what it draws (seconds, if
            # it is warming up); nothing it holds needs keeping, so it is stopped first. The
            # executor registers its own wait the same (threading) way: ours runs before it.
            global _AT_EXIT
            if not _AT_EXIT:
                _AT_EXIT = True
                getattr(threading, "_register_atexit", atexit.register)(stop)
        return _POOL


def stop() -> None:
    """When the server stops, and at exit: an idle worker is stopped the ordinary way; a busy
    one (still warming up, or drawing for someone who has gone) is stopped without waiting, so a
    server stopped just after its start does not wait for matplotlib to load. Either way the
    executor is released while the interpreter is still whole."""
    pool = _POOL
    if pool is None:
        return
    if getattr(pool, "_pending_work_items", None):
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                process.kill()  # it ignores SIGTERM (see warm_up)
    shutdown()


def prestart() -> concurrent.futures.Future[int] | None:
    """Start the chart worker now (at server start-up), not when the first person waits. The
    future is done once the worker is warm (None: charts are drawn in a thread here)."""
    if _THREADS_ONLY:
        return None
    try:
        return _pool().submit(_pid)
    except (OSError, RuntimeError) as exc:
        _give_up(exc)
        return None


def warm_soon() -> None:
    """:func:`prestart` if no worker was started yet (cheap after that, so it can be called on
    every turn): when a conversation enters the barometer, whose first chart comes after
    several answers, so the worker is warm by then."""
    if _POOL is None and not _THREADS_ONLY:
        prestart()


def _pid() -> int:
    import os

    return os.getpid()


def _give_up(exc: BaseException) -> None:
    global _THREADS_ONLY
    _THREADS_ONLY = True
    log.warning("no chart worker process (%s): charts are drawn in a thread", type(exc).__name__)


def shutdown() -> None:
    """Stop the chart worker (tests, benchmarks; the interpreter does it at exit too)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


async def render(function: Callable[P, bytes], *args: P.args, **kwargs: P.kwargs) -> bytes:
    """``function(*args, **kwargs)`` in the chart worker; the event loop only waits for it.

    If the worker died (killed, out of memory), a new one is started for the next chart and
    this one is drawn in a thread; if no process can be started here, threads it is."""
    call = functools.partial(function, *args, **kwargs)
    loop = asyncio.get_running_loop()
    if not _THREADS_ONLY:
        try:
            future = loop.run_in_executor(_pool(), call)
        except (OSError, RuntimeError) as exc:  # no process can be started
            _give_up(exc)
        else:
            try:
                png = await future
            except concurrent.futures.process.BrokenProcessPool as exc:
                if not _WORKED:  # it never drew anything: it cannot start here
                    _give_up(exc)
                else:
                    log.warning("chart worker stopped (%s): starting a new one", type(exc).__name__)
                shutdown()
            else:
                _worked()
                return png
    return await asyncio.to_thread(call)


# -- measuring (bench/charts.py) ------------------------------------------------------------------
def rss_mb() -> float:
    """Resident memory of this process in MB, from /proc (Linux), else the peak (getrusage)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timings(
    runs: int, function: Callable[P, bytes], *args: P.args, **kwargs: P.kwargs
) -> list[float]:
    """Milliseconds of each of ``runs`` calls, after one warm-up (run it where charts are drawn:
    ``loop.run_in_executor(charts._pool(), charts.timings, …)``)."""
    import time

    function(*args, **kwargs)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function(*args, **kwargs)
        samples.append((time.perf_counter() - start) * 1000)
    return samples
