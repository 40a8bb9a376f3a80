"""The referral programme: the customer's personal link, how many customers it brought,
what it earned, and the policy in words."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery

from vpnshop.domain.customer import Customer
from vpnshop.i18n import Translator
from vpnshop.services.journeys import CustomerJourneys
from vpnshop.services.referrals import ReferralStats
from vpnshop_bot.callbacks import Nav
from vpnshop_bot.keyboards.common import back_only
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.screens import show


def referral_text(tr: Translator, stats: ReferralStats, bot_username: str) -> str:
    link = f"https://t.me/{bot_username}?start=ref_{stats.code}"
    policy = stats.policy
    lines = [tr("ref.title"), tr("ref.link", link=link), tr("ref.count", count=stats.referees)]
    earned = ", ".join(str(m) for m in stats.earnings if m.minor)
    lines.append(tr("ref.earned", amount=earned) if earned else tr("ref.earned_none"))
    rules = []
    if policy.percent:
        rules.append(tr("ref.policy.percent", percent=policy.percent))
    if policy.referrer_bonus_days:
        rules.append(tr("ref.policy.referrer_days", days=policy.referrer_bonus_days))
    if policy.referee_bonus_days:
        rules.append(tr("ref.policy.referee_days", days=policy.referee_bonus_days))
    lines.append("\n".join(rules) if rules else tr("ref.policy.none"))
    return "\n".join(lines)


def setup(menu: MenuRegistry) -> Router:
    menu.add(MenuEntry("ref", "btn.referral", Nav(to="ref").pack(), order=50))
    router = Router(name="referral")

    @router.callback_query(Nav.filter(F.to == "ref"))
    async def referral(
        query: CallbackQuery, journeys: CustomerJourneys, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        assert query.bot is not None
        stats = await journeys.referral_stats(customer.id)
        me = await query.bot.me()  # cached by aiogram after the first getMe
        await show(query, referral_text(tr, stats, me.username or ""), back_only(tr))

    return router
