"""``passerelle kb check | test | diff``: validate, play and compare the knowledge base."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.app.engines import build_engine
from bot.cli.commands import Subcommands
from bot.cli.contents import (
    DEFAULT_CORPUS,
    DEFAULT_SCRIPTS,
    default_contenus,
    load_or_exit,
    optional_path,
)
from bot.engine.flow import Engine
from bot.knowledge.establishments import Establishment, EstablishmentsError, load_establishments
from bot.knowledge.loader import load_with_problems

#: Corpus files written after the lexicons were tuned, by another hand (reported apart).
HOLDOUT = "holdout"


def cmd_kb_check(args: argparse.Namespace) -> int:
    directory = Path(args.directory) if args.directory else default_contenus()
    kb, problems = load_with_problems(directory, optional_path(args.extra))
    establishments: dict[str, Establishment] = {}
    if args.etablissements:
        # Checked against the base's territories, with the same file:line messages.
        territories = kb.territories if kb is not None else None
        try:
            establishments = load_establishments(args.etablissements, known_territories=territories)
        except EstablishmentsError as exc:
            problems = [*problems, *exc.problems]
    for problem in problems:
        print(problem, file=sys.stderr if problem.severity == "error" else sys.stdout)
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    if errors or kb is None:
        print(f"{errors} erreur(s), {warnings} avertissement(s) : base refusée.", file=sys.stderr)
        return 1
    print(
        f"Base valide : version {kb.version}, {len(kb.roles)} rôles, "
        f"{len(kb.questions)} questions, {len(kb.glossary)} termes, {len(kb.contacts)} contacts"
        + (f", {warnings} avertissement(s)." if warnings else ".")
    )
    if args.etablissements:
        names = ", ".join(sorted(establishments)) or "aucun"
        print(f"Établissements valides ({args.etablissements}) : {names}.")
    return 0


def cmd_kb_test(args: argparse.Namespace) -> int:
    from bot.channels.script import play_file

    engine = build_engine(load_or_exit(optional_path(args.directory)))
    scripts = sorted(Path(args.scripts).glob("*.yaml"))
    if not scripts:
        print(f"Aucune conversation dans {args.scripts}", file=sys.stderr)
        return 1
    failed = 0
    for path in scripts:
        outcome = play_file(engine, path)
        print(f"{'ok  ' if outcome.ok else 'ÉCHEC'} {path.name} — {outcome.name}")
        for failure in outcome.failures:
            print(f"      {failure}")
        failed += not outcome.ok
    print(f"{len(scripts) - failed} passed, {failed} failed")
    corpus_failed = _kb_test_corpus(engine, Path(args.corpus))
    return 1 if failed or corpus_failed else 0


def _kb_test_corpus(engine: Engine, directory: Path) -> int:
    """Play the understanding corpus (``tests/understanding/``); the number of misses. The
    corpus the lexicons were tuned on and the held-out set (``holdout*.yaml``, written apart)
    get a figure each: only the second says how well new phrasings are understood."""
    files = sorted(directory.glob("*.yaml"))
    tuned = [p for p in files if not p.name.startswith(HOLDOUT)]
    held_out = [p for p in files if p.name.startswith(HOLDOUT)]
    failed = 0
    for paths, title in ((tuned, "corpus de réglage"), (held_out, "jeu tenu à part")):
        if paths:
            failed += _play_corpus(engine, paths, title)
    return failed


def _play_corpus(engine: Engine, files: list[Path], title: str) -> int:
    from bot.channels.corpus import describe, play_corpus

    total = failed = 0
    for path in files:
        try:
            report = play_corpus(engine, path)
        except ValueError as exc:
            print(f"ÉCHEC {path.name} — {exc}")
            failed += 1
            continue
        total += len(report.results)
        for result in report.failures:
            print(f"ÉCHEC {describe(result)}")
        failed += len(report.failures)
    print(f"Compréhension ({title}) : {total - failed} phrases comprises comme attendu sur {total}")
    return failed


def cmd_kb_diff(args: argparse.Namespace) -> int:
    from bot.knowledge.diff import diff

    old = load_or_exit(Path(args.old))
    new = load_or_exit(Path(args.new))
    print("\n".join(diff(old, new)))
    return 0


def add_commands(sub: Subcommands) -> None:
    """Add ``kb check``, ``kb test`` and ``kb diff`` to the ``passerelle`` parser."""
    kb = sub.add_parser("kb", help="la base de contenus")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    check = kb_sub.add_parser("check", help="valider la base")
    check.add_argument("directory", nargs="?")
    check.add_argument("--extra", help="dossier de contenus locaux d'un établissement")
    check.add_argument(
        "--etablissements",
        metavar="FICHIER",
        help="valider aussi le fichier des établissements (PASSERELLE_ETABLISSEMENTS)",
    )
    check.set_defaults(handler=cmd_kb_check)
    test = kb_sub.add_parser("test", help="jouer les conversations types")
    test.add_argument("directory", nargs="?")
    test.add_argument("--scripts", default=str(DEFAULT_SCRIPTS))
    test.add_argument(
        "--corpus", default=str(DEFAULT_CORPUS), help="phrases de compréhension (YAML)"
    )
    test.set_defaults(handler=cmd_kb_test)
    compare = kb_sub.add_parser("diff", help="ce qui a changé entre deux versions de la base")
    compare.add_argument("old")
    compare.add_argument("new")
    compare.set_defaults(handler=cmd_kb_diff)
