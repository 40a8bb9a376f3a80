"""``/start``: register the Telegram user, then act on the deep link they came by."""

from __future__ import annotations

import enum
import logging

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.customer import Customer
from vpnshop.domain.deeplink import LinkKind, StartLink, parse_start_payload
from vpnshop.domain.errors import PromoError, ReferralError
from vpnshop.domain.payment import PaymentStatus
from vpnshop.domain.referral import Referral
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.customers import RegisterCustomer, referrer_chain_check
from vpnshop.services.deps import Deps, record
from vpnshop.services.promos import PromoApplied, RedeemPromo
from vpnshop.services.referrals import ensure_referral_code

log = logging.getLogger(__name__)

_PAID = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED})
_PAYMENTS_LOOKED_AT = 100  # a customer with a success older than 100 attempts has paid anyway


class ReferralOutcome(enum.StrEnum):
    BOUND = "bound"  # the link's owner is now the customer's referrer
    KEPT = "kept"  # the customer already has a referrer; it never changes
    TOO_LATE = "too_late"  # the customer has paid before: this link did not bring them
    REFUSED = "refused"  # self-referral or a cycle
    UNKNOWN = "unknown"  # no such code (or its owner is banned or deleted)


@attrs.frozen
class Onboarding:
    """What ``/start`` did: the customer (with their referral code), whether this call
    created them, and the outcome of the link, if any."""

    customer: Customer
    created: bool
    link: StartLink | None = None
    referral: ReferralOutcome | None = None
    campaign_stored: bool = False
    promo: PromoApplied | None = None
    promo_error: PromoError | None = None


@attrs.frozen
class OnboardCustomer:
    """Register (through RegisterCustomer, whoever registered first) and apply the link:

    * ``ref_<code>``: bind the code's owner as referrer, only while the customer has no
      referrer and has never paid; self-referral and cycles refused (``domain.referral``).
      The referrals table's key on the referee decides between racing links.
    * ``promo_<code>``: redeem it (RedeemPromo); a refusal is returned, not raised, so
      the customer still gets the menu and is told why.
    * any other valid token: the campaign tag, stored only if the customer has none.

    A malformed payload is ignored. Every call also makes sure the customer has their own
    referral code.
    """

    deps: Deps
    register: RegisterCustomer
    redeem: RedeemPromo

    async def __call__(
        self,
        telegram_id: int,
        *,
        payload: str | None = None,
        language_code: str | None = None,
        username: str | None = None,
    ) -> Onboarding:
        customer, created = await self.register(
            telegram_id, language_code=language_code, username=username
        )
        link = parse_start_payload(payload)
        if link is None and customer.referral_code is not None:
            return Onboarding(customer, created)  # nothing to write: no transaction
        result = await self._attribute(customer, created, link)
        if link is not None and link.kind is LinkKind.PROMO:
            assert customer.id is not None
            try:
                result = attrs.evolve(result, promo=await self.redeem(customer.id, link.value))
            except PromoError as e:
                result = attrs.evolve(result, promo_error=e)
        return result

    async def _attribute(
        self, customer: Customer, created: bool, link: StartLink | None
    ) -> Onboarding:
        assert customer.id is not None
        now = self.deps.now()
        async with self.deps.uow() as uow:
            current = await uow.customers.get(customer.id) or customer
            await ensure_referral_code(uow, self.deps, current)
            referral, campaign = None, False
            if link is not None and link.kind is LinkKind.REFERRAL:
                referral = await self._bind(uow, current, link.value)
            elif link is not None and link.kind is LinkKind.CAMPAIGN:
                campaign = await uow.customers.set_campaign(customer.id, link.value)
            if referral is ReferralOutcome.BOUND or campaign:
                await record(
                    uow,
                    now,
                    Actor.customer(customer.telegram_id),
                    "customer.attribute",
                    f"customer:{customer.id}",
                    link=f"{link.kind.value}:{link.value}" if link else None,
                )
            stored = await uow.customers.get(customer.id)
            await uow.commit()
        assert stored is not None
        return Onboarding(stored, created, link, referral, campaign)

    async def _bind(self, uow: UnitOfWork, customer: Customer, code: str) -> ReferralOutcome:
        assert customer.id is not None
        referrer = await uow.customers.by_referral_code(code)
        if referrer is None or referrer.id is None or referrer.banned or referrer.is_deleted:
            return ReferralOutcome.UNKNOWN
        if customer.referrer_id is not None:
            return ReferralOutcome.KEPT
        if referrer.id == customer.id:
            return ReferralOutcome.REFUSED
        payments = await uow.payments.recent(_PAYMENTS_LOOKED_AT, customer_id=customer.id)
        if any(p.status in _PAID for p in payments):
            return ReferralOutcome.TOO_LATE
        for cid in sorted((customer.id, referrer.id)):  # two opposite links cannot both pass
            await uow.customers.lock(cid)
        try:
            await referrer_chain_check(uow, referrer.id, customer.id)
        except ReferralError as e:
            log.info("referral refused for customer %s: %s", customer.id, e)
            return ReferralOutcome.REFUSED
        if not await uow.referrals.add(Referral(referrer.id, customer.id, self.deps.now())):
            return ReferralOutcome.KEPT  # a concurrent /start bound another one first
        await uow.customers.set_referrer(customer.id, referrer.id)
        return ReferralOutcome.BOUND
