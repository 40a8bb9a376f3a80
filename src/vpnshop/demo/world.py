"""The demo's world: every emulator on loopback and the shop running against them.

The shop is what ``vpnshop run all`` runs, on a temporary SQLite file: one App (built by
``bootstrap`` from settings that point at the emulators, with the demo's clock), and the
webhook server, the scheduler and the bot started through their entry points on it.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import attrs

from vpnshop.bootstrap import App, bootstrap
from vpnshop.config import parse_settings
from vpnshop.demo.clock import TravellingClock
from vpnshop.domain.actor import Actor
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.runner import installed_shells
from vpnshop.testing.cryptopay import CryptoPayEmulator
from vpnshop.testing.freekassa import FreeKassaEmulator
from vpnshop.testing.providers import provider_env
from vpnshop.testing.remnawave import RemnawaveEmulator
from vpnshop.testing.telegram import TelegramEmulator
from vpnshop.testing.tribute import TributeEmulator
from vpnshop.testing.yookassa import YooKassaEmulator

# The emulator's bot token (the settings check the shape of a real one); not a secret.
TOKEN = "123456:AAH-demoTokenOfTheVpnshopOfflineDemo_01234"  # noqa: S105
TRIBUTE_PRODUCT = "sMONTH"  # the Tribute product sold as the "month" plan
PARTS = ("webhooks", "scheduler", "bot")
START_TIMEOUT = 30.0


@attrs.define
class World:
    app: App
    clock: TravellingClock
    tg: TelegramEmulator
    panel: RemnawaveEmulator
    yookassa: YooKassaEmulator
    cryptopay: CryptoPayEmulator
    freekassa: FreeKassaEmulator
    tribute: TributeEmulator
    urls: dict[str, str]
    database: Path


def demo_env(
    db: Path,
    tg: TelegramEmulator,
    panel: RemnawaveEmulator,
    yk: YooKassaEmulator,
    cp: CryptoPayEmulator,
    fk: FreeKassaEmulator,
    tb: TributeEmulator,
) -> dict[str, str]:
    """The settings of the demo's shop: every outside system is an emulator on loopback,
    the servers take free ports, the scheduler's jobs run several times a second."""
    return {
        "VPNSHOP_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "VPNSHOP_PANEL_URL": panel.base_url,
        "VPNSHOP_PANEL_TOKEN": panel.token,
        "VPNSHOP_BOT_TOKEN": tg.token,
        "VPNSHOP_BOT_API_URL": tg.api_url,
        "VPNSHOP_BOT_METRICS_PORT": "0",
        # A script taps faster than a person: the per-customer throttle would drop it.
        "VPNSHOP_BOT_THROTTLE_CUSTOMER": "1000",
        "VPNSHOP_WEBHOOKS_PORT": "0",
        "VPNSHOP_SCHEDULER_PORT": "0",
        "VPNSHOP_SCHEDULER_INTERVALS": "outbox=0.2,reminders=0.2,auto_renew=0.2",
        **provider_env(
            yk,
            cp,
            fk,
            tb,
            tribute_product=TRIBUTE_PRODUCT,
            return_url="https://t.me/vpnshop_demo_bot",
        ),
    }


@asynccontextmanager
async def demo_world() -> AsyncIterator[World]:
    """Emulators, then the shop on a temporary SQLite file; all stopped on exit."""
    shells = installed_shells()
    if missing := [p for p in PARTS if p not in shells]:
        raise RuntimeError(
            f"the demo needs the shells {', '.join(missing)}: pip install 'vpnshop[bot]'"
        )
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vpnshop-demo-")))
        tg = await stack.enter_async_context(TelegramEmulator(TOKEN))
        panel = await stack.enter_async_context(RemnawaveEmulator("3.3.2"))
        yk = await stack.enter_async_context(YooKassaEmulator())
        cp = await stack.enter_async_context(CryptoPayEmulator())
        fk = await stack.enter_async_context(FreeKassaEmulator())
        tb = await stack.enter_async_context(TributeEmulator())
        tb.add_product(TRIBUTE_PRODUCT, price=19900)
        db = tmp / "vpnshop.db"
        settings = parse_settings(demo_env(db, tg, panel, yk, cp, fk, tb))
        clock = TravellingClock()
        wake = asyncio.Event()
        app = await stack.enter_async_context(bootstrap(settings, clock=clock, kick=wake.set))
        await app.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("demo"))
        stop = asyncio.Event()
        urls: dict[str, str] = {}
        ready = {name: asyncio.Event() for name in PARTS}

        def on_ready(name: str) -> object:
            def mark(value: object) -> None:
                if isinstance(value, str):
                    urls[name] = value
                ready[name].set()

            return mark

        tasks: list[asyncio.Task[None]] = []

        async def stop_parts() -> None:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        stack.push_async_callback(stop_parts)
        for name in PARTS:
            extra = {"wake": wake} if name == "scheduler" else {}
            part = shells[name](settings, app=app, stop=stop, ready=on_ready(name), **extra)
            tasks.append(asyncio.create_task(_awaited(part), name=f"demo-{name}"))
        await _started(ready, tasks)
        for emulator, provider in ((yk, "yookassa"), (cp, "cryptopay"), (fk, "freekassa")):
            emulator.webhook_url = f"{urls['webhooks']}/webhooks/{provider}"
        tb.webhook_url = f"{urls['webhooks']}/webhooks/tribute"
        yield World(app, clock, tg, panel, yk, cp, fk, tb, urls, db)


async def _awaited(part: Awaitable[None]) -> None:
    await part


async def _started(ready: dict[str, asyncio.Event], tasks: list[asyncio.Task[None]]) -> None:
    """Wait until every part is ready; a part that fails to start is raised."""

    async def all_ready() -> None:
        for event in ready.values():
            await event.wait()

    waiting = asyncio.create_task(all_ready())
    done, _ = await asyncio.wait(
        [waiting, *tasks],
        timeout=START_TIMEOUT,
        return_when=asyncio.FIRST_COMPLETED,
    )
    for task in tasks:
        if task in done:
            task.result()  # raises what stopped it
            raise RuntimeError(f"{task.get_name()} ended while starting")
    if not all(e.is_set() for e in ready.values()):
        waiting.cancel()
        raise TimeoutError(f"the shop did not start within {START_TIMEOUT:.0f} s")
