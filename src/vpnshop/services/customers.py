"""Customer use cases: registration (with referral and campaign attribution), and the
check every buying use case starts with."""

from __future__ import annotations

import logging

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.customer import Customer, normalise_language
from vpnshop.domain.errors import (
    CustomerBannedError,
    NotFoundError,
    ReferralError,
)
from vpnshop.domain.referral import Referral, check_referral
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.deps import Deps, record

log = logging.getLogger(__name__)


async def buyable_customer(
    uow: UnitOfWork, customer_id: int, *, refusal: str = "banned customers cannot buy"
) -> Customer:
    """The customer, if they may buy: raises NotFoundError when there is no such customer
    and CustomerBannedError (with *refusal*) when they are banned."""
    customer = await uow.customers.get(customer_id)
    if customer is None:
        raise NotFoundError(f"customer {customer_id}")
    if customer.banned:
        raise CustomerBannedError(refusal)
    return customer


async def referrer_chain_check(uow: UnitOfWork, referrer_id: int, referee_id: int) -> None:
    """Raise ReferralError for self-referral or a cycle (``domain.referral.check_referral``
    decides), reading the stored chain of referrers above *referrer_id* first."""
    chain: dict[int, int | None] = {}
    current: int | None = referrer_id
    while current is not None and current != referee_id and current not in chain:
        chain[current] = await uow.referrals.referrer_of(current)
        current = chain[current]
    check_referral(referrer_id, referee_id, chain.get)


@attrs.frozen
class RegisterCustomer:
    """Find the customer for a Telegram user, or create them.

    A new customer may come with a referrer (by Telegram id) and a campaign tag. A bad
    referral (self, cycle, unknown referrer) is dropped, never fatal: the user still gets
    in. Safe under concurrency: two racing registrations give one customer.
    """

    deps: Deps

    async def __call__(
        self,
        telegram_id: int,
        *,
        language_code: str | None = None,
        username: str | None = None,
        referrer_telegram_id: int | None = None,
        campaign: str | None = None,
    ) -> tuple[Customer, bool]:
        """Returns the customer and whether they were created by this call."""
        now = self.deps.now()
        # Every update of a known customer comes here: look without the write lock first.
        existing = await self.deps.run_read(lambda uow: uow.customers.by_telegram_id(telegram_id))
        if existing is not None:
            return existing, False
        async with self.deps.uow() as uow:
            existing = await uow.customers.by_telegram_id(telegram_id)
            if existing is not None:
                return existing, False
            customer = Customer(
                id=None,
                telegram_id=telegram_id,
                language=normalise_language(language_code),
                username=username,
                campaign=campaign,
                created_at=now,
            )
            customer, created = await uow.customers.get_or_add(customer)
            if not created:  # a concurrent registration won; theirs is the customer
                return customer, False
            if referrer_telegram_id is not None:
                referrer = await uow.customers.by_telegram_id(referrer_telegram_id)
                assert customer.id is not None
                if referrer is not None and referrer.id is not None:
                    try:
                        await referrer_chain_check(uow, referrer.id, customer.id)
                        await uow.referrals.add(Referral(referrer.id, customer.id, now))
                        customer = attrs.evolve(customer, referrer_id=referrer.id)
                        await uow.customers.update(customer)
                    except ReferralError as e:
                        log.info("referral dropped for %s: %s", telegram_id, e)
            await record(
                uow,
                now,
                Actor.customer(telegram_id),
                "customer.register",
                f"customer:{customer.id}",
                campaign=campaign,
            )
            await uow.commit()
            return customer, True
