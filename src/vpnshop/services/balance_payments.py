"""Pay from the balance: hold the money, fulfil, capture; release on failure."""

from __future__ import annotations

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import DomainError, ValidationError
from vpnshop.domain.money import Currency
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.services.customers import buyable_customer
from vpnshop.services.deps import Deps
from vpnshop.services.ledger import capture_hold, hold_funds, release_hold
from vpnshop.services.pricing import price_plan_order, promo_once
from vpnshop.services.settlement import effects_for, settle

BALANCE = "balance"  # the provider name of payments made from the balance


@attrs.frozen
class PayFromBalance:
    """Buy a plan with the balance: hold the money, fulfil, capture; release on failure.

    Three short transactions, so that a failed fulfilment gives the money back and a
    crash between them leaves a visible HELD hold rather than money in limbo.
    """

    deps: Deps

    async def __call__(
        self,
        customer_id: int,
        plan_code: str,
        cur: Currency,
        *,
        actor: Actor,
        promo_code: str | None = None,
        order_id: str | None = None,
    ) -> Payment:
        now = self.deps.now()
        async with self.deps.uow() as uow:
            await buyable_customer(uow, customer_id)
            order = await price_plan_order(
                uow,
                self.deps,
                customer_id=customer_id,
                plan_code=plan_code,
                cur=cur,
                promo_code=promo_code,
            )
            if order_id is not None:  # a caller-chosen id makes a retried purchase idempotent
                order = attrs.evolve(order, id=order_id)
                if await uow.orders.get(order_id) is not None:
                    raise ValidationError(f"order {order_id} exists")
            payment = Payment(
                id=f"b_{order.id}",
                order_id=order.id,
                customer_id=customer_id,
                provider=BALANCE,
                amount=order.amount,
                status=PaymentStatus.PENDING,
                external_id=f"hold:{order.id}",
                created_at=now,
                updated_at=now,
            )
            await uow.orders.add(order)
            await uow.payments.add(payment)
            hold = await hold_funds(
                uow,
                self.deps,
                customer_id=customer_id,
                amount=order.amount,
                order_id=order.id,
                actor=actor,
            )
            await uow.commit()
        try:
            async with self.deps.uow() as uow:
                ctx = await uow.payments.context(payment.id, BALANCE, None)
                assert ctx is not None
                now = self.deps.now()
                effects = effects_for(
                    ctx,
                    now=now,
                    actor=actor,
                    policy=ReferralPolicy(),
                    promo_once_per_customer=await promo_once(uow, ctx),
                )
                done = await settle(uow, payment.id, PaymentStatus.SUCCEEDED, now, effects=effects)
                if done is None:
                    raise DomainError(f"payment {payment.id} was finalised elsewhere")
                await capture_hold(uow, hold.id)
                await uow.commit()
        except BaseException:
            async with self.deps.uow() as uow:
                await release_hold(uow, self.deps, hold.id, Actor.system("release"))
                await uow.payments.transition(payment.id, PaymentStatus.CANCELED, self.deps.now())
                await uow.commit()
            raise
        self.deps.kick()
        return done
