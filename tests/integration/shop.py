"""A small shop for service tests: real storage, fake clock, ids, gateway and panel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.plansfile import EXAMPLE, load_plans_file
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.balance_payments import PayFromBalance
from vpnshop.services.checkout import StartCheckout
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.customers import RegisterCustomer
from vpnshop.services.deps import Deps
from vpnshop.services.ledger import AdjustBalance, CreditBalance, VerifyLedger
from vpnshop.services.outbox import OutboxWorker
from vpnshop.services.panel import ApplySubscription
from vpnshop.services.plans import LoadPlans
from vpnshop.services.refunds import RecheckPending, RefundPayment
from vpnshop.services.subscriptions import ActivateTrial, ExtendSubscription, TrialSettings
from vpnshop.testing.fakes import FakeClock, FakeGateway, FakePanel, SequentialIds

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ADMIN = Actor.admin(1)


@attrs.define
class Shop:
    deps: Deps
    clock: FakeClock
    gateway: FakeGateway
    no_refund: FakeGateway
    panel: FakePanel
    register: RegisterCustomer
    credit: CreditBalance
    adjust: AdjustBalance
    extend: ExtendSubscription
    trial: ActivateTrial
    checkout: StartCheckout
    confirm: ConfirmPayment
    pay_from_balance: PayFromBalance
    refund: RefundPayment
    recheck: RecheckPending
    verify: VerifyLedger
    load_plans: LoadPlans
    outbox: OutboxWorker
    kicks: list[int]

    def uow(self) -> UnitOfWork:
        return self.deps.uow()

    async def customer(self, telegram_id: int, **kw: object) -> int:
        c, _ = await self.register(telegram_id, **kw)  # type: ignore[arg-type]
        assert c.id is not None
        return c.id

    async def jobs(self, kind: str | None = None) -> list[str]:
        """Dedupe keys of every pending outbox job (optionally of one kind)."""
        async with self.uow() as uow:
            jobs = await uow.outbox.claim(self.clock.now(), self.clock.now(), 1000)
        return sorted(j.dedupe_key for j in jobs if kind is None or j.kind == kind)


async def make_shop(
    uow_factory: Callable[[], UnitOfWork], referral: ReferralPolicy | None = None
) -> Shop:
    clock = FakeClock(START)
    kicks: list[int] = []
    deps = Deps(uow=uow_factory, clock=clock, ids=SequentialIds(), kick=lambda: kicks.append(1))
    gateway = FakeGateway("fake", RUB, min_amount=Money(100, RUB))
    no_refund = FakeGateway("norefund", RUB, supports_refund=False)
    gateways = {"fake": gateway, "norefund": no_refund}
    panel = FakePanel(clock)
    # On PostgreSQL the factory carries the store's fast path, wired as bootstrap does.
    settler = getattr(uow_factory, "settler", None)
    confirm = ConfirmPayment(deps, referral or ReferralPolicy(), settler=settler)
    shop = Shop(
        deps=deps,
        clock=clock,
        gateway=gateway,
        no_refund=no_refund,
        panel=panel,
        register=RegisterCustomer(deps),
        credit=CreditBalance(deps),
        adjust=AdjustBalance(deps),
        extend=ExtendSubscription(deps),
        trial=ActivateTrial(deps, TrialSettings(days=3)),
        checkout=StartCheckout(deps, gateways),
        confirm=confirm,
        pay_from_balance=PayFromBalance(deps),
        refund=RefundPayment(deps, gateways),
        recheck=RecheckPending(deps, gateways, confirm),
        verify=VerifyLedger(deps),
        load_plans=LoadPlans(deps),
        outbox=OutboxWorker(
            deps, {JobKind.APPLY_SUBSCRIPTION: ApplySubscription(deps, panel).handle}
        ),
        kicks=kicks,
    )
    await shop.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("test"))
    return shop
