"""``passerelle``: the composition root. Builds the knowledge base, storage and channels and
hands them the engine; each sub-command is a thin layer over a library module.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.app.engines import build_engine
from bot.config import Settings
from bot.engine.flow import Engine
from bot.knowledge.loader import KnowledgeBaseError, load, load_with_problems
from bot.knowledge.model import KnowledgeBase

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCRIPTS = REPO_ROOT / "tests" / "conversations"
DEFAULT_CORPUS = REPO_ROOT / "tests" / "understanding"

#: argparse's own messages (usage, errors, help headings) in French. argparse looks them up
#: through gettext at call time; a catalog file would need a build step for a dozen lines.
ARGPARSE_FR = {
    "usage: ": "utilisation : ",
    "positional arguments": "arguments",
    "options": "options",
    "show this help message and exit": "afficher cette aide et quitter",
    "argument %(argument_name)s: %(message)s": "argument %(argument_name)s : %(message)s",
    "unrecognized arguments: %s": "arguments non reconnus : %s",
    "not allowed with argument %s": "impossible avec l'argument %s",
    "ignored explicit argument %r": "argument explicite ignoré : %r",
    "the following arguments are required: %s": "arguments obligatoires manquants : %s",
    "one of the arguments %s is required": "l'un des arguments %s est obligatoire",
    "expected one argument": "un argument attendu",
    "expected at most one argument": "un argument au plus attendu",
    "expected at least one argument": "un argument au moins attendu",
    "expected %s argument": "%s argument attendu",
    "expected %s arguments": "%s arguments attendus",
    "ambiguous option: %(option)s could match %(matches)s": (
        "option ambiguë : %(option)s peut désigner %(matches)s"
    ),
    "unexpected option string: %s": "option inattendue : %s",
    "invalid %(type)s value: %(value)r": "valeur invalide (%(type)s) : %(value)r",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "choix invalide : %(value)r (choisissez parmi %(choices)s)"
    ),
    "%(prog)s: error: %(message)s\n": "%(prog)s : erreur : %(message)s\n",
    "can't open '%(filename)s': %(error)s": "impossible d'ouvrir « %(filename)s » : %(error)s",
}


def _french(message: str) -> str:
    return ARGPARSE_FR.get(message, message)


def _french_plural(singular: str, plural: str, n: int) -> str:
    return _french(singular if n == 1 else plural)


setattr(argparse, "_", _french)  # noqa: B010 (argparse reads its module-level gettext alias)
setattr(argparse, "ngettext", _french_plural)  # noqa: B010


def default_contenus() -> Path:
    """``$PASSERELLE_CONTENUS``, else ``./contenus``, else the one beside the package."""
    configured = os.environ.get("PASSERELLE_CONTENUS")
    if configured:
        return Path(configured)
    local = Path("contenus")
    return local if local.is_dir() else REPO_ROOT / "contenus"


def load_or_exit(directory: Path | None, extra: Path | None = None) -> KnowledgeBase:
    """Load the base or stop with the validator's message (never a traceback)."""
    if extra is None and os.environ.get("PASSERELLE_CONTENUS_EXTRA"):
        extra = Path(os.environ["PASSERELLE_CONTENUS_EXTRA"])
    try:
        return load(directory or default_contenus(), extra)
    except KnowledgeBaseError as exc:
        print("La base de contenus est invalide, Passerelle ne démarre pas :", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_kb_check(args: argparse.Namespace) -> int:
    directory = Path(args.directory) if args.directory else default_contenus()
    kb, problems = load_with_problems(directory, Path(args.extra) if args.extra else None)
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
    return 0


def cmd_kb_test(args: argparse.Namespace) -> int:
    from bot.channels.script import play_file

    engine = build_engine(load_or_exit(Path(args.directory) if args.directory else None))
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
    """Play the understanding corpus (``tests/understanding/``); the number of misses."""
    from bot.channels.corpus import describe, play_corpus

    files = sorted(directory.glob("*.yaml"))
    if not files:
        return 0
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
    print(f"Compréhension : {total - failed} phrases comprises comme attendu sur {total}")
    return failed


def cmd_kb_diff(args: argparse.Namespace) -> int:
    from bot.knowledge.diff import diff

    old = load_or_exit(Path(args.old))
    new = load_or_exit(Path(args.new))
    print("\n".join(diff(old, new)))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from bot.channels.script import play_file

    engine = build_engine(load_or_exit(Path(args.contenus) if args.contenus else None))
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

    engine = build_engine(load_or_exit(Path(args.contenus) if args.contenus else None))
    return terminal.main(engine, args.json, args.context)


def _settings_and_engine(need_telegram: bool) -> tuple[Settings, Engine]:
    """Settings from the environment (or a one-line exit) and the engine over the base."""
    from bot import config

    settings = config.load_or_exit(need_telegram=need_telegram)
    settings = config.secret_or_exit(settings)  # PASSERELLE_SECRET, or the kept one
    config.configure_logging(settings)
    return settings, build_engine(load_or_exit(settings.contenus))


def cmd_telegram(args: argparse.Namespace) -> int:
    """Telegram by long polling, with the SQLite store (``PASSERELLE_DB``)."""
    import asyncio

    from bot import config
    from bot.channels.telegram import run_polling
    from bot.cli.compose import establishments_or_exit

    settings = config.load_or_exit(need_telegram=True)
    settings = config.secret_or_exit(settings)  # PASSERELLE_SECRET, or the kept one
    config.configure_logging(settings)
    kb = load_or_exit(settings.contenus)
    # As cmd_serve: the hand-off is offered only towards establishments receiving webhooks.
    receivers = tuple(establishments_or_exit(settings, build_engine(kb)).values())
    engine = build_engine(kb, followup=True, receivers=receivers)
    return asyncio.run(run_polling(settings, engine))


def cmd_serve(args: argparse.Namespace) -> int:
    """The web server on ``$PORT``: Telegram webhook (or polling), health check, features."""
    from bot import config
    from bot.app.features import Features
    from bot.app.reload import EngineHolder, Reloader
    from bot.channels.http.admin import admin_routes
    from bot.cli.compose import build_integration
    from bot.server import serve
    from bot.storage.factory import build_stores

    settings = config.load_or_exit(need_telegram=False)
    settings = config.secret_or_exit(settings)  # PASSERELLE_SECRET, or the kept one
    config.configure_logging(settings)
    kb = load_or_exit(settings.contenus)
    # The establishments receiving webhooks: the engines offer a hand-off only towards them.
    from bot.cli.compose import establishments_or_exit

    receivers = tuple(establishments_or_exit(settings, build_engine(kb)).values())
    api_factory = functools.partial(build_engine, receivers=receivers)
    telegram_factory = functools.partial(build_engine, followup=True, receivers=receivers)
    # One holder per engine variant; a reload swaps both at once (SIGHUP, POST /admin/reload).
    api_engine = EngineHolder(api_factory(kb), api_factory)
    telegram_engine = EngineHolder(telegram_factory(kb), telegram_factory)
    if settings.database_url is not None:
        import asyncio

        from bot.storage.postgres.schema import ensure_current

        asyncio.run(ensure_current(settings.database_url))  # before anything is announced
    stores = build_stores(settings.database_url or settings.db_path)
    storage = stores.core
    features = Features(telegram_engine.engine, stores.features)
    telegram_engine.on_swap(features.set_engine)
    parts = build_integration(settings, api_engine, storage, features=features)
    extra = settings.contenus_extra
    if extra is None and os.environ.get("PASSERELLE_CONTENUS_EXTRA"):
        extra = Path(os.environ["PASSERELLE_CONTENUS_EXTRA"])
    reloader = Reloader(
        settings.contenus or default_contenus(), [api_engine, telegram_engine], extra=extra
    )
    return serve(
        settings,
        telegram_engine,
        routes=[*parts.routes, *admin_routes(reloader, settings.admin_token)],
        lifespans=parts.lifespans,
        storage=storage,
        features=features,
        reloader=reloader,
        telegram_options={
            "establishments": parts.establishments,
            "integration": parts.store,
            "on_events": parts.worker.wake,
        },
    )


def cmd_db_migrate(args: argparse.Namespace) -> int:
    """Bring the database (``PASSERELLE_DB``) to this code's schema: PostgreSQL is never
    migrated by ``serve`` (instances of two versions share it during a rolling restart)."""
    import asyncio

    from bot import config
    from bot.storage.factory import build_stores
    from bot.storage.postgres import DatabaseUnavailable, SchemaMismatch

    settings = config.load_or_exit(need_telegram=False)
    target = settings.database_url or settings.db_path

    async def run() -> None:
        stores = build_stores(target, migrate=True)
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


def _followup_engine(kb: KnowledgeBase) -> Engine:
    return build_engine(kb, followup=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passerelle", description="Passerelle : orientation vers le partenariat en santé."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="discuter dans le terminal")
    chat.add_argument("--json", action="store_true", help="une ligne JSON par message (machines)")
    chat.add_argument("--contenus", help="dossier de la base de contenus")
    chat.add_argument("--context", help="contexte (établissement) de la conversation")
    chat.set_defaults(handler=cmd_chat)

    replay = sub.add_parser("replay", help="rejouer une conversation scriptée (YAML)")
    replay.add_argument("script")
    replay.add_argument("--contenus", help="dossier de la base de contenus")
    replay.set_defaults(handler=cmd_replay)

    kb = sub.add_parser("kb", help="la base de contenus")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    check = kb_sub.add_parser("check", help="valider la base")
    check.add_argument("directory", nargs="?")
    check.add_argument("--extra", help="dossier de contenus locaux d'un établissement")
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

    telegram = sub.add_parser("telegram", help="Telegram en long polling")
    telegram.set_defaults(handler=cmd_telegram)
    from bot.config import settings_help

    serve = sub.add_parser(
        "serve",
        help="serveur web ($PORT) : webhook Telegram, API, chat web, /healthz",
        description="Le serveur web : chat web sur /, API des établissements sur /api/v1, "
        "webhook Telegram (ou long polling), /healthz.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.set_defaults(handler=cmd_serve)

    db = sub.add_parser("db", help="la base de données (SQLite ou PostgreSQL)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser(
        "migrate", help="mettre le schéma à jour (à lancer avant de déployer sur PostgreSQL)"
    )
    migrate.set_defaults(handler=cmd_db_migrate)

    from bot.cli.integration import add_commands as add_integration_commands

    add_integration_commands(sub)  # keys …, webhooks …

    from bot.cli.stats import add_commands as add_stats_commands

    add_stats_commands(sub)  # stats

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from bot.config import load_dotenv

    load_dotenv()  # ./.env, under the real environment (see .env.example)
    parser = build_parser()
    args = parser.parse_args(argv)
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
