"""Buy or extend: plans -> quote (priced on the server) -> methods -> a checkout URL, a
Stars invoice, or a confirmation to pay from the balance. The outbox then sends
"paid, active until ..." with the link. Every button names the subscription it acts on;
the server checks it and the quote's tag before anything is stored."""

from __future__ import annotations

import logging
import secrets

from aiogram import F, Router
from aiogram.types import CallbackQuery

from vpnshop.bootstrap import App
from vpnshop.domain.actor import Actor
from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import InsufficientFundsError, NotFoundError
from vpnshop.domain.payment import PaymentStatus
from vpnshop.i18n import Translator
from vpnshop.ports.payments import AmountOutOfRangeError, PaymentProviderError
from vpnshop.services.balance_payments import BALANCE
from vpnshop.services.buying import (
    AlreadyPaidError,
    ForeignObjectError,
    Quote,
    StaleQuoteError,
    methods_by_provider,
)
from vpnshop.services.money_journeys import MoneyJourneys
from vpnshop_bot.callbacks import Nav
from vpnshop_bot.keyboards.buy import (
    BalanceOk,
    Buy,
    PayCheck,
    PayWith,
    balance_confirm,
    checkout_keyboard,
    plans_keyboard,
    quote_keyboard,
)
from vpnshop_bot.keyboards.common import back_only
from vpnshop_bot.menu import MenuEntry, MenuRegistry
from vpnshop_bot.screens import show

log = logging.getLogger(__name__)


def money_of(app: App) -> MoneyJourneys:
    assert app.money is not None
    return app.money


def quote_text(tr: Translator, quote: Quote) -> str:
    lines = [
        tr("buy.quote", name=quote.plan.name(tr.language), days=quote.plan.duration_days),
        tr("buy.price", amount=" / ".join(str(p) for p in quote.prices)),
    ]
    if quote.discount_percent:
        lines.append(tr("buy.discount", percent=quote.discount_percent))
    lines.append(tr("buy.choose_method") if quote.methods else tr("buy.no_methods"))
    return "\n".join(lines)


async def refused(query: CallbackQuery, tr: Translator, error: Exception) -> None:
    """The clear message for a stale, forged or foreign button; nothing was changed."""
    if isinstance(error, StaleQuoteError):
        reason = error.reason
        key = f"buy.stale.{reason}"
    elif isinstance(error, ForeignObjectError | NotFoundError):
        key = "buy.foreign"
    elif isinstance(error, AlreadyPaidError):
        key = "buy.already_paid"
    elif isinstance(error, InsufficientFundsError):
        key = "buy.no_funds"
    elif isinstance(error, AmountOutOfRangeError):
        key = "buy.stale.method"
    else:
        key = "pay.unavailable"
    log.info("buy refused for user %s: %s", query.from_user.id, error)
    await show(query, tr(key), back_only(tr, "buy"))


def setup(menu: MenuRegistry) -> Router:
    menu.add(MenuEntry("buy", "btn.buy", Nav(to="buy").pack(), order=10))
    router = Router(name="buy")

    @router.callback_query(Nav.filter(F.to == "buy"))
    async def plans(query: CallbackQuery, app: App, customer: Customer, tr: Translator) -> None:
        await query.answer()
        assert customer.id is not None
        money = money_of(app)
        home = await app.journeys.home(customer.id) if app.journeys else None
        sub = home.subscription.id if home and home.subscription and home.subscription.id else 0
        offers = await money.buy.plans()
        lines = [tr("buy.title")]
        curs = {c.code for c in money.buy.currencies()}
        for p in offers:
            prices = " / ".join(str(m) for c, m in sorted(p.prices.items()) if c in curs)
            lines.append(tr("buy.plan_line", name=p.name(tr.language), prices=prices or "—"))
        await show(query, "\n".join(lines), plans_keyboard(tr, offers, sub))

    @router.callback_query(Buy.filter())
    async def quote(
        query: CallbackQuery, callback_data: Buy, app: App, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        try:
            q = await money_of(app).buy.quote(customer.id, callback_data.plan, callback_data.sub)
        except (StaleQuoteError, ForeignObjectError) as e:
            await refused(query, tr, e)
            return
        methods = methods_by_provider(q.methods)
        await show(query, quote_text(tr, q), quote_keyboard(tr, q, methods))

    @router.callback_query(PayWith.filter(F.p == BALANCE))
    async def confirm_balance(
        query: CallbackQuery, callback_data: PayWith, app: App, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        d = callback_data
        try:
            q = await money_of(app).buy.quote(customer.id, d.plan, d.sub)
        except (StaleQuoteError, ForeignObjectError) as e:
            await refused(query, tr, e)
            return
        method = q.method(BALANCE, d.cur)
        if method is None:
            await refused(query, tr, InsufficientFundsError("the balance does not cover it"))
            return
        text = tr("buy.balance_confirm", name=q.plan.name(tr.language), amount=str(method.amount))
        await show(query, text, balance_confirm(tr, d, secrets.token_hex(4)))

    @router.callback_query(BalanceOk.filter())
    async def pay_balance(
        query: CallbackQuery, callback_data: BalanceOk, app: App, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        d = callback_data
        try:
            payment = await money_of(app).pay.with_balance(
                customer.id,
                plan_code=d.plan,
                subscription_id=d.sub,
                cur=d.cur,
                tag=d.tag,
                nonce=d.n,
                actor=Actor.customer(customer.telegram_id),
            )
        except AlreadyPaidError as e:
            log.info("repeated balance confirmation by user %s: %s", query.from_user.id, e)
            return  # the first tap's answer stands; this one changes nothing
        except (StaleQuoteError, ForeignObjectError, InsufficientFundsError, NotFoundError) as e:
            await refused(query, tr, e)
            return
        await show(query, tr("buy.paid_balance", amount=str(payment.amount)), back_only(tr))

    @router.callback_query(PayWith.filter(F.p != BALANCE))
    async def pay_provider(
        query: CallbackQuery, callback_data: PayWith, app: App, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        d = callback_data
        try:
            link = await money_of(app).pay.with_provider(
                customer.id, plan_code=d.plan, subscription_id=d.sub, provider=d.p, tag=d.tag
            )
        except (StaleQuoteError, ForeignObjectError, PaymentProviderError, NotFoundError) as e:
            await refused(query, tr, e)
            return
        if link.url is None:  # the invoice is in the chat (Telegram Stars)
            await show(query, tr("buy.invoice_sent", amount=str(link.order.amount)), back_only(tr))
            return
        markup = checkout_keyboard(tr, link.url, link.order.amount, link.payment_id)
        await show(query, tr("buy.checkout", amount=str(link.order.amount)), markup)

    @router.callback_query(PayCheck.filter())
    async def check(
        query: CallbackQuery, callback_data: PayCheck, app: App, customer: Customer, tr: Translator
    ) -> None:
        await query.answer()
        assert customer.id is not None
        try:
            payment = await money_of(app).own_payment(customer.id, callback_data.pay)
        except (ForeignObjectError, NotFoundError) as e:
            await refused(query, tr, e)
            return
        key = {
            PaymentStatus.SUCCEEDED: "pay.state.paid",
            PaymentStatus.CANCELED: "pay.state.closed",
            PaymentStatus.EXPIRED: "pay.state.closed",
            PaymentStatus.REFUNDED: "pay.state.closed",
        }.get(payment.status, "pay.state.waiting")
        await show(query, tr(key, amount=str(payment.amount)), back_only(tr))

    return router
