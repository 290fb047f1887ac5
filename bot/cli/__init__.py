"""``passerelle``: the command line and the composition root (``bot.cli.compose``); one module
per command group, the parser in ``bot.cli.parser``."""

from __future__ import annotations

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
    return result
