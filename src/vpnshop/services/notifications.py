"""The outbox's NOTIFY_CUSTOMER and NOTIFY_ADMINS jobs: gather what the message says
(from the job and the store), render it in the reader's language (``render``, given by
the composition root: ``vpnshop.i18n.notices``) and send it through the Notifier port.

A customer Telegram refuses (blocked, deactivated) is marked unreachable and the job ends;
an unreachable or deleted customer is skipped. A notice that carries the link waits (the
job is retried) until the panel user exists."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from vpnshop.domain.order import OrderKind
from vpnshop.domain.outbox import OutboxJob
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.notifier import Message, Notifier, RecipientUnreachableError
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.deps import Deps
from vpnshop.services.links import LinkNotReadyError
from vpnshop.services.outbox import PermanentJobError
from vpnshop.services.settings import MarkReachable
from vpnshop.services.subscriptions import current_subscription

log = logging.getLogger(__name__)


@attrs.frozen
class Notice:
    """What to say: a message id's suffix (``notice.<key>`` in the catalogs), the
    reader's language, and the values formatted in (escaped by the renderer)."""

    key: str
    language: str
    values: Mapping[str, Any] = attrs.field(factory=dict)


Render = Callable[[Notice], Message]


@attrs.frozen
class SendNotifications:
    deps: Deps
    notifier: Notifier
    render: Render
    mark_reachable: MarkReachable
    admin_ids: tuple[int, ...] = ()
    admin_language: str = "en"
    links_expected: bool = True  # False without a panel: purchase notices carry no link

    async def customer(self, job: OutboxJob) -> None:
        payload: dict[str, Any] = dict(job.payload)
        customer_id = int(payload.pop("customer_id"))
        template = str(payload.pop("template"))
        async with self.deps.uow() as uow:
            customer = await uow.customers.get(customer_id)
            if customer is None or customer.is_deleted or customer.unreachable:
                log.info("notice %s to customer %s skipped: not reachable", template, customer_id)
                return
            key, values = await self._gather(uow, customer_id, template, payload)
        message = self._render(Notice(key, customer.language, values))
        try:
            await self.notifier.send(customer.telegram_id, message)
        except RecipientUnreachableError as e:
            log.info("customer %s unreachable (%s): marked, notice dropped", customer_id, e)
            await self.mark_reachable(customer_id, False)

    async def admins(self, job: OutboxJob) -> None:
        """Each admin gets the notice in the language they chose in the bot (an admin who
        never used it: ``admin_language``)."""
        payload: dict[str, Any] = dict(job.payload)
        template = str(payload.pop("template"))
        async with self.deps.uow() as uow:
            languages = {a: await self._language_of(uow, a) for a in self.admin_ids}
        rendered: dict[str, Message] = {}
        for admin in self.admin_ids:
            language = languages[admin]
            if language not in rendered:
                notice = Notice(f"admin.{template}", language, payload)
                rendered[language] = self._render(notice)
            message = rendered[language]
            try:
                await self.notifier.send(admin, message)
            except RecipientUnreachableError as e:
                log.warning("admin %s does not receive the bot's messages: %s", admin, e)

    async def _language_of(self, uow: UnitOfWork, telegram_id: int) -> str:
        customer = await uow.customers.by_telegram_id(telegram_id)
        return customer.language if customer is not None else self.admin_language

    def _render(self, notice: Notice) -> Message:
        try:
            return self.render(notice)
        except KeyError:
            raise PermanentJobError(f"no text for notice {notice.key!r}") from None

    async def _gather(
        self, uow: UnitOfWork, customer_id: int, template: str, payload: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The message key and its values (a plan purchase names the expiry and link)."""
        if template == "payment_received":
            payment = await uow.payments.get(str(payload["payment_id"]))
            order = await uow.orders.get(payment.order_id) if payment else None
            if payment is None or order is None:
                raise PermanentJobError(f"payment {payload['payment_id']} not found")
            if order.kind is not OrderKind.PLAN:
                return "paid_topup", {"amount": str(payment.amount)}
            sub = await current_subscription(uow, customer_id)
            return "paid_plan", {"amount": str(payment.amount), **self._link(sub)}
        if template == "auto_renewed":
            sub = await uow.subscriptions.get(int(payload["subscription_id"]))
            if sub is None:
                raise PermanentJobError(f"subscription {payload['subscription_id']} not found")
            return template, {**payload, "until": sub.expires_at}
        if template == "subscription_ready":
            sub = await uow.subscriptions.get(int(payload["subscription_id"]))
            return "subscription_ready", self._link(sub, required=True)
        if template == "refund":
            return ("refund_balance" if payload.get("to_balance") else "refund"), payload
        return template, payload

    def _link(self, sub: Subscription | None, *, required: bool = False) -> dict[str, Any]:
        if sub is None:
            raise PermanentJobError("the customer has no subscription")
        if sub.subscription_url is None and (required or self.links_expected):
            raise LinkNotReadyError(f"subscription {sub.id}: the panel user is not made yet")
        return {"until": sub.expires_at, "link": sub.subscription_url or ""}
