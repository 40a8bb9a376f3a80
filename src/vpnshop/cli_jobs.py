"""The ``broadcast`` and ``demo-data`` commands of ``vpnshop`` (imports stay lazy, as in
``vpnshop.cli``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from vpnshop.config import Settings

SEGMENTS = ("all", "active", "expired", "never-paid")


def _progress_line(p: Any) -> str:
    b = p.broadcast
    return (
        f"broadcast {b.id} ({b.segment.value}, {b.status.value}): sent {p.sent}, "
        f"failed {p.failed}, pending {p.pending + p.in_flight}, skipped {p.skipped}"
    )


async def cmd_broadcast_create(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.bootstrap import bootstrap
    from vpnshop.domain.actor import Actor
    from vpnshop.domain.broadcast import Segment
    from vpnshop.services.broadcasts import CreateBroadcast

    path = Path(args.text_file)
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"vpnshop: cannot read the text file {path}: {e}", file=sys.stderr)
        return 1
    async with bootstrap(settings) as app:
        p = await CreateBroadcast(app.deps)(Segment(args.segment), text, actor=Actor.system("cli"))
    rate = settings.customer_jobs.broadcast_rate
    print(
        f"broadcast {p.broadcast.id} created for {p.total} recipient(s) in segment {args.segment}"
    )
    print(f"the scheduler sends it at {rate:g} messages/s")
    print(f"progress: vpnshop broadcast status {p.broadcast.id}")
    return 0


async def cmd_broadcast_status(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.bootstrap import bootstrap
    from vpnshop.services.broadcasts import BroadcastStatusQuery

    async with bootstrap(settings) as app:
        p = await BroadcastStatusQuery(app.deps)(args.id)
    print(_progress_line(p))
    return 0


async def cmd_broadcast_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.bootstrap import bootstrap
    from vpnshop.domain.actor import Actor
    from vpnshop.services.broadcasts import BroadcastStatusQuery, CancelBroadcast

    async with bootstrap(settings) as app:
        cancelled = await CancelBroadcast(app.deps)(args.id, actor=Actor.system("cli"))
        p = await BroadcastStatusQuery(app.deps)(args.id)
    if not cancelled:
        print(f"broadcast {args.id} was not running ({p.broadcast.status.value}); nothing changed")
        return 1
    print(_progress_line(p))
    return 0


def _bar(done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.monotonic() - started, 1e-9)
    sys.stderr.write(
        f"\rdemo-data [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} customers "
        f"({rate:,.0f}/s)"
    )
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


async def cmd_demo_data(args: argparse.Namespace, settings: Settings) -> int:
    from vpnshop.adapters.storage.demo_data import generate_demo_data
    from vpnshop.bootstrap import bootstrap
    from vpnshop.domain.actor import Actor
    from vpnshop.plansfile import EXAMPLE, load_plans_file

    if args.customers < 1:
        print("vpnshop: --customers must be at least 1", file=sys.stderr)
        return 2
    async with bootstrap(settings) as app:
        if not await app.list_plans():
            await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("demo-data"))
            print("no plans were on sale: loaded the example plans")
        assert app.engine is not None
        started = time.monotonic()
        report = await generate_demo_data(
            app.engine,
            args.customers,
            app.deps.now(),
            seed=args.seed,
            progress=lambda d, n: _bar(d, n, started),
        )
    took = time.monotonic() - started
    print(
        f"demo-data: {report.customers:,} customers, {report.subscriptions:,} subscriptions, "
        f"{report.payments:,} payments, {report.ledger_entries:,} ledger entries in {took:.1f} s"
    )
    return 0


def add_commands(sub: Any) -> None:
    """Add ``broadcast`` and ``demo-data`` to the ``vpnshop`` parser's subcommands."""
    b = sub.add_parser(
        "broadcast",
        help="messages to a segment of the customers",
        description="Create, follow and cancel broadcasts; the scheduler sends them.",
    )
    bsub = b.add_subparsers(dest="broadcast_command", metavar="COMMAND", required=True)
    p = bsub.add_parser(
        "create",
        help="create a broadcast",
        description="Create a broadcast of the text in FILE (Telegram HTML, at most 4096 "
        "characters) to a segment: all, active (a subscription running), expired (one "
        "that ran out) or never-paid. Banned and unreachable customers are left out.",
    )
    p.add_argument("--segment", choices=SEGMENTS, required=True)
    p.add_argument("--text-file", required=True, metavar="FILE")
    p.set_defaults(handler=cmd_broadcast_create, database=True)
    p = bsub.add_parser(
        "status",
        help="a broadcast's progress",
        description="Print a broadcast's progress: sent, failed, pending, skipped.",
    )
    p.add_argument("id", type=int)
    p.set_defaults(handler=cmd_broadcast_status, database=True)
    p = bsub.add_parser(
        "cancel",
        help="stop a broadcast",
        description="Stop a running broadcast; recipients not sent to yet are skipped. "
        "Exits 1 when it was not running.",
    )
    p.add_argument("id", type=int)
    p.set_defaults(handler=cmd_broadcast_cancel, database=True)

    p = sub.add_parser(
        "demo-data",
        help="fill the database with realistic demo customers",
        description="Write N realistic customers with subscriptions, payments and balances "
        "(PostgreSQL: COPY, about a million a minute; SQLite: slower), for benchmarks and "
        "demos. Loads the example plans when none are on sale. `vpnshop ledger verify` "
        "passes on the result.",
    )
    p.add_argument("--customers", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=12, help="random seed (default 12)")
    p.set_defaults(handler=cmd_demo_data, database=True)
