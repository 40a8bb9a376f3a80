"""``build_dispatcher``: the one factory ``serve`` and the tests call."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram import Dispatcher
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage

from vpnshop.adapters.ratelimit import MemoryRateLimiter
from vpnshop.bootstrap import App
from vpnshop.config.bot import BotSettings
from vpnshop.ports.ratelimit import RateLimiter
from vpnshop_bot import features, middlewares
from vpnshop_bot.context import BotContext
from vpnshop_bot.errors import on_error
from vpnshop_bot.features import fallback
from vpnshop_bot.menu import MenuRegistry
from vpnshop_bot.metrics import BotMetrics


def build_dispatcher(
    app: App,
    settings: BotSettings | None = None,
    *,
    limiter: RateLimiter | None = None,
    storage: BaseStorage | None = None,
    metrics: BotMetrics | None = None,
    link_wait: float = 8.0,
    extra: Sequence[features.Setup] = (),
) -> Dispatcher:
    """The dispatcher with every feature's router (``features.FEATURES``, then the
    fallback), the middlewares in their order and the error handler. *limiter* and
    *storage* default to memory (``serve`` passes Redis ones when configured). *extra*
    features (the admin's, later) come after the customer's, before the fallback."""
    if app.journeys is None:
        raise ValueError("the App has no customer journeys")
    settings = settings or app.settings.bot
    ctx = BotContext(
        app=app,
        settings=settings,
        admin_ids=frozenset(app.settings.admin_ids),
        menu=MenuRegistry(),
        limiter=limiter or MemoryRateLimiter(),
        metrics=metrics or BotMetrics(),
        link_wait=link_wait,
    )
    dp = Dispatcher(storage=storage or MemoryStorage(), ctx=ctx, app=app, journeys=app.journeys)
    for setup in (*features.FEATURES, *extra, fallback.setup):
        dp.include_router(setup(ctx.menu))
    middlewares.install(dp, ctx)
    dp.errors.register(on_error)
    return dp


def allowed_updates(dp: Dispatcher) -> list[str]:
    """Exactly the update kinds the handlers use (for getUpdates and setWebhook)."""
    return dp.resolve_used_update_types()
