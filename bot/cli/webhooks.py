"""``passerelle webhooks status | retry | run | secret``: the webhook outbox, by hand.

Each command opens the database of ``PASSERELLE_DB`` (the file the server uses) and the
establishments file of ``PASSERELLE_ETABLISSEMENTS``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from bot import config
from bot.adapters.webhooks import WebhookWorker, describe
from bot.cli.commands import Subcommands
from bot.cli.compose import establishments_or_exit, webhook_worker, with_store
from bot.knowledge.establishments import new_secret
from bot.storage.base import IntegrationStore


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
        await _once(webhook_worker(settings, store, establishments))
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
    worker = webhook_worker(settings, store, establishments, idle_poll=1.0)
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


def add_commands(sub: Subcommands) -> None:
    """Add ``webhooks`` to the ``passerelle`` parser."""
    hooks = sub.add_parser("webhooks", help="webhooks sortants vers les établissements")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    status = hooks_sub.add_parser("status", help="événements en attente et en échec")
    status.set_defaults(handler=with_store(webhooks_status))
    retry = hooks_sub.add_parser("retry", help="renvoyer un événement")
    retry.add_argument("event_id", help="identifiant msg_… (voir webhooks status)")
    retry.add_argument("--now", action="store_true", help="l'envoyer tout de suite, ici")
    retry.set_defaults(handler=with_store(webhooks_retry))
    run = hooks_sub.add_parser("run", help="livrer les webhooks (sans le serveur web)")
    run.set_defaults(handler=with_store(webhooks_run))
    secret = hooks_sub.add_parser("secret", help="générer un secret de signature whsec_…")
    secret.set_defaults(handler=webhooks_secret)
