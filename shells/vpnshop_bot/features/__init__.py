"""One module per feature; each has ``setup(menu) -> Router``: it registers its main-menu
buttons (if any) and returns a fresh Router with its handlers. ``FEATURES`` is the order
the routers are included in (``fallback`` last: it takes what nobody else handled).

To add a journey: write ``features/<name>.py`` with ``setup``, its keyboards in
``keyboards/<name>.py``, its texts in the catalogs, and add it to ``FEATURES``."""

from __future__ import annotations

from collections.abc import Callable

from aiogram import Router

from vpnshop_bot.features import (
    balance,
    buy,
    connect,
    home,
    language,
    membership,
    promo,
    referral,
    stars,
    start,
    subscription,
    support,
    topup,
    trial,
)
from vpnshop_bot.menu import MenuRegistry

Setup = Callable[[MenuRegistry], Router]

FEATURES: tuple[Setup, ...] = (
    start.setup,
    home.setup,
    trial.setup,
    subscription.setup,
    balance.setup,
    referral.setup,
    promo.setup,
    language.setup,
    support.setup,
    connect.setup,
    membership.setup,
    buy.setup,
    topup.setup,
    stars.setup,
)
