"""Top-up of the balance: preset amounts or a typed one (an FSM state; a non-number, too
small and too large each get their own message), then the providers that take it."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from vpnshop.bootstrap import App
from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import NotFoundError
from vpnshop.domain.money import Money
from vpnshop.i18n import Translator
from vpnshop.ports.payments import PaymentProviderError
from vpnshop.services.buying import StaleQuoteError
from vpnshop.services.topup import TopupAmountError
from vpnshop_bot.callbacks import Nav
from vpnshop_bot.features.buy import money_of, refused
from vpnshop_bot.keyboards.buy import (
    TopAmount,
    TopOther,
    TopPay,
    checkout_keyboard,
    topup_amounts,
    topup_methods,
)
from vpnshop_bot.keyboards.common import back_only
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.screens import show


class TopupForm(StatesGroup):
    amount = State()


def amount_problem(tr: Translator, error: TopupAmountError) -> str:
    problem = error.problem.value
    return tr(f"topup.bad.{problem}", limit=str(error.limit or ""))


def setup(menu: MenuRegistry) -> Router:
    menu.add(MenuEntry("topup", "btn.topup", Nav(to="topup").pack(), order=31))
    router = Router(name="topup")

    @router.callback_query(Nav.filter(F.to == "topup"))
    async def amounts(query: CallbackQuery, app: App, tr: Translator, state: FSMContext) -> None:
        await query.answer()
        await state.clear()
        topup = money_of(app).topup
        await show(query, tr("topup.choose"), topup_amounts(tr, topup.presets()))

    @router.callback_query(TopOther.filter())
    async def ask(query: CallbackQuery, app: App, tr: Translator, state: FSMContext) -> None:
        await query.answer()
        limits = money_of(app).topup.limits
        await state.set_state(TopupForm.amount)
        low, high = Money(limits.minimum, limits.currency), Money(limits.maximum, limits.currency)
        await show(query, tr("topup.type", low=str(low), high=str(high)), back_only(tr, "topup"))

    @router.message(TopupForm.amount, F.text)
    async def typed(message: Message, app: App, tr: Translator, state: FSMContext) -> None:
        topup = money_of(app).topup
        try:
            amount = topup.parse(message.text or "")
        except TopupAmountError as e:
            await message.answer(amount_problem(tr, e), reply_markup=back_only(tr, "topup"))
            return
        await state.clear()
        await message.answer(
            tr("topup.methods", amount=str(amount)),
            reply_markup=topup_methods(tr, amount, topup.methods(amount)),
        )

    @router.callback_query(TopAmount.filter())
    async def methods(
        query: CallbackQuery, callback_data: TopAmount, app: App, tr: Translator
    ) -> None:
        await query.answer()
        topup = money_of(app).topup
        amount = Money(callback_data.a, topup.limits.currency) if callback_data.a > 0 else None
        if amount is None or callback_data.a not in topup.limits.presets:
            await show(query, tr("buy.stale.price"), back_only(tr, "topup"))
            return
        await show(
            query,
            tr("topup.methods", amount=str(amount)),
            topup_methods(tr, amount, topup.methods(amount)),
        )

    @router.callback_query(TopPay.filter())
    async def pay(
        query: CallbackQuery, callback_data: TopPay, app: App, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        try:
            link = await money_of(app).topup.start(customer.id, callback_data.p, callback_data.a)
        except TopupAmountError as e:
            await show(query, amount_problem(tr, e), back_only(tr, "topup"))
            return
        except (StaleQuoteError, PaymentProviderError, NotFoundError) as e:
            await refused(query, tr, e)
            return
        if link.url is None:
            await show(query, tr("buy.invoice_sent", amount=str(link.order.amount)), back_only(tr))
            return
        markup = checkout_keyboard(tr, link.url, link.order.amount, link.payment_id)
        await show(query, tr("buy.checkout", amount=str(link.order.amount)), markup)

    return router
