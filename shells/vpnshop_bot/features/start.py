"""``/start [payload]``: the registration middleware has onboarded the customer with the
deep link; this says what the link did, then shows the main menu."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import CommandStart
from aiogram.types import Message

from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import PromoExhaustedError, PromoExpiredError, PromoUsedError
from vpnshop.i18n import Translator
from vpnshop.services.journeys import CustomerJourneys
from vpnshop.services.onboarding import Onboarding, ReferralOutcome
from vpnshop_bot.context import BotContext
from vpnshop_bot.features.home import home_screen
from vpnshop_bot.menu import MenuRegistry

_REFERRAL_TEXT = {
    ReferralOutcome.BOUND: "start.ref.bound",
    ReferralOutcome.REFUSED: "start.ref.refused",
    ReferralOutcome.UNKNOWN: "start.ref.unknown",
}


def link_notes(tr: Translator, onboarding: Onboarding, referee_days: int = 0) -> list[str]:
    """What the deep link did, in words (nothing for a plain /start or a campaign). A
    bound referral promises the referee's bonus days only when the policy grants some."""
    notes = []
    if onboarding.referral is ReferralOutcome.BOUND and referee_days:
        notes.append(tr("start.ref.bound_days", days=referee_days))
    elif onboarding.referral in _REFERRAL_TEXT:
        notes.append(tr(_REFERRAL_TEXT[onboarding.referral]))
    if onboarding.promo is not None:
        notes.append(tr("start.promo.applied", code=onboarding.promo.code))
    error = onboarding.promo_error
    if isinstance(error, PromoExpiredError):
        notes.append(tr("start.promo.expired"))
    elif isinstance(error, PromoUsedError | PromoExhaustedError):
        notes.append(tr("start.promo.used"))
    elif error is not None:
        notes.append(tr("start.promo.invalid"))
    return notes


def setup(menu: MenuRegistry) -> Router:
    router = Router(name="start")

    @router.message(CommandStart())
    async def start(
        message: Message,
        ctx: BotContext,
        journeys: CustomerJourneys,
        customer: Customer,
        onboarding: Onboarding,
        tr: Translator,
    ) -> None:
        name = message.from_user.first_name if message.from_user else ""
        greeting = "start.welcome" if onboarding.created else "start.welcome_back"
        text, markup = await home_screen(ctx, journeys, customer, tr)
        referee_days = journeys.referral_stats.policy.referee_bonus_days
        parts = [tr(greeting, name=name), *link_notes(tr, onboarding, referee_days), text]
        await message.answer("\n\n".join(parts), reply_markup=markup)

    return router
