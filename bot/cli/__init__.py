"""``passerelle``: the command line and the composition root (``bot.cli.compose``); one module
per command group, the parser in ``bot.cli.parser``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bot.cli.parser import build_parser
from bot.config import load_dotenv


def main(argv: Sequence[str] | None = None) -> int:
    load_dotenv()  # ./.env, under the real environment (see .env.example)
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from bot.storage.postgres.schema import DatabaseUnavailable, SchemaMismatch

        if isinstance(exc, (DatabaseUnavailable, SchemaMismatch)):
            print(exc, file=sys.stderr)  # one French line: what is wrong and what to do
            return 1
        raise
    return result
