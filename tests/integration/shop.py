"""A small shop for service tests: real storage, fake clock, ids, gateway and panel,
wired by the composition root's ``wire`` as every process is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import attrs

from vpnshop.bootstrap import App, Storage, wire
from vpnshop.config import Settings
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
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
from vpnshop.services.plans import LoadPlans
from vpnshop.services.refunds import RecheckPending, RefundPayment
from vpnshop.services.subscriptions import ActivateTrial, ExtendSubscription
from vpnshop.testing.fakes import FakeClock, FakeGateway, FakePanel, SequentialIds

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ADMIN = Actor.admin(1)


@attrs.define
class Shop:
    app: App
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
    storage: Storage | Callable[[], UnitOfWork],
    referral: ReferralPolicy | None = None,
    *,
    fast_path: bool = True,
) -> Shop:
    """The shop on *storage* (with its payment settler when it has one and *fast_path*),
    its plans loaded from the example file."""
    if isinstance(storage, Storage) and not fast_path:
        storage = attrs.evolve(storage, settler=None, settle_stats=None)
    referral = referral or ReferralPolicy()
    settings = Settings(
        referral_percent=referral.percent,
        referral_bonus_days_referrer=referral.referrer_bonus_days,
        referral_bonus_days_referee=referral.referee_bonus_days,
    )
    clock = FakeClock(START)
    kicks: list[int] = []
    gateway = FakeGateway("fake", RUB, min_amount=Money(100, RUB))
    no_refund = FakeGateway("norefund", RUB, supports_refund=False)
    panel = FakePanel(clock)
    app = wire(
        settings,
        storage=storage,
        clock=clock,
        ids=SequentialIds(),
        panel=panel,
        gateways={"fake": gateway, "norefund": no_refund},
        kick=lambda: kicks.append(1),
    )
    shop = Shop(
        app=app,
        deps=app.deps,
        clock=clock,
        gateway=gateway,
        no_refund=no_refund,
        panel=panel,
        register=app.register_customer,
        credit=app.credit_balance,
        adjust=app.adjust_balance,
        extend=app.extend_subscription,
        trial=app.activate_trial,
        checkout=app.start_checkout,
        confirm=app.confirm_payment,
        pay_from_balance=app.pay_from_balance,
        refund=app.refund_payment,
        recheck=app.recheck_pending,
        verify=app.verify_ledger,
        load_plans=app.load_plans,
        outbox=app.outbox,
        kicks=kicks,
    )
    await shop.load_plans(load_plans_file(EXAMPLE), actor=Actor.system("test"))
    return shop
