"""Bot API payment methods, Telegram Stars first: invoices, pre-checkout answers, refunds.

Limits as in the Bot API docs: title 1-32 characters, description 1-255, payload 1-128
bytes, for ``XTR`` exactly one price and an empty provider token, a subscription period
of exactly 30 days and only on ``createInvoiceLink``. Where the docs name no error text
the emulator answers with the Bot API's usual upper-case reason (e.g. ``CHARGE_NOT_FOUND``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import attrs

from vpnshop.testing.telegram.markup import validate_markup
from vpnshop.testing.telegram.methods import bot_message
from vpnshop.testing.telegram.registry import method
from vpnshop.testing.telegram.state import ChatMessage, now_ts
from vpnshop.testing.telegram.wire import Params, bad_request

if TYPE_CHECKING:
    from vpnshop.testing.telegram.server import TelegramEmulator

STARS = "XTR"
SUBSCRIPTION_PERIOD = 2592000
PRE_CHECKOUT_TIMEOUT = 10.0  # seconds the Bot API waits for answerPreCheckoutQuery


@attrs.frozen
class Invoice:
    title: str
    description: str
    payload: str
    currency: str
    total_amount: int
    subscription_period: int | None = None


def _invoice(p: Params, *, link: bool) -> Invoice:
    title = p.string("title") or ""
    if not 1 <= len(title) <= 32:
        raise bad_request("INVOICE_TITLE_INVALID" if title else "title is empty")
    description = p.string("description") or ""
    if not 1 <= len(description) <= 255:
        raise bad_request("INVOICE_DESCRIPTION_INVALID" if description else "description is empty")
    payload = p.string("payload") or ""
    if not 1 <= len(payload.encode("utf-8")) <= 128:
        raise bad_request("INVOICE_PAYLOAD_INVALID" if payload else "payload is empty")
    currency = (p.string("currency") or "").upper()
    if not currency:
        raise bad_request("currency is empty")
    prices = p.json("prices")
    if not isinstance(prices, list) or not prices:
        raise bad_request("prices must be non-empty")
    try:
        amounts = [int(price["amount"]) for price in prices if str(price["label"])]
    except (KeyError, TypeError, ValueError):
        raise bad_request("can't parse prices JSON object") from None
    if currency == STARS:
        if len(prices) != 1:
            raise bad_request("STARS_INVOICE_INVALID")
        if p.string("provider_token"):
            raise bad_request("PROVIDER_TOKEN_INVALID")
    total = sum(amounts)
    if total <= 0 or any(a <= 0 for a in amounts):
        raise bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
    period = p.integer("subscription_period")
    if period is not None:
        if not link:
            raise bad_request("subscription_period is not supported by sendInvoice")
        if currency != STARS or period != SUBSCRIPTION_PERIOD or total > 10000:
            raise bad_request("SUBSCRIPTION_PERIOD_INVALID")
    return Invoice(title, description, payload, currency, total, period)


@method("sendInvoice", sending=True)
async def send_invoice(emu: TelegramEmulator, p: Params) -> Any:
    chat = emu.resolve_chat(p.chat_id())
    invoice = _invoice(p, link=False)
    markup = validate_markup(p.json("reply_markup"))
    if markup is not None:
        first = (markup.get("inline_keyboard") or [[{}]])[0][0]
        if not first.get("pay"):
            raise bad_request("REPLY_MARKUP_BUY_EMPTY")
    return bot_message(
        emu,
        chat,
        invoice={
            "title": invoice.title,
            "description": invoice.description,
            "start_parameter": p.string("start_parameter") or "",
            "currency": invoice.currency,
            "total_amount": invoice.total_amount,
        },
        invoice_payload=invoice.payload,
        reply_markup=markup,
    )


@method("createInvoiceLink")
async def create_invoice_link(emu: TelegramEmulator, p: Params) -> Any:
    invoice = _invoice(p, link=True)
    slug = emu.new_id("inv")
    emu.invoice_links[slug] = invoice
    return f"https://t.me/${slug}"


@method("answerPreCheckoutQuery")
async def answer_pre_checkout_query(emu: TelegramEmulator, p: Params) -> Any:
    query = emu.pre_checkouts.get(p.required_str("pre_checkout_query_id"))
    if query is None or query.answered:
        raise bad_request("QUERY_ID_INVALID")
    if asyncio.get_running_loop().time() - query.created > emu.pre_checkout_timeout:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    ok = p.flag("ok")
    error_message = p.string("error_message")
    if not ok and not error_message:
        raise bad_request("error_message is empty")
    query.answered, query.ok, query.error_message = True, ok, error_message
    query.done.set()
    return True


@method("refundStarPayment")
async def refund_star_payment(emu: TelegramEmulator, p: Params) -> Any:
    user_id = p.required_int("user_id")
    payment = emu.star_payments.get(p.required_str("telegram_payment_charge_id"))
    if payment is None:
        raise bad_request("CHARGE_NOT_FOUND")
    if payment.user_id != user_id:
        raise bad_request("USER_ID_INVALID")
    if payment.refunded:
        raise bad_request("CHARGE_ALREADY_REFUNDED")
    payment.refunded = True
    account = emu.accounts.get(user_id)
    if emu.emit_refund_updates and account is not None:
        chat = emu.private_chat(account)
        message = ChatMessage(
            message_id=chat.new_message_id(),
            chat_id=chat.id,
            from_bot=False,
            date=now_ts(),
            sender=account.to_json(),
            extra={
                "refunded_payment": {
                    "currency": payment.currency,
                    "total_amount": payment.total_amount,
                    "invoice_payload": payment.payload,
                    "telegram_payment_charge_id": payment.telegram_payment_charge_id,
                }
            },
        )
        chat.add(message)
        emu.feed.push({"message": emu.message_json(chat, message.message_id)})
    return True


@method("editUserStarSubscription")
async def edit_user_star_subscription(emu: TelegramEmulator, p: Params) -> Any:
    payment = emu.star_payments.get(p.required_str("telegram_payment_charge_id"))
    if payment is None or payment.user_id != p.required_int("user_id"):
        raise bad_request("CHARGE_NOT_FOUND")
    payment.subscription_canceled = p.flag("is_canceled")
    return True
