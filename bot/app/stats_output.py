"""A statistics report written out: a plain-text table for the terminal, a CSV file, the
funnel as a PNG (what ``passerelle stats`` prints and writes).

Its own module because it only formats a :class:`~bot.app.stats_report.Report` whose hidden
cells are already decided there: nothing here can show a count the report hides.
"""

from __future__ import annotations

import csv
import io

from bot.adapters.charts import FunnelStep, funnel_png
from bot.app.stats_report import Cell, Report


def shown(cell: Cell, k: int) -> str:
    return f"< {k}" if cell is None else str(cell)


def render_table(report: Report) -> str:
    """The report as plain text for the terminal."""
    k = report.k
    lines = ["Statistiques d'utilisation de Passerelle"]
    scope = []
    if report.since:
        scope.append(f"depuis le {report.since.isoformat()}")
    scope.append(f"contexte : {report.context}" if report.context else "tous contextes")
    lines.append(f"({', '.join(scope)} ; les nombres inférieurs à {k} sont masqués)")
    lines.append("")
    lines.append(f"Conversations : {shown(report.started, k)}")
    if report.started is None or (report.started or 0) < k:
        lines.append("Trop peu de conversations pour publier des chiffres.")
        return "\n".join(lines)
    lines.append(f"Terminées par une recommandation : {shown(report.completed, k)}")
    rate = report.completion_rate
    lines.append(f"Taux de complétion : {'masqué' if rate is None else f'{rate:.0%}'}")
    sections = [
        ("Parcours (conversations ayant atteint chaque étape)", report.funnel),
        ("Où les personnes se sont arrêtées (sans recommandation)", report.dropoff),
        ("Rôles recommandés", report.roles),
        ("Territoires (conversations terminées)", report.territories),
        ("Suites", report.outcomes),
    ]
    for title, rows in sections:
        if not rows:
            continue
        lines += ["", title]
        width = max(len(row.label) for row in rows)
        lines += [f"  {row.label.ljust(width)}  {shown(row.count, k):>6}" for row in rows]
    for title, followups in (
        ("Relances par rôle : contact joint / réponses", report.followup_by_role),
        ("Relances par contexte : contact joint / réponses", report.followup_by_context),
    ):
        if followups:
            lines += ["", title]
            for f in followups:
                share = "" if f.share is None else f" ({f.share:.0%})"
                lines.append(f"  {f.label} : {shown(f.reached, k)} / {shown(f.answered, k)}{share}")
    return "\n".join(lines)


def render_csv(report: Report) -> str:
    """One line per figure: ``section,id,label,count`` (empty count = hidden)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "id", "label", "count"])

    def cell(value: Cell) -> str:
        return "" if value is None else str(value)

    writer.writerow(["total", "conversations", "Conversations", cell(report.started)])
    writer.writerow(["total", "completed", "Terminées", cell(report.completed)])
    rate = report.completion_rate
    writer.writerow(
        ["total", "completion_rate", "Taux de complétion", "" if rate is None else rate]
    )
    for section, rows in (
        ("funnel", report.funnel),
        ("dropoff", report.dropoff),
        ("roles", report.roles),
        ("territories", report.territories),
        ("outcomes", report.outcomes),
    ):
        for row in rows:
            writer.writerow([section, row.key, row.label, cell(row.count)])
    for section, followups in (
        ("followup_by_role", report.followup_by_role),
        ("followup_by_context", report.followup_by_context),
    ):
        for f in followups:
            writer.writerow([section + ":answered", f.key, f.label, cell(f.answered)])
            writer.writerow([section + ":reached", f.key, f.label, cell(f.reached)])
    return buffer.getvalue()


def funnel_chart(report: Report) -> bytes:
    """The funnel as a PNG (sync: run it in a worker thread from async code)."""
    steps = [FunnelStep(row.label, row.count) for row in report.funnel]
    if not steps:
        steps = [FunnelStep("Conversations commencées", report.started)]
    title = "Parcours des conversations" + (f" — {report.context}" if report.context else "")
    return funnel_png(steps, title, hidden_label=f"moins de {report.k}")
