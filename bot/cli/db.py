"""``passerelle db migrate``: bring the database of ``PASSERELLE_DB`` to this code's schema."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.commands import Subcommands


def cmd_db_migrate(args: argparse.Namespace) -> int:
    """Bring the database (``PASSERELLE_DB``) to this code's schema: PostgreSQL is never
    migrated by ``serve`` (instances of two versions share it during a rolling restart)."""
    from bot import config
    from bot.storage.factory import build_stores
    from bot.storage.postgres import DatabaseUnavailable, SchemaMismatch

    settings = config.load_or_exit(need_telegram=False)
    target = settings.database_url or settings.db_path

    async def run() -> None:
        stores = build_stores(target, migrate=True, claim_seconds=settings.claim_seconds)
        await stores.core.open()
        try:
            await stores.features.open()
            await stores.features.close()
        finally:
            await stores.core.close()

    try:
        asyncio.run(run())
    except (DatabaseUnavailable, SchemaMismatch) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"Base de données à jour : {settings.database_label}")
    return 0


def add_commands(sub: Subcommands) -> None:
    """Add ``db migrate`` to the ``passerelle`` parser."""
    db = sub.add_parser("db", help="la base de données (SQLite ou PostgreSQL)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser(
        "migrate", help="mettre le schéma à jour (à lancer avant de déployer sur PostgreSQL)"
    )
    migrate.set_defaults(handler=cmd_db_migrate)
