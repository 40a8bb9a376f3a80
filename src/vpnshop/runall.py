"""``vpnshop run all``: the bot, the webhook server and the scheduler in one process.

One event loop and one App (so one database engine: SQLite has a single writer, and three
engines in one process would fight over the file). The webhook server always runs, the
scheduler always runs (it drains the outbox, woken at once by the App's own commits), and
the bot runs when ``VPNSHOP_BOT_TOKEN`` is set; without a token aiogram is never imported.
SIGTERM/SIGINT sets one stop event: every part stops the way it stops alone (in-flight
requests, handlers and jobs finish), then the App closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from vpnshop.config import Settings
from vpnshop.heap import settle_heap
from vpnshop.runner import Serve, installed_shells, prepare_embedded

if TYPE_CHECKING:
    from vpnshop.bootstrap import App


def parts_of(settings: Settings) -> list[str]:
    """The shells this configuration runs, in start order."""
    return ["webhooks", "scheduler", *(["bot"] if settings.bot_token is not None else [])]


def describe(settings: Settings, name: str, url: str | None, providers: list[str]) -> str:
    """One line of the startup summary: the part, where it listens, how it works."""
    if name == "webhooks":
        shown = ", ".join(providers) or "none configured"
        return f"  webhooks   {url}  (/webhooks/<provider>; providers: {shown})"
    if name == "scheduler":
        return f"  scheduler  {url}  (/healthz, /metrics; the outbox and the periodic jobs)"
    bot = settings.bot
    if bot.mode == "webhook":
        how = f"webhook mode: Telegram posts to {bot.webhook_host}:{bot.webhook_port}"
    else:
        how = f"long polling {bot.api_url}"
    metrics = f"; metrics on {bot.metrics_host}:{bot.metrics_port}" if bot.metrics_port else ""
    return f"  bot        {how}{metrics}"


async def run_all(settings: Settings) -> int:
    """Prepare the embedded shop, then run every configured part until a signal."""
    from vpnshop.bootstrap import bootstrap
    from vpnshop.checks import run_checks

    await prepare_embedded(settings)
    status = await run_checks(settings, reach=False, out=sys.stdout)
    if status != 0:
        print("vpnshop run all: fix the configuration above first", file=sys.stderr)
        return status
    shells = installed_shells()
    parts = parts_of(settings)
    if missing := [p for p in parts if p not in shells]:
        print(f"vpnshop run all: not installed: {', '.join(missing)}", file=sys.stderr)
        return 2
    stop, wake = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    panel_calls = PanelCalls()
    try:
        async with bootstrap(settings, kick=wake.set, on_panel_call=panel_calls) as app:
            return await _run_parts(settings, app, parts, shells, stop, wake, panel_calls)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _run_parts(
    settings: Settings,
    app: App,
    parts: list[str],
    shells: dict[str, Serve],
    stop: asyncio.Event,
    wake: asyncio.Event,
    panel_calls: PanelCalls,
) -> int:
    urls: dict[str, str | None] = {}

    def ready(name: str) -> Callable[[object], None]:
        def mark(value: object) -> None:
            urls[name] = value if isinstance(value, str) else None
            if len(urls) == len(parts):
                announce(settings, parts, urls, sorted(app.gateways))

        return mark

    tasks: dict[str, asyncio.Task[None]] = {}
    for name in parts:
        extra: dict[str, object] = {}
        if name == "scheduler":
            extra["wake"] = wake
        elif name == "webhooks":
            extra["observe_panel"] = panel_calls.join
        part = shells[name](settings, app=app, stop=stop, ready=ready(name), **extra)
        tasks[name] = asyncio.create_task(_awaited(part), name=f"vpnshop-{name}")
    settle_heap()  # every part's code is imported and the App is built
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    early = [n for n, t in tasks.items() if t.done()] if not stop.is_set() else []
    if stop.is_set():
        print("vpnshop run all: stopping every part", flush=True)
    stop.set()  # one part ended (a failure): stop the rest rather than run half a shop
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    for task in tasks.values():
        if (exc := task.exception()) is not None:
            raise exc
    if early:
        print(f"vpnshop run all: {', '.join(early)} ended by itself", file=sys.stderr)
        return 1
    print("vpnshop run all: stopped", flush=True)
    return 0


class PanelCalls:
    """The panel adapter's call observer in ``run all``: the App (and its panel) is built
    before the parts, so the webhooks part, which counts the calls on its /metrics as it
    does alone, joins later and is handed the calls made before it joined (the API line
    detection at start)."""

    def __init__(self) -> None:
        self._early: collections.Counter[str] = collections.Counter()
        self._observers: list[Callable[[str], None]] = []

    def __call__(self, outcome: str) -> None:
        if not self._observers:
            self._early[outcome] += 1
        for observe in self._observers:
            observe(outcome)

    def join(self, observe: Callable[[str], None]) -> None:
        for outcome, times in self._early.items():
            for _ in range(times):
                observe(outcome)
        self._early.clear()
        self._observers.append(observe)


async def _awaited(part: Awaitable[None]) -> None:
    await part


def announce(
    settings: Settings, parts: list[str], urls: dict[str, str | None], providers: list[str]
) -> None:
    """What runs where, once every part is ready."""
    print(f"vpnshop run all: one process, database {_shown_db(settings)}", flush=False)
    for name in parts:
        print(describe(settings, name, urls.get(name), providers), flush=False)
    if "bot" not in parts:
        print("  bot        off: VPNSHOP_BOT_TOKEN is not set", flush=False)
    print("Ctrl-C (or SIGTERM) stops all of it.", flush=True)


def _shown_db(settings: Settings) -> str:
    url = settings.database_url
    if "@" in url:  # never print a password
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url
