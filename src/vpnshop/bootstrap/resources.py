"""The resources a process opens and closes around :func:`~vpnshop.bootstrap.wire`.

``async with bootstrap(settings) as app:`` opens every resource the process needs
(database engine and payment settler, HTTP sessions of the panel and of the providers),
wires the use cases, and closes everything in reverse order on exit. Each process builds
only what it runs: nothing here imports aiogram; the bot shell adds its own pieces on
top of ``App``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from vpnshop.adapters.clock import SystemClock, UlidIds
from vpnshop.adapters.storage.engine import (
    create_engine,
    create_reader_engine,
    is_sqlite,
    normalise_url,
)
from vpnshop.adapters.storage.migrate import HEAD_REVISION, current_revision, upgrade_if_behind
from vpnshop.adapters.storage.settlers import payment_settler
from vpnshop.adapters.storage.thread_reader import ThreadReader
from vpnshop.adapters.storage.uow import sqlalchemy_uow_factory
from vpnshop.bootstrap.app import App, Storage
from vpnshop.bootstrap.wiring import wire
from vpnshop.config import PanelSettings, Settings
from vpnshop.ports.clock import Clock, IdGenerator
from vpnshop.ports.notifier import Notifier
from vpnshop.ports.panel import VpnPanel
from vpnshop.ports.payments import PaymentGateway
from vpnshop.ports.storage import UnitOfWorkFactory
from vpnshop.services.deps import no_kick

if TYPE_CHECKING:
    from vpnshop.adapters.remnawave import RemnawavePanel, RemnawaveSettings

log = logging.getLogger(__name__)


class SchemaOutOfDateError(RuntimeError):
    """The PostgreSQL schema is not at the newest migration."""


async def prepare_database(engine: AsyncEngine, url: str) -> None:
    """The embedded SQLite default migrates itself; PostgreSQL must be upgraded by the
    operator (``vpnshop db upgrade``), so that several replicas never race a migration."""
    if is_sqlite(url):
        await upgrade_if_behind(engine)
        return
    current, head = await current_revision(engine), HEAD_REVISION
    if current != head:
        raise SchemaOutOfDateError(
            f"the database schema is at {current or 'nothing'}, the code needs {head}: "
            "run `vpnshop db upgrade`"
        )


def pool_size(settings: Settings) -> int:
    """Connections the pool keeps: one per outbox job running at once (each holds one at
    a time) plus ten for everything else. Fewer made the pool open and close an overflow
    connection for most jobs under load (a PostgreSQL backend started per apply)."""
    return settings.scheduler.outbox_concurrency + 10


def open_engine(database_url: str, stack: AsyncExitStack, *, pool_size: int = 10) -> AsyncEngine:
    """The database engine for *database_url*, disposed of by *stack*."""
    engine = create_engine(normalise_url(database_url), pool_size=pool_size)
    stack.push_async_callback(engine.dispose)
    return engine


def open_storage(engine: AsyncEngine, stack: AsyncExitStack) -> Storage:
    """The store on *engine*: units of work and the store's payment settler (when it has
    one), which *stack* closes before the engine is disposed of."""
    settler = payment_settler(engine)
    if settler is not None:
        stack.push_async_callback(settler.aclose)
    reader = create_reader_engine(engine.url.render_as_string(hide_password=False))
    runner = None
    if reader is not None:
        stack.push_async_callback(reader.dispose)
        runner = ThreadReader(engine.url.render_as_string(hide_password=False))
        stack.push_async_callback(runner.aclose)
    return Storage(
        uow=sqlalchemy_uow_factory(engine),
        settler=settler,
        settle_stats=settler.group if settler is not None else None,
        engine=engine,
        read_uow=sqlalchemy_uow_factory(reader) if reader is not None else None,
        read_runner=runner,
    )


async def open_panel(
    panel_settings: PanelSettings,
    stack: AsyncExitStack,
    clock: Clock | None = None,
    on_call: Callable[[str], None] | None = None,
) -> VpnPanel:
    """Build the Remnawave adapter from the settings, start it (detecting the API line;
    an unsupported version or a refused token stops here with the adapter's message) and
    let *stack* close it. *on_call* hears each HTTP call's outcome (metrics)."""
    panel = panel_adapter(panel_settings, stack, clock, on_call)
    await panel.start()
    return panel


def panel_adapter(
    panel_settings: PanelSettings,
    stack: AsyncExitStack,
    clock: Clock | None = None,
    on_call: Callable[[str], None] | None = None,
) -> RemnawavePanel:
    """The Remnawave adapter itself, not started, closed by *stack*: for the operator's
    checks, which probe what the port does not offer (token scopes, version)."""
    from vpnshop.adapters.remnawave import RemnawavePanel

    panel = RemnawavePanel(remnawave_settings(panel_settings), clock=clock, on_call=on_call)
    stack.push_async_callback(panel.aclose)
    return panel


def remnawave_settings(p: PanelSettings) -> RemnawaveSettings:
    """The adapter's settings; the username template and the tag are the same values
    ``PanelNaming`` and ``HandlePanelEvent`` use (one source of truth: ``settings.panel``)."""
    from vpnshop.adapters.remnawave import RemnawaveSettings

    return RemnawaveSettings(
        base_url=p.url,
        token=p.token.get(),
        api_line=p.api_line,
        shop_tag=p.tag,
        username_template=p.username_template,
        x_api_key=p.x_api_key.get() if p.x_api_key else None,
    )


async def open_notifier(settings: Settings, stack: AsyncExitStack) -> Notifier | None:
    """The Telegram notifier when the bot token is set (the outbox's notifications go
    through it), talking to ``VPNSHOP_BOT_API_URL``; closed by *stack*."""
    if settings.bot_token is None:
        return None
    from vpnshop.adapters.telegram import BotApiClient, BotApiSettings, TelegramNotifier

    client = BotApiClient(BotApiSettings(settings.bot_token.get(), base_url=settings.bot.api_url))
    await client.start()
    stack.push_async_callback(client.close)
    return TelegramNotifier(client)


async def open_stars(
    settings: Settings, stack: AsyncExitStack, uow: UnitOfWorkFactory
) -> PaymentGateway | None:
    """Telegram Stars as a gateway when the bot token is set (and Stars are not switched
    off): invoices and refunds through ``VPNSHOP_BOT_API_URL``; refunds find the payer
    through our stored payment."""
    if settings.bot_token is None or not settings.bot.stars:
        return None
    from vpnshop.adapters.payments.stars import StarsGateway, store_charge_owner
    from vpnshop.adapters.telegram import BotApiClient, BotApiSettings

    client = BotApiClient(BotApiSettings(settings.bot_token.get(), base_url=settings.bot.api_url))
    await client.start()
    stack.push_async_callback(client.close)
    return StarsGateway(client, charge_owner=store_charge_owner(uow))


@asynccontextmanager
async def bootstrap(
    settings: Settings,
    *,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    panel: VpnPanel | None = None,
    gateways: Mapping[str, PaymentGateway] | None = None,
    notifier: Notifier | None = None,
    kick: Callable[[], None] = no_kick,
    migrate: bool = True,
    on_panel_call: Callable[[str], None] | None = None,
) -> AsyncIterator[App]:
    """Open what *settings* configure, wire the App, close everything on exit. *panel*,
    *gateways* and *notifier* may be given (tests, the demo); otherwise they are built
    from *settings* when configured (gateways: see ``vpnshop.gateways.build_gateways``;
    pass ``gateways={}`` for none; the notifier: Telegram's, when the bot token is set).
    *on_panel_call* hears the outcome of each HTTP call the built panel makes (the
    process's metrics)."""
    async with AsyncExitStack() as stack:
        engine = open_engine(settings.database_url, stack, pool_size=pool_size(settings))
        if migrate:
            await prepare_database(engine, normalise_url(settings.database_url))
        storage = open_storage(engine, stack)
        clock = clock or SystemClock()
        if panel is None and settings.panel is not None:
            panel = await open_panel(settings.panel, stack, clock, on_panel_call)
        if notifier is None:
            notifier = await open_notifier(settings, stack)
        if gateways is None:
            from vpnshop.gateways import build_gateways

            built = build_gateways(settings, stack)
            stars = await open_stars(settings, stack, storage)
            if stars is not None:
                built[stars.name] = stars
            gateways = built
        yield wire(
            settings,
            storage=storage,
            clock=clock,
            ids=ids or UlidIds(clock),
            panel=panel,
            gateways=gateways,
            notifier=notifier,
            kick=kick,
        )


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Only the database engine, unmigrated (the ``vpnshop db`` commands)."""
    async with AsyncExitStack() as stack:
        yield open_engine(settings.database_url, stack)
