"""A promo code typed in: the button asks for it (an FSM state), the next text is the
code. Each kind says what it did; each refusal has its own message, and the customer
may type another code until they go back."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import (
    PromoError,
    PromoExhaustedError,
    PromoExpiredError,
    PromoNotApplicableError,
    PromoUsedError,
    ValidationError,
)
from vpnshop.domain.promo import PromoKind
from vpnshop.i18n import Translator
from vpnshop.i18n.formats import date
from vpnshop.services.journeys import CustomerJourneys
from vpnshop.services.promos import PromoApplied
from vpnshop_bot.callbacks import Nav
from vpnshop_bot.context import BotContext
from vpnshop_bot.features.home import home_screen
from vpnshop_bot.keyboards.common import back_only
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.screens import show

MAX_CODE = 64  # longer text is not a code; the use case is not asked


class PromoInput(StatesGroup):
    code = State()


def applied_text(tr: Translator, applied: PromoApplied) -> str:
    code = applied.code
    if applied.kind is PromoKind.BALANCE:
        return tr("promo.ok.balance", code=code, amount=applied.credited)
    if applied.kind is PromoKind.DISCOUNT:
        return tr("promo.ok.discount", code=code, percent=applied.discount_percent)
    assert applied.subscription is not None
    until = date(tr.language, applied.subscription.expires_at)
    kind = applied.kind.value
    return tr(f"promo.ok.{kind}", code=code, until=until)


def refusal_text(tr: Translator, error: PromoError | ValidationError) -> str:
    if isinstance(error, PromoExpiredError):
        return tr("promo.err.expired")
    if isinstance(error, PromoUsedError):
        return tr("promo.err.used")
    if isinstance(error, PromoExhaustedError):
        return tr("promo.err.exhausted")
    if isinstance(error, PromoNotApplicableError):
        if error.reason == "trial_not_started":
            return tr("promo.err.no_trial")
        if error.reason == "not_on_trial":
            return tr("promo.err.not_on_trial")
        return tr("promo.err.not_applicable")
    return tr("promo.err.invalid")


def setup(menu: MenuRegistry) -> Router:
    menu.add(MenuEntry("promo", "btn.promo", Nav(to="promo").pack(), order=51))
    router = Router(name="promo")

    @router.callback_query(Nav.filter(F.to == "promo"))
    async def ask(query: CallbackQuery, state: FSMContext, tr: Translator) -> None:
        await query.answer()
        await state.set_state(PromoInput.code)
        await show(query, tr("promo.ask"), back_only(tr, "promo_x"))

    @router.callback_query(Nav.filter(F.to == "promo_x"))
    async def cancel(
        query: CallbackQuery,
        state: FSMContext,
        ctx: BotContext,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        await query.answer()
        await state.clear()
        await show(query, *await home_screen(ctx, journeys, customer, tr))

    @router.message(StateFilter(PromoInput.code), F.text, ~F.text.startswith("/"))
    async def redeem(
        message: Message,
        state: FSMContext,
        journeys: CustomerJourneys,
        customer: Customer,
        tr: Translator,
    ) -> None:
        assert customer.id is not None
        assert message.text is not None
        code = message.text.strip()
        try:
            if len(code) > MAX_CODE:
                raise ValidationError("a promo code is at most 64 characters")
            applied = await journeys.redeem_promo(customer.id, code)
        except (PromoError, ValidationError) as e:
            await show(message, refusal_text(tr, e), back_only(tr, "promo_x"))
            return
        await state.clear()
        await show(message, applied_text(tr, applied), back_only(tr))

    return router
