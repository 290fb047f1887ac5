"""The radar chart several chart tests draw (also imported by the worker subprocesses they
start, hence here and not in a test module)."""

from __future__ import annotations

from bot.adapters.charts import PALETTE, RadarSeries, Spoke

SPOKES = [Spoke(f"Critère {i}", "Co-expression" if i < 4 else "Co-construction") for i in range(8)]
FIRST = [RadarSeries("Professionnels", [float(i % 5) for i in range(8)], PALETTE[0])]
