"""Telegram Stars updates: the pre-checkout query checked against the stored payment and
answered at once (a refusal says why, in the customer's language); successful_payment
and refunded_payment applied through the core, exactly once per charge."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.types import Message, PreCheckoutQuery

from vpnshop.adapters.payments.stars import PROVIDER, payment_ref
from vpnshop.bootstrap import App
from vpnshop.domain.errors import AmountMismatchError
from vpnshop.i18n import Translator
from vpnshop.ports.payments import WebhookMalformedError
from vpnshop.services.outcome import Outcome
from vpnshop_bot.features.buy import money_of
from vpnshop_bot.menu import MenuRegistry

log = logging.getLogger(__name__)


def setup(menu: MenuRegistry) -> Router:
    router = Router(name="stars")

    @router.pre_checkout_query()
    async def pre_checkout(query: PreCheckoutQuery, app: App, tr: Translator) -> None:
        refusal = await money_of(app).check_pre_checkout(
            payment_ref(query.invoice_payload),
            provider=PROVIDER,
            currency_code=query.currency,
            total=query.total_amount,
            telegram_id=query.from_user.id,
        )
        if refusal is None:
            await query.answer(ok=True)
            return
        log.warning(
            "stars pre-checkout %s by user %s refused: %s", query.id, query.from_user.id, refusal
        )
        reason = refusal.value
        await query.answer(ok=False, error_message=tr(f"stars.refused.{reason}"))

    @router.message(F.successful_payment | F.refunded_payment)
    async def paid(message: Message, app: App, tr: Translator) -> None:
        update = message.model_dump(mode="json", exclude_none=True)
        try:
            outcome = await money_of(app).apply_payment_update(PROVIDER, update)
        except (AmountMismatchError, WebhookMalformedError) as e:
            log.error("stars payment message %s not credited: %s", message.message_id, e)
            return
        log.info("stars payment message %s: %s", message.message_id, outcome.value)
        if outcome is Outcome.CONFIRMED and message.successful_payment is not None:
            await message.answer(tr("stars.received"))

    return router
