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
from vpnshop.services.my_subscription import GetSubscriptionDetails, RemoveDevice, RevokeLink
from vpnshop.services.onboarding import OnboardCustomer
from vpnshop.services.promos import RedeemPromo
from vpnshop.services.referrals import GetReferralStats
from vpnshop.services.settings import MarkReachable, SetAutoRenew, SetLanguage
from vpnshop.services.subscriptions import TrialSettings

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
    deps = shop.deps
    redeem = RedeemPromo(deps)
    return Journeys(
        shop=shop,
        onboard=OnboardCustomer(deps, shop.register, redeem),
        redeem=redeem,
        home=GetHome(deps, TrialSettings(days=3)),
        referral_stats=GetReferralStats(deps, POLICY),
        history=GetBalanceHistory(deps),
        details=GetSubscriptionDetails(deps, shop.panel),
        remove_device=RemoveDevice(deps, shop.panel),
        revoke=RevokeLink(deps, shop.panel),
        set_language=SetLanguage(deps),
        set_auto_renew=SetAutoRenew(deps),
        mark_reachable=MarkReachable(deps),
    )
