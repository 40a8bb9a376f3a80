"""The ``vpnshop`` command. Imports stay lazy so that ``vpnshop --help`` is instant and
no subcommand pays for a framework it does not use (aiogram is only ever imported by
``vpnshop run bot``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from vpnshop.config import ConfigError, Settings, SettingUnusableError
from vpnshop.logs import setup_logging

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _settings(args: argparse.Namespace) -> Settings:
    """The settings; ``--env-file`` must exist, the default ``./.env`` may not."""
    if args.env_file:
        return Settings.from_env(dotenv=Path(args.env_file), required=True)
    return Settings.from_env(dotenv=Path(".env"))


def _warn_unknown(settings: Settings) -> None:
    for name, close in settings.unknown:
        hint = f"; did you mean {close}?" if close else ""
        print(f"vpnshop: warning: {name} is not a setting vpnshop knows{hint}", file=sys.stderr)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vpnshop")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


# -- commands -------------------------------------------------------------------------


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.checks import run_checks

    return await run_checks(settings, reach=args.reach, out=sys.stdout)


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from vpnshop.demo import run_demo

    if "VPNSHOP_LOG_LEVEL" not in os.environ:  # the transcript is the output; logs on demand
        logging.getLogger().setLevel(logging.WARNING)
    return await run_demo(sys.stdout)


async def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.adapters.storage.migrate import current_revision, upgrade
    from vpnshop.bootstrap import database

    async with database(settings) as engine:
        await upgrade(engine, args.revision)
        print(f"database at revision {await current_revision(engine)}")
    return 0


async def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.adapters.storage.migrate import HEAD_REVISION, current_revision
    from vpnshop.bootstrap import database

    async with database(settings) as engine:
        current = await current_revision(engine)
    head = HEAD_REVISION
    print(f"current: {current or 'empty'}; newest: {head}")
    return 0 if current == head else 1


async def cmd_plans_load(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.bootstrap import bootstrap
    from vpnshop.domain.actor import Actor
    from vpnshop.plansfile import EXAMPLE, load_plans_file

    path = EXAMPLE if args.example else Path(args.file)
    plans = load_plans_file(path)
    async with bootstrap(settings) as app:
        report = await app.load_plans(plans, actor=Actor.system("cli"))
    print(
        f"{path}: {len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged"
    )
    return 0


async def cmd_plans_list(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.bootstrap import bootstrap

    async with bootstrap(settings) as app:
        plans = await app.list_plans(active_only=not args.all)
    if not plans:
        print("no plans; load some with `vpnshop plans load FILE`")
    for p in plans:
        prices = ", ".join(str(m) for m in p.prices.values())
        state = "" if p.active else " (inactive)"
        print(f"{p.code:<12} {p.duration_days:>4} days  {p.name('en')}: {prices}{state}")
    return 0


async def cmd_ledger_verify(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.bootstrap import bootstrap

    async with bootstrap(settings) as app:
        offenders = await app.verify_ledger()
    for m in offenders:
        print(
            f"customer {m.customer_id} {m.currency}: stored {m.stored_minor}, "
            f"ledger sum {m.ledger_minor}"
        )
    if offenders:
        print(f"ledger verify: {len(offenders)} balance(s) differ from the ledger")
        return 1
    print("ledger verify: every balance equals the sum of its ledger entries")
    return 0


async def cmd_panel_check(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.checks import panel_report

    return await panel_report(settings, out=sys.stdout)


async def cmd_outbox_list(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.bootstrap import bootstrap
    from vpnshop.services.outbox import OutboxAdmin

    async with bootstrap(settings) as app:
        jobs = await OutboxAdmin(app.deps).jobs(parked_only=args.parked, limit=args.limit)
    if not jobs:
        print("no parked outbox jobs" if args.parked else "the outbox is empty")
    for j in jobs:
        due = j.due_at.strftime("%Y-%m-%d %H:%M:%S")
        payload = " ".join(f"{k}={v}" for k, v in sorted(j.payload.items()))
        head = f"{j.id:>8} {j.status.value:<8} {j.kind:<20} attempts {j.attempts:<3}"
        print(f"{head} due {due}  {payload}")
        if j.last_error:
            print(f"{'':>8} last error: {j.last_error.splitlines()[0][:200]}")
    return 0


async def cmd_outbox_retry(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.bootstrap import bootstrap
    from vpnshop.domain.actor import Actor
    from vpnshop.services.outbox import OutboxAdmin

    actor = Actor.system("cli")
    async with bootstrap(settings) as app:
        admin = OutboxAdmin(app.deps)
        if args.all_parked:
            n = await admin.retry_all_parked(actor)
            print(f"{n} parked job(s) due again")
            return 0
        if not await admin.retry(args.id, actor):
            print(
                f"vpnshop: outbox job {args.id} is not parked (or does not exist)", file=sys.stderr
            )
            return 1
    print(f"outbox job {args.id} due again")
    return 0


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.runner import run

    return await run(settings, args.shell)


# -- parser ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Every (sub)command accepts the global options, before or after its name."""

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", _SubParser)
        return super().add_subparsers(**kwargs)


class _SubParser(_Parser):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # SUPPRESS: an option given before the command is not reset by the subcommand.
        self.add_argument("--env-file", default=argparse.SUPPRESS, help=ENV_FILE_HELP)


ENV_FILE_HELP = "read settings from this file (default: ./.env when it exists)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vpnshop",
        description="Sell and run VPN subscriptions on a Remnawave panel through Telegram.",
    )
    parser.add_argument("--version", action="version", version=f"vpnshop {_version()}")
    parser.add_argument("--env-file", help=ENV_FILE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "check",
        help="validate the configuration, part by part",
        description="Validate the configuration and say what is missing for "
        "each enabled part. Exits 1 when something enabled is incomplete.",
    )
    p.add_argument(
        "--reach",
        action="store_true",
        help="also connect to the database (and, when configured, the panel)",
    )
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser(
        "run",
        help="run the shop's processes",
        description="Run a shell: webhooks (the webhook server), bot (the Telegram bot), "
        "scheduler (the outbox and the periodic jobs), or all: the three in one process "
        "on one database (the bot only when VPNSHOP_BOT_TOKEN is set), after preparing the "
        "embedded shop (database, example plans) and checking the configuration.",
    )
    p.add_argument("shell", choices=["all", "webhooks", "bot", "scheduler"])
    p.set_defaults(handler=cmd_run, database=True)

    p = sub.add_parser(
        "demo",
        help="the whole shop offline: a scripted customer against emulators",
        description="Run the shop (bot, webhook server, scheduler) in one process against "
        "emulators of Telegram, Remnawave and every payment provider on 127.0.0.1, on a "
        "temporary SQLite file: no configuration, no network. A scripted customer walks "
        "through it (referral, trial, each provider, Stars, top-up, balance, promo code, "
        "reminder, auto-renewal, refund); the chat and the final state are printed. Exits "
        "0 only if every step checked out, 1 naming the failed step otherwise.",
    )
    p.set_defaults(handler=cmd_demo)

    db = sub.add_parser("db", help="database schema", description="Database schema commands.")
    dbsub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    p = dbsub.add_parser(
        "upgrade",
        help="migrate the schema to the newest revision",
        description="Apply Alembic migrations (the only way the schema is made). Idempotent.",
    )
    p.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    p.set_defaults(handler=cmd_db_upgrade, database=True)
    p = dbsub.add_parser(
        "current",
        help="show the schema revision",
        description="Print the current and newest revisions; exit 1 if they differ.",
    )
    p.set_defaults(handler=cmd_db_current, database=True)

    plans = sub.add_parser("plans", help="plans on sale", description="Plan commands.")
    psub = plans.add_subparsers(dest="plans_command", metavar="COMMAND", required=True)
    p = psub.add_parser(
        "load",
        help="load plans from a TOML file (idempotent)",
        description="Create or update plans from a TOML file; loading the "
        "same file twice changes nothing.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", help="the plans file")
    src.add_argument("--example", action="store_true", help="load the example plans")
    p.set_defaults(handler=cmd_plans_load, database=True)
    p = psub.add_parser("list", help="list plans", description="List the plans.")
    p.add_argument("--all", action="store_true", help="include inactive plans")
    p.set_defaults(handler=cmd_plans_list, database=True)

    panel = sub.add_parser("panel", help="the VPN panel", description="Panel commands.")
    pansub = panel.add_subparsers(dest="panel_command", metavar="COMMAND", required=True)
    p = pansub.add_parser(
        "check",
        help="reach the panel and report its version, token scopes and squads",
        description="Connect to the configured Remnawave panel and print its version and "
        "API line, whether the API token is accepted, which reads the token may do (users "
        "list, internal squads, system stats: ok, forbidden = missing scope, unauthorised) "
        "and the internal squads (uuid, name, members) to put in plans. Exits 1 when the "
        "panel is not configured, cannot be reached or refuses the token.",
    )
    p.set_defaults(handler=cmd_panel_check)

    outbox = sub.add_parser(
        "outbox",
        help="side effects waiting to run",
        description="Outbox commands: the panel updates and messages committed work left "
        "to do. A job that failed too often, or can never succeed as it is, is parked "
        "with its reason.",
    )
    osub = outbox.add_subparsers(dest="outbox_command", metavar="COMMAND", required=True)
    p = osub.add_parser(
        "list", help="list outbox jobs, newest first", description="List outbox jobs, newest first."
    )
    p.add_argument("--parked", action="store_true", help="only parked jobs")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.set_defaults(handler=cmd_outbox_list, database=True)
    p = osub.add_parser(
        "retry",
        help="make parked jobs due again",
        description="Make a parked job (or every parked job) due now with a fresh count "
        "of attempts; the running processes pick it up at their next poll.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the job's id (see `outbox list`)")
    which.add_argument("--all-parked", action="store_true", help="every parked job")
    p.set_defaults(handler=cmd_outbox_retry, database=True)

    ledger = sub.add_parser("ledger", help="money checks", description="Ledger commands.")
    lsub = ledger.add_subparsers(dest="ledger_command", metavar="COMMAND", required=True)
    p = lsub.add_parser(
        "verify",
        help="prove every balance equals its ledger sum",
        description="Compare every stored balance with the sum of its ledger "
        "entries; print the offenders and exit 1 if any.",
    )
    p.set_defaults(handler=cmd_ledger_verify, database=True)

    from vpnshop.cli_jobs import add_commands

    add_commands(sub)
    return parser


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (it is a dependency on Linux), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        setup_logging(settings)
    except ConfigError as e:
        print(f"vpnshop: {e}", file=sys.stderr)
        return 2
    _warn_unknown(settings)
    from vpnshop.bootstrap import SchemaOutOfDateError
    from vpnshop.diagnose import database_failure
    from vpnshop.domain.errors import DomainError

    if getattr(args, "database", False):
        from vpnshop.diagnose import sqlite_preflight

        problem = sqlite_preflight(settings.database_url)
        if problem is not None:
            print(f"vpnshop: {problem}", file=sys.stderr)
            return 1
    try:
        handler: Handler = args.handler
        return run_async(handler(args, settings))
    except ConfigError as e:
        print(f"vpnshop: {e}", file=sys.stderr)
        return 2
    except (DomainError, SchemaOutOfDateError, SettingUnusableError) as e:
        print(f"vpnshop: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        line = database_failure(settings.database_url, e)
        if line is None and isinstance(e, OSError):
            line = f"{e.strerror or e}"  # the machine, not our code: no traceback
        if line is None:
            raise  # our bug: the traceback is for us
        print(f"vpnshop: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
