"""Updates per second through the whole bot stack, next to a bare aiogram floor.

Product: updates fed to ``build_dispatcher``'s dispatcher (every middleware, the
handler, the App on a SQLite file, the Remnawave emulator for "my subscription") and the
answer sent over HTTP to the Telegram emulator. Floor: a bare aiogram ``Dispatcher`` with
no middleware and one handler that sends the same answer (the text and keyboard the
product sent) to the same emulator through the same kind of ``Bot``. Two journeys:

* main menu: ``/menu`` typed; the answer is a new message;
* my subscription: the "My subscription" button on the menu; the callback query is
  answered and the message edited (the panel asked for the user: usage, online, link).

Rounds alternate product and floor (A B A B); each prints the median of its rounds and
the ratio product/floor, the median of each product round's rate over the floor round's
next to it (targets: main menu >= 75 %, my subscription >= 50 %). Updates
are built through the emulator's user API before each round (outside the timing) and
fed with ``--concurrency`` at a time, as polling hands them to tasks.

Then the process: ``vpnshop run bot`` started against the emulator (polling, SQLite),
timed from spawn to its first answer to a waiting ``/start``, and its RSS then; next to
``python -c "import aiogram"`` (its wall time and RSS), measured in the same run; each
side the least of two runs, interleaved (targets: at most 40 MiB and 1 s above it).

The dispatcher runs as ``vpnshop run bot`` runs it: on uvloop where installed, with the
heap settled once started (``vpnshop.heap``). Everything runs on one machine: the Telegram
emulator shares the event loop with the dispatcher (product and floor both pay for it);
the panel emulator, which only the product calls, runs in a process of its own (a panel
is another machine in production: its CPU is not the bot's, nor is its GIL). The numbers
move with the machine's load; the CPU per update printed under each journey moves less.
Bounded: N updates per round, ROUNDS rounds, a wall-clock deadline.

    python bench/bench_bot.py [--n 400] [--rounds 7] [--users 40] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from _children import end_child  # bench/ is the script's directory
from aiogram import Bot, Dispatcher, F
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from vpnshop.adapters.storage.engine import create_engine
from vpnshop.adapters.storage.migrate import upgrade
from vpnshop.bootstrap import bootstrap
from vpnshop.cli import run_async
from vpnshop.config import parse_settings
from vpnshop.domain.actor import Actor
from vpnshop.heap import settle_heap
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.testing.telegram import TelegramEmulator, TgUser
from vpnshop_bot.dispatcher import build_dispatcher
from vpnshop_bot.serve import make_bot

TOKEN = "123456:AAH-benchTokenForTheVpnshopBotBench_0123"
DEADLINE_SECONDS = 300.0
TARGETS = {"main menu": 0.75, "my subscription": 0.5}
RSS_TARGET_MIB = 40.0
START_TARGET_S = 1.0
MINE = "🔑 My subscription"

Feed = Callable[[dict[str, Any]], Awaitable[Any]]


def take_update(tg: TelegramEmulator) -> dict[str, Any]:
    """The update the user API just queued, taken off the feed (nobody polls here)."""
    return tg.feed.pending.pop()


async def feed_all(
    feed: Feed, updates: Sequence[dict[str, Any]], concurrency: int
) -> tuple[float, float]:
    """Feed *updates*, *concurrency* at a time; the rate in updates per second and the
    CPU time per update in ms (every thread of this process, the Telegram emulator
    included, the panel's thread not: less sensitive to the machine's other load than
    the rate)."""
    queue = list(reversed(updates))

    async def worker() -> None:
        while queue:
            await feed(queue.pop())

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu_ms = (time.process_time() - cpu) * 1000 / len(updates)
    return len(updates) / (time.perf_counter() - started), cpu_ms


def floor_dispatcher(menu: tuple[str, InlineKeyboardMarkup], sub: tuple[str, Any]) -> Dispatcher:
    """No middleware, one handler per journey that sends what the product sent."""
    dp = Dispatcher()

    @dp.message(F.text == "/menu")
    async def menu_answer(message: Message) -> None:
        await message.answer(menu[0], reply_markup=menu[1])

    @dp.callback_query()
    async def sub_answer(query: CallbackQuery) -> None:
        await query.answer()
        assert isinstance(query.message, Message)
        try:
            await query.message.edit_text(sub[0], reply_markup=sub[1])
        except TelegramBadRequest as e:  # the product treats it as success too
            if "message is not modified" not in e.message:
                raise

    return dp


@attrs.frozen
class Panel:
    """Where the panel emulator listens, and its API token."""

    base_url: str
    token: str


@contextlib.asynccontextmanager
async def panel_process() -> AsyncIterator[Panel]:
    """The Remnawave emulator in a process of its own (``_panel_process.py``): the panel is
    another machine in production, so its CPU must not count in the bot's and its work
    must not hold the bot's GIL (a thread would: every answer would cost the bot a GIL
    hand-over that no deployment pays). Only the product calls it; the floor does not."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_panel_process.py")),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().split()
        if len(line) != 3 or line[0] != "ready":
            raise RuntimeError(f"the panel process did not start: {line!r}")
        yield Panel(base_url=line[1], token=line[2])
    finally:
        await end_child(proc)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def import_aiogram_baseline() -> tuple[float, float]:
    """Wall seconds and RSS (MiB) of ``python -c "import aiogram"``."""
    code = (
        "import aiogram, pathlib\n"
        "s = pathlib.Path('/proc/self/status').read_text()\n"
        "print(next(l.split()[1] for l in s.splitlines() if l.startswith('VmRSS:')))"
    )
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return time.perf_counter() - started, int(out) / 1024


async def bot_process(db_url: str, tg: TelegramEmulator, panel: Panel, uid: int):  # type: ignore[no-untyped-def]
    """Seconds from spawning ``vpnshop run bot`` to its answer to a waiting /start, and
    its RSS (MiB) then."""
    user = tg.user(uid, "Startup", language_code="en")
    await user.start()
    env = {
        **os.environ,
        "VPNSHOP_DATABASE_URL": db_url,
        "VPNSHOP_PANEL_URL": panel.base_url,
        "VPNSHOP_PANEL_TOKEN": panel.token,
        "VPNSHOP_BOT_TOKEN": tg.token,
        "VPNSHOP_BOT_API_URL": tg.api_url,
        "VPNSHOP_BOT_METRICS_PORT": "0",
    }
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from vpnshop.cli import main; sys.exit(main())",
        "run",
        "bot",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await user.wait_until(lambda: bool(user.replies()), within=30, what="the bot's answer")
        elapsed = time.perf_counter() - started
        rss = rss_mib(proc.pid)
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    if proc.returncode not in (0, -15):
        print(err.decode()[-2000:], file=sys.stderr)
    return elapsed, rss


async def run(n: int, rounds: int, users: int, concurrency: int, workdir: Path) -> int:
    db = workdir / "bench.db"
    db_url = f"sqlite+aiosqlite:///{db}"
    engine = create_engine(db_url)
    await upgrade(engine)
    await engine.dispose()
    async with TelegramEmulator(TOKEN) as tg, panel_process() as panel:
        tg.callback_answer_timeout = 1e9  # updates are built before their round
        settings = parse_settings(
            {
                "VPNSHOP_DATABASE_URL": db_url,
                "VPNSHOP_PANEL_URL": panel.base_url,
                "VPNSHOP_PANEL_TOKEN": panel.token,
                "VPNSHOP_BOT_TOKEN": tg.token,
                "VPNSHOP_BOT_API_URL": tg.api_url,
                "VPNSHOP_BOT_THROTTLE_CUSTOMER": "10000",  # the bench, not the limit
            }
        )
        async with bootstrap(settings) as app:
            await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("bench"))
            dp = build_dispatcher(app, link_wait=10.0)
            bot = make_bot(tg.token, tg.api_url)
            floor_bot = make_bot(tg.token, tg.api_url)
            settle_heap()  # as `vpnshop run bot` does once it has started (vpnshop.heap)
            try:
                return await measure(
                    app, tg, panel, dp, bot, floor_bot, db_url, n, rounds, users, concurrency
                )
            finally:
                await bot.session.close()
                await floor_bot.session.close()


async def measure(
    app: Any,
    tg: TelegramEmulator,
    panel: Panel,
    dp: Dispatcher,
    bot: Bot,
    floor_bot: Bot,
    db_url: str,
    n: int,
    rounds: int,
    users: int,
    concurrency: int,
) -> int:
    async def product(update: dict[str, Any]) -> Any:
        return await dp.feed_raw_update(bot, update)

    people: list[TgUser] = []
    for i in range(users):  # onboarded, on the trial, with the panel user and link
        user = tg.user(10_000 + i, f"User{i}", language_code="en")
        await user.start()
        await product(take_update(tg))
        await user.press("🎁 Free trial")
        await product(take_update(tg))
        if "active until" not in user.last.text:
            raise RuntimeError(f"the trial did not start: {user.last.text!r}")
        await user.send("/menu")
        await product(take_update(tg))
        people.append(user)
    first = people[0]
    menu = (first.last.source or "", InlineKeyboardMarkup.model_validate(first.last.reply_markup))
    mine = first.button(MINE).callback_data or ""
    await first.press(MINE)
    await product(take_update(tg))
    screen = first.last
    sub = (screen.source or "", InlineKeyboardMarkup.model_validate(screen.reply_markup))
    floor = floor_dispatcher(menu, sub)

    async def floor_feed(update: dict[str, Any]) -> Any:
        return await floor.feed_raw_update(floor_bot, update)

    async def menu_updates() -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            await people[i % users].send("/menu")
            out.append(take_update(tg))
        return out

    async def sub_updates() -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            user = people[i % users]
            await user.press_data(mine, user.last)  # the menu button's own callback data
            out.append(take_update(tg))
        return out

    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    verdicts = []
    print(
        f"bench_bot: {n} updates a round, {rounds} rounds (A B A B), {users} users, "
        f"{concurrency} at a time, SQLite; one shared machine: expect noise"
    )
    for journey, build in (("main menu", menu_updates), ("my subscription", sub_updates)):
        a: list[float] = []
        b: list[float] = []
        ca: list[float] = []
        cb: list[float] = []
        for _ in range(rounds):
            if loop.time() > deadline:
                print("bench_bot: deadline reached, fewer rounds")
                break
            for feed, rates, cpus in ((product, a, ca), (floor_feed, b, cb)):
                rate, cpu = await feed_all(feed, await build(), concurrency)
                rates.append(rate)
                cpus.append(cpu)
        pa, pb = statistics.median(a), statistics.median(b)
        cpa, cpb = statistics.median(ca), statistics.median(cb)
        # each product round against the floor round next to it: the machine's speed
        # drifts between rounds, less within a pair
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        ok = ratio >= TARGETS[journey]
        verdicts.append(ok)
        print(
            f"  {journey:16} product {pa:7.0f}/s  floor {pb:7.0f}/s  ratio {ratio:5.0%}"
            f"  (target >= {TARGETS[journey]:.0%}: {'met' if ok else 'MISSED'})"
            f"  rounds {[round(x) for x in a]} vs {[round(x) for x in b]}"
        )
        print(
            f"  {'':16} CPU per update: product {cpa:.2f} ms, floor {cpb:.2f} ms"
            f" (floor/product {cpb / cpa:.0%})"
        )
    # the same estimator on both sides: the least of two runs each, interleaved
    base_s, base_rss = await import_aiogram_baseline()
    bot_s, bot_rss = await bot_process(db_url, tg, panel, 99_999)
    base2_s, base2_rss = await import_aiogram_baseline()
    bot2_s, bot2_rss = await bot_process(db_url, tg, panel, 99_998)
    base_s, base_rss = min(base_s, base2_s), min(base_rss, base2_rss)
    bot_s, bot_rss = min(bot_s, bot2_s), min(bot_rss, bot2_rss)
    d_rss, d_s = bot_rss - base_rss, bot_s - base_s
    rss_ok, start_ok = d_rss <= RSS_TARGET_MIB, d_s <= START_TARGET_S
    verdicts += [rss_ok, start_ok]
    print(f"  import aiogram   {base_s:5.2f} s  {base_rss:6.1f} MiB")
    print(
        f"  vpnshop run bot  {bot_s:5.2f} s to the first answer, {bot_rss:6.1f} MiB RSS then"
        f"  ({d_s:+.2f} s: {'met' if start_ok else 'MISSED'}; "
        f"{d_rss:+.1f} MiB: {'met' if rss_ok else 'MISSED'})"
    )
    return 0 if all(verdicts) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400, help="updates per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-bot-") as tmp:
        # on uvloop where installed, as `vpnshop run bot` runs (product and floor alike)
        return run_async(run(args.n, args.rounds, args.users, args.concurrency, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
