"""The use cases behind the bot's money journeys (buy or extend, top-up, Stars), built
together from what the composition root already has."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from vpnshop.ports.payments import PaymentGateway
from vpnshop.services.balance_payments import PayFromBalance
from vpnshop.services.bot_payments import (
    ApplyPaymentUpdate,
    ApplyProviderRefund,
    CheckPreCheckout,
)
from vpnshop.services.buying import BuyPlans, GetOwnPayment, PayQuote
from vpnshop.services.checkout import StartCheckout
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.deps import Deps
from vpnshop.services.stray_charges import ReturnStrayCharge
from vpnshop.services.topup import TopUp, TopupLimits


@attrs.frozen
class MoneyJourneys:
    buy: BuyPlans
    pay: PayQuote
    own_payment: GetOwnPayment
    topup: TopUp
    check_pre_checkout: CheckPreCheckout
    apply_payment_update: ApplyPaymentUpdate

    @classmethod
    def build(
        cls,
        deps: Deps,
        gateways: Mapping[str, PaymentGateway],
        *,
        checkout: StartCheckout,
        pay_from_balance: PayFromBalance,
        confirm: ConfirmPayment,
        limits: TopupLimits,
    ) -> MoneyJourneys:
        buy = BuyPlans(deps, gateways)
        return cls(
            buy=buy,
            pay=PayQuote(buy, pay_from_balance, checkout),
            own_payment=GetOwnPayment(deps),
            topup=TopUp(checkout, gateways, limits),
            check_pre_checkout=CheckPreCheckout(deps),
            apply_payment_update=ApplyPaymentUpdate(
                gateways, confirm, ApplyProviderRefund(deps), ReturnStrayCharge(deps)
            ),
        )
