"""The bundles the composition root hands out: an opened store and the App."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs
from sqlalchemy.ext.asyncio import AsyncEngine

from vpnshop.config import Settings
from vpnshop.ports.notifier import Notifier
from vpnshop.ports.panel import PanelWebhookVerifier, VpnPanel
from vpnshop.ports.payments import PaymentGateway
from vpnshop.ports.settlement import BatchStats, PaymentSettler
from vpnshop.ports.storage import ReadRunner, UnitOfWork
from vpnshop.services.balance_payments import PayFromBalance
from vpnshop.services.checkout import StartCheckout
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.customers import RegisterCustomer
from vpnshop.services.deps import Deps
from vpnshop.services.journeys import CustomerJourneys
from vpnshop.services.ledger import AdjustBalance, CreditBalance, VerifyLedger
from vpnshop.services.links import ReadyLink
from vpnshop.services.money_journeys import MoneyJourneys
from vpnshop.services.outbox import OutboxWorker
from vpnshop.services.panel import ApplySubscription
from vpnshop.services.panel_events import HandlePanelEvent
from vpnshop.services.plans import ListPlans, LoadPlans
from vpnshop.services.refunds import RecheckPending, RefundPayment
from vpnshop.services.subscriptions import ActivateTrial, ExtendSubscription


@attrs.frozen
class Storage:
    """An opened store: its units of work and, when the store has one, its payment
    confirmation fast path. Calling it opens a unit of work, so it serves wherever a
    unit-of-work factory is expected."""

    uow: Callable[[], UnitOfWork]
    settler: PaymentSettler | None = None
    settle_stats: BatchStats | None = None  # the settler's group commit, if it batches
    engine: AsyncEngine | None = None  # None for the in-memory store
    # Read-only units of work that do not wait for the writer (SQLite); None: use ``uow``.
    read_uow: Callable[[], UnitOfWork] | None = None
    read_runner: ReadRunner | None = None  # whole reads in one hop (SQLite); None: read_uow

    def __call__(self) -> UnitOfWork:
        return self.uow()


@attrs.frozen
class App:
    """Everything a shell needs, built once per process by :func:`vpnshop.bootstrap.wire`."""

    settings: Settings
    deps: Deps
    engine: AsyncEngine | None
    panel: VpnPanel | None
    gateways: Mapping[str, PaymentGateway]
    register_customer: RegisterCustomer
    credit_balance: CreditBalance
    adjust_balance: AdjustBalance
    extend_subscription: ExtendSubscription
    activate_trial: ActivateTrial
    start_checkout: StartCheckout
    confirm_payment: ConfirmPayment
    pay_from_balance: PayFromBalance
    refund_payment: RefundPayment
    recheck_pending: RecheckPending
    verify_ledger: VerifyLedger
    load_plans: LoadPlans
    list_plans: ListPlans
    apply_subscription: ApplySubscription | None
    outbox: OutboxWorker
    handle_panel_event: HandlePanelEvent | None = None
    panel_webhooks: PanelWebhookVerifier | None = None  # with the panel's webhook secret
    settle_stats: BatchStats | None = None
    notifier: Notifier | None = None
    journeys: CustomerJourneys | None = None  # what the bot's customer journeys call
    ready_link: ReadyLink | None = None  # the link after an activation, now or via the outbox
    money: MoneyJourneys | None = None  # the bot's buy, top-up and Stars use cases
