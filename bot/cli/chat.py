"""``passerelle chat`` and ``passerelle replay``: the engine in a terminal, live or scripted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.app.engines import build_engine
from bot.cli.commands import Subcommands
from bot.cli.contents import load_or_exit, optional_path


def cmd_replay(args: argparse.Namespace) -> int:
    from bot.channels.script import play_file

    engine = build_engine(load_or_exit(optional_path(args.contenus)))
    try:
        outcome = play_file(engine, Path(args.script))
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print("\n".join(outcome.transcript))
    print()
    if outcome.ok:
        print(f"ok — {outcome.name}")
        return 0
    print(f"ÉCHEC — {outcome.name}")
    for failure in outcome.failures:
        print(f"  {failure}")
    return 1


def cmd_chat(args: argparse.Namespace) -> int:
    from bot.channels import terminal

    engine = build_engine(load_or_exit(optional_path(args.contenus)))
    return terminal.main(engine, args.json, args.context)


def add_commands(sub: Subcommands) -> None:
    """Add ``chat`` and ``replay`` to the ``passerelle`` parser."""
    chat = sub.add_parser("chat", help="discuter dans le terminal")
    chat.add_argument("--json", action="store_true", help="une ligne JSON par message (machines)")
    chat.add_argument("--contenus", help="dossier de la base de contenus")
    chat.add_argument("--context", help="contexte (établissement) de la conversation")
    chat.set_defaults(handler=cmd_chat)

    replay = sub.add_parser("replay", help="rejouer une conversation scriptée (YAML)")
    replay.add_argument("script")
    replay.add_argument("--contenus", help="dossier de la base de contenus")
    replay.set_defaults(handler=cmd_replay)
