"""Buy or extend and top-up: callback data (ids and a quote tag only, never a price) and
the keyboards, built from what the handler passes in."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from vpnshop.domain.money import Money
from vpnshop.domain.plan import Plan
from vpnshop.i18n import Translator
from vpnshop.services.buying import Method, Quote, quote_tag
from vpnshop_bot.keyboards.common import back_button


class Buy(CallbackData, prefix="by"):
    """Show the quote for ``plan``, extending subscription ``sub`` (0: a new one)."""

    plan: str
    sub: int


class PayWith(CallbackData, prefix="bw"):
    """Pay the quote with provider ``p`` (or the balance) in ``cur``; ``tag`` names the
    quote the customer saw (see ``quote_tag``)."""

    plan: str
    sub: int
    p: str
    cur: str
    tag: str


class BalanceOk(CallbackData, prefix="bk"):
    """Confirm paying from the balance; ``n`` makes the purchase happen once."""

    plan: str
    sub: int
    cur: str
    tag: str
    n: str


class PayCheck(CallbackData, prefix="pc"):
    """ "I paid": show the state of our payment ``pay``."""

    pay: str


class TopAmount(CallbackData, prefix="ta"):
    """A top-up of ``a`` minor units of the shop's currency: choose how to pay."""

    a: int


class TopPay(CallbackData, prefix="tp"):
    a: int
    p: str


class TopOther(CallbackData, prefix="to"):
    """Type another top-up amount."""


def plans_keyboard(tr: Translator, plans: Sequence[Plan], sub: int) -> InlineKeyboardMarkup:
    rows = [
        [
            InlineKeyboardButton(
                text=p.name(tr.language), callback_data=Buy(plan=p.code, sub=sub).pack()
            )
        ]
        for p in plans
    ]
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [back_button(tr)]])


def method_label(tr: Translator, method: Method) -> str:
    provider = method.provider
    key = f"pay.method.{provider}"
    return tr(
        key if key in _METHOD_KEYS else "pay.method.other",
        amount=str(method.amount),
        name=method.provider,
    )


_METHOD_KEYS = frozenset(
    f"pay.method.{name}"
    for name in ("balance", "stars", "yookassa", "cryptopay", "freekassa", "tribute")
)


def quote_keyboard(tr: Translator, quote: Quote, methods: Sequence[Method]) -> InlineKeyboardMarkup:
    rows = []
    for m in methods:
        data = PayWith(
            plan=quote.plan.code,
            sub=quote.subscription_id,
            p=m.provider,
            cur=m.amount.currency.code,
            tag=quote_tag(quote.plan.code, m.amount, quote.discount_percent),
        )
        rows.append([InlineKeyboardButton(text=method_label(tr, m), callback_data=data.pack())])
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [back_button(tr, "buy")]])


def balance_confirm(tr: Translator, data: PayWith, nonce: str) -> InlineKeyboardMarkup:
    ok = BalanceOk(plan=data.plan, sub=data.sub, cur=data.cur, tag=data.tag, n=nonce)
    back = InlineKeyboardButton(
        text=tr("btn.back"), callback_data=Buy(plan=data.plan, sub=data.sub).pack()
    )
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=tr("btn.pay_confirm"), callback_data=ok.pack())],
            [back],
        ]
    )


def checkout_keyboard(
    tr: Translator, url: str, amount: Money, payment_id: str
) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=tr("btn.pay_url", amount=str(amount)), url=url)],
            [
                InlineKeyboardButton(
                    text=tr("btn.pay_check"), callback_data=PayCheck(pay=payment_id).pack()
                )
            ],
            [back_button(tr)],
        ]
    )


def topup_amounts(tr: Translator, presets: Sequence[Money]) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(text=str(m), callback_data=TopAmount(a=m.minor).pack())
        for m in presets
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    other = InlineKeyboardButton(text=tr("btn.topup_other"), callback_data=TopOther().pack())
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [other], [back_button(tr)]])


def topup_methods(tr: Translator, amount: Money, providers: Sequence[str]) -> InlineKeyboardMarkup:
    rows = [
        [
            InlineKeyboardButton(
                text=method_label(tr, Method(p, amount)),
                callback_data=TopPay(a=amount.minor, p=p).pack(),
            )
        ]
        for p in providers
    ]
    return InlineKeyboardMarkup(inline_keyboard=[*rows, [back_button(tr, "topup")]])
