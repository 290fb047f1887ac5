"""``passerelle keys …`` and ``passerelle webhooks …``: API keys and the webhook outbox.

Registered in :mod:`bot.cli` by :func:`add_commands`. Each command opens the SQLite database of
``PASSERELLE_DB`` (the same file the server uses) and the establishments file of
``PASSERELLE_ETABLISSEMENTS``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
import sys
from collections.abc import Awaitable, Callable

from bot import config
from bot.adapters.webhooks import RetryPolicy, WebhookWorker, describe
from bot.cli.compose import establishments_or_exit
from bot.knowledge.establishments import new_secret
from bot.storage.factory import integration_store
from bot.storage.integration import IntegrationStore


def _with_store(
    work: Callable[[IntegrationStore, config.Settings, argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        settings = config.load_or_exit()

        async def run() -> int:
            store = integration_store(settings.database_url or settings.db_path)
            await store.open()
            try:
                return await work(store, settings, args)
            finally:
                await store.close()

        return asyncio.run(run())

    return handler


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


# -- keys ------------------------------------------------------------------------------------
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


# -- webhooks --------------------------------------------------------------------------------
async def webhooks_status(
    store: IntegrationStore, settings: config.Settings, args: argparse.Namespace
) -> int:
    items = await store.outbox_list()
    pending = [i for i in items if i.status == "pending"]
    dead = [i for i in items if i.status == "dead"]
    print(f"{len(pending)} en attente, {len(dead)} en échec définitif (dead letters)")
    for item in items:
        line = describe(item)
        when = line["next_attempt_at"] if item.status == "pending" else "-"
        print(
            f"{line['id']}  {line['status']:<7} {line['establishment']:<20} {line['type']:<22} "
            f"essais={line['attempts']:<3} prochain={when}  {line['last_error'] or ''}"
        )
    return 0


async def webhooks_retry(
    store: IntegrationStore, settings: config.Settings, args: argparse.Namespace
) -> int:
    event_id = args.event_id
    if not await store.outbox_retry(event_id):
        print(f"Aucun événement « {event_id} » (voir passerelle webhooks status).", file=sys.stderr)
        return 1
    print(f"Événement {event_id} remis en file : il part au prochain passage du serveur.")
    if args.now:
        establishments = establishments_or_exit(settings)
        await _once(WebhookWorker(store, establishments, policy=_policy(settings)))
        items = {i.id: i for i in await store.outbox_list()}
        if event_id in items:
            print(f"Toujours en échec : {items[event_id].last_error}", file=sys.stderr)
            return 1
        print("Livré.")
    return 0


async def _once(worker: WebhookWorker) -> None:
    await worker.open()
    try:
        await worker.run_once()
    finally:
        await worker.stop()


def _policy(settings: config.Settings) -> RetryPolicy:
    return RetryPolicy(base=settings.webhook_retry_base)


async def webhooks_run(
    store: IntegrationStore, settings: config.Settings, args: argparse.Namespace
) -> int:
    """Deliver the outbox until interrupted (the server also does this by itself). Says what
    it delivers to; with no establishment having a webhook, says so and stops."""
    establishments = establishments_or_exit(settings)
    hooked = sorted(e.id for e in establishments.values() if e.webhook_url)
    if not hooked:
        where = (
            f"dans {settings.establishments}"
            if settings.establishments is not None
            else "(PASSERELLE_ETABLISSEMENTS n'est pas défini)"
        )
        print(
            f"Aucun établissement n'a de webhook {where} : il n'y a rien à livrer. Ajoutez "
            "une section webhook à un établissement (voir docs/integration.md).",
            file=sys.stderr,
        )
        return 1
    pending = sum(1 for item in await store.outbox_list() if item.status == "pending")
    worker = WebhookWorker(store, establishments, policy=_policy(settings), idle_poll=1.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    print(
        f"Livraison des webhooks en cours vers {len(hooked)} établissement(s) "
        f"({', '.join(hooked)}), {pending} événement(s) en attente. Ctrl+C pour arrêter.",
        flush=True,
    )
    await stop.wait()
    await worker.stop()
    return 0


def webhooks_secret(args: argparse.Namespace) -> int:
    print(new_secret())
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys`` and ``webhooks`` to the ``passerelle`` parser."""
    keys = sub.add_parser("keys", help="clés d'API des établissements")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="créer une clé (affichée une seule fois)")
    create.add_argument("establishment", help="identifiant de l'établissement")
    create.add_argument(
        "--widget", action="store_true", help="clé publique pour le widget web (sinon clé secrète)"
    )
    create.set_defaults(handler=_with_store(keys_create))
    listing = keys_sub.add_parser("list", help="lister les clés (jamais leur valeur)")
    listing.set_defaults(handler=_with_store(keys_list))
    revoke = keys_sub.add_parser("revoke", help="révoquer une clé")
    revoke.add_argument("key_id", help="identifiant key_… (voir keys list)")
    revoke.set_defaults(handler=_with_store(keys_revoke))

    hooks = sub.add_parser("webhooks", help="webhooks sortants vers les établissements")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    status = hooks_sub.add_parser("status", help="événements en attente et en échec")
    status.set_defaults(handler=_with_store(webhooks_status))
    retry = hooks_sub.add_parser("retry", help="renvoyer un événement")
    retry.add_argument("event_id", help="identifiant msg_… (voir webhooks status)")
    retry.add_argument("--now", action="store_true", help="l'envoyer tout de suite, ici")
    retry.set_defaults(handler=_with_store(webhooks_retry))
    run = hooks_sub.add_parser("run", help="livrer les webhooks (sans le serveur web)")
    run.set_defaults(handler=_with_store(webhooks_run))
    secret = hooks_sub.add_parser("secret", help="générer un secret de signature whsec_…")
    secret.set_defaults(handler=webhooks_secret)
