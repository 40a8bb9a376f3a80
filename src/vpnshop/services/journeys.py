"""The use cases behind the bot's customer journeys, built together from what the
composition root already has (one place, so the bot shell takes one bundle)."""

from __future__ import annotations

import attrs

from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.panel import VpnPanel
from vpnshop.services.balance_history import GetBalanceHistory
from vpnshop.services.customers import RegisterCustomer
from vpnshop.services.deps import Deps
from vpnshop.services.home import GetHome
from vpnshop.services.my_subscription import GetSubscriptionDetails, RemoveDevice, RevokeLink
from vpnshop.services.onboarding import OnboardCustomer
from vpnshop.services.promos import RedeemPromo
from vpnshop.services.referrals import GetReferralStats
from vpnshop.services.settings import MarkReachable, SetAutoRenew, SetLanguage
from vpnshop.services.subscriptions import TrialSettings


@attrs.frozen
class CustomerJourneys:
    onboard: OnboardCustomer
    redeem_promo: RedeemPromo
    home: GetHome
    referral_stats: GetReferralStats
    balance_history: GetBalanceHistory
    subscription_details: GetSubscriptionDetails
    remove_device: RemoveDevice
    revoke_link: RevokeLink
    set_language: SetLanguage
    set_auto_renew: SetAutoRenew
    mark_reachable: MarkReachable

    @classmethod
    def build(
        cls,
        deps: Deps,
        panel: VpnPanel | None,
        *,
        register: RegisterCustomer,
        trial: TrialSettings,
        policy: ReferralPolicy,
    ) -> CustomerJourneys:
        """*trial* and *policy* must be the ones ActivateTrial and ConfirmPayment use, so
        that what the menu offers and what the programme pays are what happens."""
        redeem = RedeemPromo(deps)
        return cls(
            onboard=OnboardCustomer(deps, register, redeem),
            redeem_promo=redeem,
            home=GetHome(deps, trial),
            referral_stats=GetReferralStats(deps, policy),
            balance_history=GetBalanceHistory(deps),
            subscription_details=GetSubscriptionDetails(deps, panel),
            remove_device=RemoveDevice(deps, panel),
            revoke_link=RevokeLink(deps, panel),
            set_language=SetLanguage(deps),
            set_auto_renew=SetAutoRenew(deps),
            mark_reachable=MarkReachable(deps),
        )
