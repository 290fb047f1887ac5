"""Charts as PNG bytes: the barometer radar (with a group overlay) and the statistics funnel.

matplotlib's object API with the Agg canvas only: no ``pyplot``, so no global figure state and
nothing shown on screen. Every function builds its own :class:`~matplotlib.figure.Figure`, and a
module lock serialises rendering, so they are safe to call from worker threads
(``await asyncio.to_thread(radar_png, ...)``) and never block the event loop when called so.
Image sizes are fixed (see :data:`RADAR_SIZE`, :data:`FUNNEL_SIZE`) whatever the content.
"""

from __future__ import annotations

import io
import math
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.projections.polar import PolarAxes

DPI = 100
#: Pixel sizes of the images (width, height).
RADAR_SIZE = (900, 900)
FUNNEL_SIZE = (1000, 640)
MAX_SCORE = 4

#: Colour-blind-safe palette (Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
#: Spoke labels by dimension: dark tones, distinct from the series colours.
DIMENSION_COLOURS = ("#1F3A93", "#1B6E4F", "#7B2D83", "#7A5200")

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


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _figure(size: tuple[int, int]) -> Figure:
    return Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)


def radar_png(
    spokes: Sequence[Spoke],
    series: Sequence[RadarSeries],
    title: str,
    *,
    subtitle: str = "",
) -> bytes:
    """A radar of scores 0–4, one spoke per criterion, spoke labels coloured by dimension."""
    if len(spokes) < 3:
        raise ValueError("a radar chart needs at least three spokes")
    for one in series:
        if len(one.values) != len(spokes):
            raise ValueError(f"series {one.name!r} has {len(one.values)} values, not {len(spokes)}")
    with _LOCK:
        figure = _figure(RADAR_SIZE)
        figure.subplots_adjust(left=0.2, right=0.8, top=0.8, bottom=0.17)
        axes = figure.add_subplot(projection="polar")
        assert isinstance(axes, PolarAxes)
        angles = [2 * math.pi * i / len(spokes) for i in range(len(spokes))]
        axes.set_theta_offset(math.pi / 2)
        axes.set_theta_direction(-1)
        axes.set_ylim(0, MAX_SCORE)
        axes.set_yticks(range(MAX_SCORE + 1))
        axes.set_yticklabels([str(i) for i in range(MAX_SCORE + 1)], fontsize=8, color="#555555")
        axes.set_rlabel_position(360 / len(spokes) / 2)
        axes.set_xticks(angles)
        axes.set_xticklabels(
            [textwrap.fill(s.label, 16) for s in spokes], fontsize=9, linespacing=1.05
        )
        axes.tick_params(axis="x", pad=14)
        groups = list(dict.fromkeys(s.group for s in spokes if s.group))
        group_colour = {
            g: DIMENSION_COLOURS[i % len(DIMENSION_COLOURS)] for i, g in enumerate(groups)
        }
        for tick_label, spoke in zip(axes.get_xticklabels(), spokes, strict=True):
            if spoke.group:
                tick_label.set_color(group_colour[spoke.group])
        axes.grid(color="#BBBBBB", linewidth=0.6)
        ordered = sorted(series, key=lambda s: not s.faded)
        handles = []
        for one in ordered:
            points = [
                (angle, value)
                for angle, value in zip(angles, one.values, strict=True)
                if value is not None
            ]
            if not points:
                continue
            xs = [p[0] for p in points] + [points[0][0]]
            ys = [p[1] for p in points] + [points[0][1]]
            if one.faded:
                (line,) = axes.plot(
                    xs, ys, color=one.colour, linewidth=1.5, linestyle="--", alpha=0.35
                )
                axes.fill(xs, ys, color=one.colour, alpha=0.06)
            else:
                (line,) = axes.plot(
                    xs, ys, color=one.colour, linewidth=2.2, marker="o", markersize=5
                )
                axes.fill(xs, ys, color=one.colour, alpha=0.18)
            line.set_label(one.name)
            handles.append(line)
        figure.suptitle(title, fontsize=15, fontweight="bold", y=0.965)
        if subtitle:
            figure.text(0.5, 0.915, subtitle, ha="center", fontsize=10, color="#444444")
        legend_items: list[object] = list(handles)
        legend_items += [Patch(color=group_colour[g], label=g) for g in groups]
        if legend_items:
            figure.legend(
                handles=legend_items,
                loc="lower center",
                ncol=min(3, len(legend_items)),
                fontsize=9,
                frameon=False,
            )
        return _png(figure)


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
