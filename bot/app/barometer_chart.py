"""The barometer's charts: one person's radar, and a group's comparison (both sides overlaid,
the previous round faded behind), with the comparison's data they are drawn from.

Its own module because it is what a chart shows, apart from the groups' rules
(:mod:`bot.app.barometer`): the data is built here, the drawing done in the chart worker
process (:func:`bot.adapters.charts.render`), off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.adapters.charts import PALETTE, RadarSeries, Spoke, radar_png, render
from bot.engine import barometer as mode
from bot.engine.replies import Image
from bot.knowledge.model import KnowledgeBase, text

SIDE_COLOURS = {"professionnel": PALETTE[0], "usager": PALETTE[1]}


def _spokes(kb: KnowledgeBase, lang: str) -> tuple[list[str], list[Spoke]]:
    barometer = mode.barometer_of(kb)
    ids: list[str] = []
    spokes: list[Spoke] = []
    for dim_id, criterion in barometer.criteria():
        ids.append(criterion.id)
        label = text(barometer.dimensions[dim_id].label, lang)
        spokes.append(Spoke(text(criterion.short, lang), label))
    return ids, spokes


async def rating_chart(
    kb: KnowledgeBase, rater: str, scores: dict[str, int], alt: str, lang: str
) -> Image:
    """One person's radar chart."""
    barometer = mode.barometer_of(kb)
    ids, spokes = _spokes(kb, lang)
    who = text(barometer.raters[rater].who, lang) if rater in barometer.raters else rater
    series = RadarSeries(
        who,
        [float(scores[i]) if i in scores else None for i in ids],
        SIDE_COLOURS.get(rater, PALETTE[0]),
    )
    png = await render(radar_png, spokes, [series], text(barometer.title, lang), subtitle=who)
    return Image(png, alt, "barometre.png")


@dataclass(frozen=True)
class Side:
    """The ratings of one side in one round: how many, and the mean by criterion."""

    count: int
    means: dict[str, float]


@dataclass(frozen=True)
class Comparison:
    code: str
    round: int
    sides: dict[str, Side]
    previous: dict[str, Side]
    #: (criterion id, professionals' mean, patients' mean), only when both sides rated.
    gaps: tuple[tuple[str, float, float], ...]

    @property
    def raters(self) -> int:
        return sum(side.count for side in self.sides.values())


async def comparison_chart(
    kb: KnowledgeBase, comparison: Comparison, alt: str, labels: dict[str, str], lang: str
) -> Image:
    """Both sides overlaid; the previous round faded behind. ``labels`` come from messages."""
    barometer = mode.barometer_of(kb)
    ids, spokes = _spokes(kb, lang)
    series: list[RadarSeries] = []
    for rater, side in comparison.previous.items():
        series.append(
            RadarSeries(
                labels[f"previous:{rater}"],
                [side.means.get(i) for i in ids],
                SIDE_COLOURS.get(rater, PALETTE[2]),
                faded=True,
            )
        )
    for rater, side in comparison.sides.items():
        series.append(
            RadarSeries(
                labels[rater], [side.means.get(i) for i in ids], SIDE_COLOURS.get(rater, PALETTE[2])
            )
        )
    title = text(barometer.title, lang)
    png = await render(radar_png, spokes, series, title, subtitle=labels["subtitle"])
    return Image(png, alt, "barometre-groupe.png")
