"""How to connect: per platform, the recommended apps and the link to import."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery

from vpnshop.domain.customer import Customer
from vpnshop.i18n import Translator
from vpnshop.services.journeys import CustomerJourneys
from vpnshop_bot.callbacks import Connect, Nav
from vpnshop_bot.keyboards.connect import apps, platforms
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.screens import show

# Apps that import a Remnawave subscription link, by platform (name, store page).
APPS: dict[str, tuple[tuple[str, str], ...]] = {
    "ios": (
        ("Happ", "https://apps.apple.com/app/happ-proxy-utility/id6504287215"),
        ("Streisand", "https://apps.apple.com/app/streisand/id6450534064"),
        ("v2RayTun", "https://apps.apple.com/app/v2raytun/id6476628951"),
    ),
    "android": (
        ("Happ", "https://play.google.com/store/apps/details?id=com.happproxy"),
        ("v2rayNG", "https://github.com/2dust/v2rayNG/releases/latest"),
        ("Hiddify", "https://play.google.com/store/apps/details?id=app.hiddify.com"),
    ),
    "windows": (
        ("Hiddify", "https://github.com/hiddify/hiddify-app/releases/latest"),
        ("v2rayN", "https://github.com/2dust/v2rayN/releases/latest"),
    ),
    "macos": (
        ("Happ", "https://apps.apple.com/app/happ-proxy-utility/id6504287215"),
        ("Hiddify", "https://github.com/hiddify/hiddify-app/releases/latest"),
    ),
    "linux": (
        ("Hiddify", "https://github.com/hiddify/hiddify-app/releases/latest"),
        ("Throne", "https://github.com/throneproj/Throne/releases/latest"),
    ),
}


async def current_link(journeys: CustomerJourneys, customer: Customer) -> str | None:
    assert customer.id is not None
    home = await journeys.home(customer.id)
    if home.subscription is None:
        return None
    details = await journeys.subscription_details(customer.id, home.subscription.id, devices=False)
    return details.link


def setup(menu: MenuRegistry) -> Router:
    menu.add(MenuEntry("connect", "btn.connect", Nav(to="connect").pack(), order=70))
    router = Router(name="connect")

    @router.callback_query(Nav.filter(F.to == "connect"))
    async def choose(query: CallbackQuery, tr: Translator) -> None:
        await query.answer()
        await show(query, tr("connect.choose"), platforms(tr, tuple(APPS)))

    @router.callback_query(Connect.filter(F.platform.in_(APPS)))
    async def platform(
        query: CallbackQuery,
        callback_data: Connect,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer()
        code = callback_data.platform
        names = ", ".join(name for name, _ in APPS[code])
        link = await current_link(journeys, customer)
        lines = [tr("connect.steps", platform=tr(f"connect.platform.{code}"), apps=names)]
        lines.append(tr("connect.link", link=link) if link else tr("connect.no_link"))
        await show(query, "\n\n".join(lines), apps(tr, APPS[code]))

    return router
