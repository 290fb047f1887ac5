"""``passerelle keys create | list | revoke``: the establishments' API keys.

Each command opens the database of ``PASSERELLE_DB`` (the file the server uses) and the
establishments file of ``PASSERELLE_ETABLISSEMENTS``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from bot import config
from bot.cli.commands import Subcommands
from bot.cli.compose import establishments_or_exit, with_store
from bot.storage.base import IntegrationStore


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


async def keys_create(
    store: IntegrationStore, settings: config.Settings, args: argparse.Namespace
) -> int:
    establishments = establishments_or_exit(settings)
    if args.establishment not in establishments:
        if not establishments:
            print(
                f"Aucun établissement n'est déclaré : « {args.establishment} » ne peut pas "
                "recevoir de clé. Déclarez-le d'abord dans le fichier des établissements "
                "(PASSERELLE_ETABLISSEMENTS, voir docs/integration.md).",
                file=sys.stderr,
            )
            return 2
        known = ", ".join(sorted(establishments))
        print(
            f"Aucun établissement « {args.establishment} » dans {settings.establishments} "
            f"(identifiants déclarés : {known}). Vérifiez l'orthographe, ou ajoutez-le au "
            "fichier.",
            file=sys.stderr,
        )
        return 2
    secret, record = await store.create_key(args.establishment, "widget" if args.widget else "api")
    print(secret)
    print(
        f"Clé {record.id} ({'widget, publique' if args.widget else 'API, secrète'}) créée pour "
        f"« {args.establishment} ». Elle ne sera plus jamais affichée : copiez-la maintenant.",
        file=sys.stderr,
    )
    return 0


async def keys_list(
    store: IntegrationStore, settings: config.Settings, args: argparse.Namespace
) -> int:
    keys = await store.list_keys()
    if not keys:
        print("Aucune clé. Créez-en une avec : passerelle keys create ÉTABLISSEMENT")
        return 0
    print(f"{'id':<18} {'établissement':<24} {'type':<7} {'début':<12} {'créée':<17} état")
    for key in keys:
        state = f"révoquée {_when(key.revoked_at)}" if key.revoked_at else "active"
        print(
            f"{key.id:<18} {key.establishment:<24} {key.kind:<7} {key.prefix + '…':<12} "
            f"{_when(key.created_at):<17} {state}"
        )
    return 0


async def keys_revoke(
    store: IntegrationStore, settings: config.Settings, args: argparse.Namespace
) -> int:
    key_id = args.key_id
    if await store.revoke_key(key_id):
        print(f"Clé {key_id} révoquée (refusée d'ici quelques secondes par le serveur).")
        return 0
    print(f"Aucune clé active « {key_id} » (voir passerelle keys list).", file=sys.stderr)
    return 1


def add_commands(sub: Subcommands) -> None:
    """Add ``keys`` to the ``passerelle`` parser."""
    keys = sub.add_parser("keys", help="clés d'API des établissements")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="créer une clé (affichée une seule fois)")
    create.add_argument("establishment", help="identifiant de l'établissement")
    create.add_argument(
        "--widget", action="store_true", help="clé publique pour le widget web (sinon clé secrète)"
    )
    create.set_defaults(handler=with_store(keys_create))
    listing = keys_sub.add_parser("list", help="lister les clés (jamais leur valeur)")
    listing.set_defaults(handler=with_store(keys_list))
    revoke = keys_sub.add_parser("revoke", help="révoquer une clé")
    revoke.add_argument("key_id", help="identifiant key_… (voir keys list)")
    revoke.set_defaults(handler=with_store(keys_revoke))
