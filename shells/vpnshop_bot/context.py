"""What every handler may ask for by name (aiogram workflow data), set once per
dispatcher: ``ctx`` (this), ``app`` (the App), ``journeys`` (its customer use cases).
Per update the middlewares add ``customer`` (read once, by registration: handlers do not
read it again), ``onboarding`` and ``tr``."""

from __future__ import annotations

import attrs

from vpnshop.bootstrap import App
from vpnshop.config.bot import BotSettings
from vpnshop.ports.ratelimit import RateLimiter
from vpnshop_bot.customers import CustomerCache
from vpnshop_bot.menu import MenuRegistry
from vpnshop_bot.metrics import BotMetrics


@attrs.frozen
class BotContext:
    app: App
    settings: BotSettings
    admin_ids: frozenset[int]
    menu: MenuRegistry
    limiter: RateLimiter
    metrics: BotMetrics
    link_wait: float = 8.0  # seconds a trial waits for the panel before "the link will follow"
    customers: CustomerCache = attrs.field(factory=CustomerCache)
