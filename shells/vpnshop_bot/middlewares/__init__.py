"""The middlewares, in the order ``install`` puts them on every update:

registration -> language -> ban -> throttle -> channel gate (outer, on the update), then
metrics (inner, around the handler that was chosen). Each is a small class with one job.
"""

from __future__ import annotations

from aiogram import Dispatcher

from vpnshop_bot.context import BotContext
from vpnshop_bot.middlewares.ban import BanMiddleware
from vpnshop_bot.middlewares.channel import ChannelGateMiddleware
from vpnshop_bot.middlewares.language import LanguageMiddleware
from vpnshop_bot.middlewares.metrics import MetricsMiddleware
from vpnshop_bot.middlewares.registration import RegistrationMiddleware
from vpnshop_bot.middlewares.throttle import ThrottleMiddleware

ORDER = (
    RegistrationMiddleware,
    LanguageMiddleware,
    BanMiddleware,
    ThrottleMiddleware,
    ChannelGateMiddleware,
)


def install(dp: Dispatcher, ctx: BotContext) -> None:
    """Put the middlewares on *dp* in the documented order."""
    dp.update.outer_middleware(RegistrationMiddleware(ctx.customers))
    dp.update.outer_middleware(LanguageMiddleware())
    dp.update.outer_middleware(BanMiddleware(ctx))
    dp.update.outer_middleware(ThrottleMiddleware(ctx))
    dp.update.outer_middleware(ChannelGateMiddleware(ctx))
    metrics = MetricsMiddleware(ctx.metrics)
    for observer in dp.observers.values():
        if observer.event_name not in ("update", "error"):
            observer.middleware(metrics)
