"""The referral programme as a customer sees it: their code, referees and earnings."""

from __future__ import annotations

import attrs

from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import ConflictError, NotFoundError
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import Money
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.deps import Deps

REFERRAL_CODE_BYTES = 6  # 8 URL-safe characters: ref_<code> stays far below 64
_CODE_ATTEMPTS = 5


async def ensure_referral_code(uow: UnitOfWork, deps: Deps, customer: Customer) -> str:
    """The customer's own referral code, given once (in the caller's transaction): a
    random token, never the Telegram id, so a shared link does not reveal who shared it."""
    if customer.referral_code is not None:
        return customer.referral_code
    assert customer.id is not None
    for _ in range(_CODE_ATTEMPTS):
        try:
            code = await uow.customers.set_referral_code(
                customer.id, deps.ids.token(REFERRAL_CODE_BYTES)
            )
        except ConflictError:  # another customer drew the same token: draw again
            continue
        if code is None:
            raise NotFoundError(f"customer {customer.id}")
        return code
    raise ConflictError(f"no free referral code for customer {customer.id}")


@attrs.frozen
class ReferralStats:
    """``earnings`` are the sums of the customer's referral ledger entries per currency."""

    code: str
    referees: int
    earnings: tuple[Money, ...]
    policy: ReferralPolicy


@attrs.frozen
class GetReferralStats:
    """A customer's referral code (given on first ask), how many customers they brought,
    what it earned them, and the policy that pays them (for the bot to put in words)."""

    deps: Deps
    policy: ReferralPolicy = attrs.field(factory=ReferralPolicy)

    async def __call__(self, customer_id: int) -> ReferralStats:
        async with self.deps.uow() as uow:
            customer = await uow.customers.get(customer_id)
            if customer is None:
                raise NotFoundError(f"customer {customer_id}")
            code = await ensure_referral_code(uow, self.deps, customer)
            referees = await uow.referrals.referees_of(customer_id)
            earnings = await uow.ledger.totals(customer_id, EntryKind.REFERRAL_REWARD)
            if code != customer.referral_code:
                await uow.commit()
        return ReferralStats(code, len(referees), tuple(earnings), self.policy)
