"""A customer's own settings: language, auto-renewal, and whether Telegram reaches them.

Each is idempotent: setting what is stored changes nothing and is not audited again.
"""

from __future__ import annotations

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.customer import LANGUAGES, Customer
from vpnshop.domain.errors import NotFoundError, ValidationError
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.deps import Deps, record
from vpnshop.services.my_subscription import owned_subscription


async def _customer(uow: UnitOfWork, customer_id: int) -> Customer:
    customer = await uow.customers.get(customer_id)
    if customer is None:
        raise NotFoundError(f"customer {customer_id}")
    return customer


@attrs.frozen
class SetLanguage:
    """Switch the bot's language for a customer: one of ``domain.customer.LANGUAGES``."""

    deps: Deps

    async def __call__(self, customer_id: int, language: str) -> bool:
        """True when the language changed."""
        if language not in LANGUAGES:
            raise ValidationError(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
        async with self.deps.uow() as uow:
            customer = await _customer(uow, customer_id)
            changed = await uow.customers.set_language(customer_id, language)
            if changed:
                await record(
                    uow,
                    self.deps.now(),
                    Actor.customer(customer.telegram_id),
                    "customer.language",
                    f"customer:{customer_id}",
                    language=language,
                )
                await uow.commit()
        return changed


@attrs.frozen
class SetAutoRenew:
    """Switch auto-renewal of one of the customer's subscriptions on or off (the renewal
    itself runs in the scheduler)."""

    deps: Deps

    async def __call__(self, customer_id: int, subscription_id: int, on: bool) -> bool:
        """True when the flag changed. Raises SubscriptionNotFoundError for a subscription
        that is not this customer's."""
        async with self.deps.uow() as uow:
            customer = await _customer(uow, customer_id)
            await owned_subscription(uow, customer_id, subscription_id)
            changed = await uow.subscriptions.set_auto_renew(subscription_id, on)
            if changed:
                await record(
                    uow,
                    self.deps.now(),
                    Actor.customer(customer.telegram_id),
                    "subscription.auto_renew",
                    f"subscription:{subscription_id}",
                    on=on,
                )
                await uow.commit()
        return changed


@attrs.frozen
class MarkReachable:
    """Record whether Telegram delivers to the customer: unreachable when they blocked the
    bot (a 403, a ``my_chat_member`` kick), reachable again when they unblock it.
    Notifications skip unreachable customers."""

    deps: Deps

    async def __call__(
        self, customer_id: int, reachable: bool, *, actor: Actor | None = None
    ) -> bool:
        """True when the flag changed."""
        async with self.deps.uow() as uow:
            await _customer(uow, customer_id)
            changed = await uow.customers.set_unreachable(customer_id, not reachable)
            if changed:
                await record(
                    uow,
                    self.deps.now(),
                    actor or Actor.system("telegram"),
                    "customer.reachable" if reachable else "customer.unreachable",
                    f"customer:{customer_id}",
                )
                await uow.commit()
        return changed
