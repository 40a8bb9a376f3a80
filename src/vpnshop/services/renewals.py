"""Auto-renewal from the balance: some days before expiry, the plan the customer has, at
its current price, is paid from their balance: hold -> extend -> capture.

The whole renewal of one subscription is ONE transaction, so a kill -9 at any point
either renewed (and moved the scan's cursor past it) or left nothing behind. The order's
id is derived from the subscription and the expiry being renewed (``ar_{sub}_{expiry}``),
so the orders table's primary key admits one renewal per period, across replicas and
restarts; the due-scan's cursor row, locked by the transaction, makes replicas take turns.
Too little balance: the customer is told once for that period (the dedupe key carries the
expiry), with a top-up button.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import InsufficientFundsError
from vpnshop.domain.money import Currency
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.domain.settlement import PAID_NOTICE
from vpnshop.ports.storage import UnitOfWork
from vpnshop.ports.storage_jobs import DueSubscription, ScanCursor
from vpnshop.services.balance_payments import BALANCE
from vpnshop.services.deps import Deps, enqueue
from vpnshop.services.ledger import capture_hold, hold_funds
from vpnshop.services.recurring import saved_method, start_saved_method_renewal
from vpnshop.services.settlement import effects_for, settle

SCAN = "renew:balance"
ACTOR = Actor.system("auto-renew")


def renewal_order_id(subscription_id: int, expires_at: datetime) -> str:
    """One renewal per subscription and period: the order's primary key."""
    return f"ar_{subscription_id}_{int(expires_at.timestamp())}"


@attrs.frozen
class RenewalReport:
    renewed: int = 0
    charging: int = 0  # a saved payment method is being charged
    low_balance: int = 0
    skipped: int = 0


@attrs.frozen
class RenewFromBalance:
    """One run of the balance auto-renewal scan."""

    deps: Deps
    currency: Currency
    days_before: int = 1
    max_lateness: timedelta = timedelta(days=1)
    # When the balance is short, charge the method saved at this provider (YooKassa).
    saved_method_provider: str | None = None

    async def __call__(self) -> RenewalReport:
        report = RenewalReport()
        while True:
            outcome = await self._next()
            if outcome is None:
                return report
            report = attrs.evolve(report, **{outcome: getattr(report, outcome) + 1})

    async def _next(self) -> str | None:
        """Renew (or tell, or skip) the next due subscription; None when none is due."""
        now = self.deps.now()
        until = now + timedelta(days=self.days_before)
        floor: ScanCursor = (now - self.max_lateness, 0)
        async with self.deps.uow() as uow:
            cursor = max(await uow.cursors.claim(SCAN, floor), floor)
            found = await uow.subscriptions.due(cursor, until, limit=1, auto_renew_only=True)
            if not found:
                await uow.commit()
                return None
            due = found[0]
            sub = due.subscription
            assert sub.id is not None
            try:
                outcome = await self._renew(uow, due, now)
            except InsufficientFundsError:
                # The balance moved after we read it: roll back; the next run tries again.
                return None
            await uow.cursors.move(SCAN, (sub.expires_at, sub.id))
            await uow.commit()
        if outcome != "skipped":
            self.deps.kick()
        return outcome

    async def _renew(self, uow: UnitOfWork, due: DueSubscription, now: datetime) -> str:
        sub = due.subscription
        assert sub.id is not None
        if not due.reachable or not sub.enabled or sub.is_trial or sub.plan_code is None:
            return "skipped"  # banned or gone customers, and trials, are not charged
        await uow.customers.lock(sub.customer_id)
        current = await uow.subscriptions.get(sub.id, for_update=True)
        if current is None or not current.auto_renew or current.expires_at != sub.expires_at:
            return "skipped"  # switched off or extended since the scan read it
        order_id = renewal_order_id(sub.id, sub.expires_at)
        if await uow.orders.get(order_id) is not None:
            return "skipped"  # this period is renewed already
        plan = await uow.plans.get(sub.plan_code)
        price = plan.price(self.currency) if plan is not None else None
        if plan is None or price is None:
            return "skipped"
        balance = await uow.ledger.balance(sub.customer_id, self.currency)
        method = None
        if balance < price and self.saved_method_provider is not None:
            method = await saved_method(uow, sub.customer_id, self.saved_method_provider)
        if method is not None and self.saved_method_provider is not None:
            await start_saved_method_renewal(
                uow,
                customer_id=sub.customer_id,
                plan=plan,
                price=price,
                order_id=order_id,
                provider=self.saved_method_provider,
                method_id=method,
                now=now,
            )
            return "charging"
        if balance < price:
            await enqueue(
                uow,
                now,
                JobKind.NOTIFY_CUSTOMER,
                f"notify:renew-low:{order_id}",
                customer_id=sub.customer_id,
                template="auto_renew_low_balance",
                subscription_id=sub.id,
                plan_code=plan.code,
                price=str(price),
                balance=str(balance),
                missing=str(price - balance),
                expires_at=sub.expires_at.isoformat(),
                button="topup",
            )
            return "low_balance"
        order = Order(
            id=order_id,
            customer_id=sub.customer_id,
            kind=OrderKind.PLAN,
            amount=price,
            list_price=price,
            plan_code=plan.code,
            days=plan.duration_days,
            created_at=now,
        )
        payment = Payment(
            id=f"b_{order_id}",
            order_id=order_id,
            customer_id=sub.customer_id,
            provider=BALANCE,
            amount=price,
            status=PaymentStatus.PENDING,
            external_id=f"hold:{order_id}",
            created_at=now,
            updated_at=now,
        )
        await uow.orders.add(order)
        await uow.payments.add(payment)
        hold = await hold_funds(
            uow,
            self.deps,
            customer_id=sub.customer_id,
            amount=price,
            order_id=order_id,
            actor=ACTOR,
        )
        ctx = await uow.payments.context(payment.id, BALANCE, None)
        assert ctx is not None
        effects = effects_for(ctx, now=now, actor=ACTOR, policy=ReferralPolicy())
        # The customer hears "renewed automatically, until ..." below, not also the
        # generic "payment received" every settled payment announces.
        paid = PAID_NOTICE.key(payment=payment.id)
        effects = attrs.evolve(effects, jobs=tuple(j for j in effects.jobs if j.dedupe_key != paid))
        if await settle(uow, payment.id, PaymentStatus.SUCCEEDED, now, effects=effects) is None:
            return "skipped"
        await capture_hold(uow, hold.id)
        await enqueue(
            uow,
            now,
            JobKind.NOTIFY_CUSTOMER,
            f"notify:renewed:{order_id}",
            customer_id=sub.customer_id,
            template="auto_renewed",
            subscription_id=sub.id,
            plan_code=plan.code,
            amount=str(price),
            days=plan.duration_days,
        )
        return "renewed"
