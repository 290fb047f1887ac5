"""``passerelle stats``: usage figures for establishments (table, CSV, funnel chart)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path

from bot.app.stats_output import funnel_chart, render_csv, render_table
from bot.app.stats_report import DEFAULT_K, Report, StatsReader
from bot.cli.commands import Subcommands
from bot.cli.contents import load_or_exit, optional_path
from bot.storage.factory import feature_store, is_postgres_url


def default_db_path() -> Path:
    """``$PASSERELLE_DB``, else the file ``passerelle serve`` uses by default."""
    from bot.config import DEFAULT_DB

    return Path(os.environ.get("PASSERELLE_DB") or DEFAULT_DB)


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"date invalide « {value} » (attendu : AAAA-MM-JJ)"
        ) from None


def _k(value: str) -> int:
    number = int(value)
    if number < 2:
        raise argparse.ArgumentTypeError("le seuil doit valoir au moins 2")
    return number


def cmd_stats(args: argparse.Namespace) -> int:
    kb = load_or_exit(optional_path(args.contenus))
    target = args.db or os.environ.get("PASSERELLE_DB") or str(default_db_path())
    if not is_postgres_url(target) and not Path(target).is_file():
        print(f"Base de données introuvable : {target}", file=sys.stderr)
        return 1

    async def compute() -> Report:
        store = feature_store(target)
        await store.open()
        try:
            return await StatsReader(store, kb).report(args.since, args.context, args.k)
        finally:
            await store.close()

    report = asyncio.run(compute())
    print(render_table(report))
    if args.csv:
        Path(args.csv).write_text(render_csv(report), encoding="utf-8")
        print(f"\nCSV écrit : {args.csv}")
    if args.chart:
        Path(args.chart).write_bytes(funnel_chart(report))
        print(f"Graphique écrit : {args.chart}")
    return 0


def add_commands(sub: Subcommands) -> None:
    """Add ``stats`` to the ``passerelle`` parser."""
    stats = sub.add_parser("stats", help="statistiques d'utilisation (anonymes)")
    stats.add_argument("--since", type=_date, help="depuis cette date (AAAA-MM-JJ)")
    stats.add_argument("--context", help="un seul contexte (établissement)")
    stats.add_argument("--csv", help="écrire aussi les chiffres dans ce fichier CSV")
    stats.add_argument("--chart", help="écrire l'entonnoir dans ce fichier PNG")
    stats.add_argument("--db", help="fichier SQLite (défaut : $PASSERELLE_DB ou passerelle.db)")
    stats.add_argument("--contenus", help="dossier de la base de contenus")
    stats.add_argument(
        "--k",
        type=_k,
        default=DEFAULT_K,
        help=f"seuil de masquage des petits nombres ({DEFAULT_K})",
    )
    stats.set_defaults(handler=cmd_stats)
