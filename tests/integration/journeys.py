"""The customer-journey use cases (issue 11) on top of the service-test shop."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from tests.integration.shop import START, Shop, make_shop
from vpnshop.domain.promo import PromoCode, PromoKind
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.balance_history import GetBalanceHistory
from vpnshop.services.home import GetHome
from vpnshop.services.journeys import CustomerJourneys
from vpnshop.services.my_subscription import GetSubscriptionDetails, RemoveDevice, RevokeLink
from vpnshop.services.onboarding import OnboardCustomer
from vpnshop.services.promos import RedeemPromo
from vpnshop.services.referrals import GetReferralStats
from vpnshop.services.settings import MarkReachable, SetAutoRenew, SetLanguage

POLICY = ReferralPolicy(percent=10, referrer_bonus_days=0, referee_bonus_days=0)


@attrs.define
class Journeys:
    shop: Shop
    onboard: OnboardCustomer
    redeem: RedeemPromo
    home: GetHome
    referral_stats: GetReferralStats
    history: GetBalanceHistory
    details: GetSubscriptionDetails
    remove_device: RemoveDevice
    revoke: RevokeLink
    set_language: SetLanguage
    set_auto_renew: SetAutoRenew
    mark_reachable: MarkReachable

    async def start(self, telegram_id: int, payload: str | None = None) -> int:
        """/start for a Telegram user; their customer id."""
        result = await self.onboard(telegram_id, payload=payload)
        assert result.customer.id is not None
        return result.customer.id

    async def add_promo(self, code: str, kind: PromoKind, value: int, **kw: object) -> None:
        async with self.shop.uow() as uow:
            await uow.promos.add(
                PromoCode(code=code, kind=kind, value=value, created_at=START, **kw)  # type: ignore[arg-type]
            )
            await uow.commit()


async def make_journeys(uow_factory: Callable[[], UnitOfWork]) -> Journeys:
    shop = await make_shop(uow_factory, POLICY)
    built = CustomerJourneys.build(
        shop.deps, shop.panel, register=shop.register, trial=shop.trial.settings, policy=POLICY
    )
    return Journeys(
        shop=shop,
        onboard=built.onboard,
        redeem=built.redeem_promo,
        home=built.home,
        referral_stats=built.referral_stats,
        history=built.balance_history,
        details=built.subscription_details,
        remove_device=built.remove_device,
        revoke=built.revoke_link,
        set_language=built.set_language,
        set_auto_renew=built.set_auto_renew,
        mark_reachable=built.mark_reachable,
    )
