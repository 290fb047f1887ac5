"""What a command group adds its commands to: the result of ``add_subparsers()``, typed by the
part of it the groups use (its class, ``argparse._SubParsersAction``, is private)."""

from __future__ import annotations

import argparse
from typing import Protocol


class Subcommands(Protocol):
    def add_parser(
        self,
        name: str,
        *,
        help: str = ...,
        description: str | None = ...,
        epilog: str | None = ...,
        formatter_class: type[argparse.HelpFormatter] = ...,
    ) -> argparse.ArgumentParser: ...
