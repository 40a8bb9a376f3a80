"""The composition root: the only place that builds adapters.

``async with bootstrap(settings) as app:`` opens every resource the process needs
(database engine, HTTP sessions of the panel and of the providers), wires the use cases,
and closes everything in reverse order on exit. Each process builds only what it runs:
nothing here imports aiogram; the bot shell adds its own pieces on top of ``App``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import attrs
from sqlalchemy.ext.asyncio import AsyncEngine

from vpnshop.adapters.clock import SystemClock, UlidIds
from vpnshop.adapters.storage.engine import create_engine, is_sqlite, normalise_url
from vpnshop.adapters.storage.migrate import current_revision, head_revision, upgrade
from vpnshop.adapters.storage.settlers import payment_settler
from vpnshop.adapters.storage.uow import sqlalchemy_uow_factory
from vpnshop.config import PanelSettings, Settings
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.plan import GIB
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.clock import Clock, IdGenerator
from vpnshop.ports.panel import VpnPanel
from vpnshop.ports.payments import PaymentGateway
from vpnshop.services.balance_payments import PayFromBalance
from vpnshop.services.checkout import StartCheckout
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.customers import RegisterCustomer
from vpnshop.services.deps import Deps, no_kick
from vpnshop.services.ledger import AdjustBalance, CreditBalance, VerifyLedger
from vpnshop.services.outbox import JobHandler, OutboxWorker
from vpnshop.services.panel import ApplySubscription, PanelNaming
from vpnshop.services.panel_events import HandlePanelEvent
from vpnshop.services.plans import ListPlans, LoadPlans
from vpnshop.services.refunds import RecheckPending, RefundPayment
from vpnshop.services.subscriptions import ActivateTrial, ExtendSubscription, TrialSettings

if TYPE_CHECKING:
    from vpnshop.adapters.remnawave import RemnawaveSettings

log = logging.getLogger(__name__)


class SchemaOutOfDateError(RuntimeError):
    """The PostgreSQL schema is not at the newest migration."""


@attrs.frozen
class App:
    """Everything a shell needs, built once per process."""

    settings: Settings
    deps: Deps
    engine: AsyncEngine
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


async def prepare_database(engine: AsyncEngine, url: str) -> None:
    """The embedded SQLite default migrates itself; PostgreSQL must be upgraded by the
    operator (``vpnshop db upgrade``), so that several replicas never race a migration."""
    if is_sqlite(url):
        await upgrade(engine)
        return
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDateError(
            f"the database schema is at {current or 'nothing'}, the code needs {head}: "
            "run `vpnshop db upgrade`"
        )


async def open_panel(
    panel_settings: PanelSettings,
    stack: AsyncExitStack,
    clock: Clock | None = None,
    on_call: Callable[[str], None] | None = None,
) -> VpnPanel:
    """Build the Remnawave adapter from the settings, start it (detecting the API line;
    an unsupported version or a refused token stops here with the adapter's message) and
    let *stack* close it. *on_call* hears each HTTP call's outcome (metrics)."""
    from vpnshop.adapters.remnawave import RemnawavePanel

    panel = RemnawavePanel(remnawave_settings(panel_settings), clock=clock, on_call=on_call)
    stack.push_async_callback(panel.aclose)
    await panel.start()
    return panel


def remnawave_settings(p: PanelSettings) -> RemnawaveSettings:
    """The adapter's settings; the username template and the tag are the same values
    ``PanelNaming`` and ``HandlePanelEvent`` use (one source of truth: ``settings.panel``)."""
    from vpnshop.adapters.remnawave import RemnawaveSettings

    return RemnawaveSettings(
        base_url=p.url,
        token=p.token.get(),
        api_line=p.api_line,
        shop_tag=p.tag,
        username_template=p.username_template,
        x_api_key=p.x_api_key.get() if p.x_api_key else None,
    )


@asynccontextmanager
async def bootstrap(
    settings: Settings,
    *,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    panel: VpnPanel | None = None,
    gateways: Mapping[str, PaymentGateway] | None = None,
    kick: Callable[[], None] = no_kick,
    migrate: bool = True,
    on_panel_call: Callable[[str], None] | None = None,
) -> AsyncIterator[App]:
    """Build the application. *panel* and *gateways* may be given (tests, the demo);
    otherwise they are built from *settings* when configured (gateways: see
    ``vpnshop.gateways.build_gateways``; pass ``gateways={}`` for none). *on_panel_call*
    hears the outcome of each HTTP call the built panel makes (the process's metrics)."""
    async with AsyncExitStack() as stack:
        url = normalise_url(settings.database_url)
        engine = create_engine(url)
        stack.push_async_callback(engine.dispose)
        if migrate:
            await prepare_database(engine, url)
        clock = clock or SystemClock()
        uow_factory = sqlalchemy_uow_factory(engine)
        deps = Deps(
            uow=uow_factory,
            clock=clock,
            ids=ids or UlidIds(clock),
            kick=kick,
        )
        naming = (
            PanelNaming(username_template=settings.panel.username_template)
            if settings.panel
            else PanelNaming()
        )
        if panel is None and settings.panel is not None:
            panel = await open_panel(settings.panel, stack, clock, on_panel_call)
        apply = ApplySubscription(deps, panel, naming) if panel is not None else None
        handle_panel_event = (
            HandlePanelEvent(deps, uow_factory, naming, shop_tag=settings.panel.tag)
            if settings.panel is not None
            else None
        )
        handlers: dict[str, JobHandler] = {}
        if apply is not None:
            handlers[JobKind.APPLY_SUBSCRIPTION] = apply.handle
        if gateways is None:
            from vpnshop.gateways import build_gateways

            gateways = build_gateways(settings, stack)
        gateways = dict(gateways)
        settler = payment_settler(engine)
        if settler is not None:
            stack.push_async_callback(settler.aclose)
        confirm = ConfirmPayment(
            deps,
            ReferralPolicy(
                percent=settings.referral_percent,
                referrer_bonus_days=settings.referral_bonus_days_referrer,
                referee_bonus_days=settings.referral_bonus_days_referee,
            ),
            settler=settler,
        )
        yield App(
            settings=settings,
            deps=deps,
            engine=engine,
            panel=panel,
            gateways=gateways,
            register_customer=RegisterCustomer(deps),
            credit_balance=CreditBalance(deps),
            adjust_balance=AdjustBalance(deps),
            extend_subscription=ExtendSubscription(deps),
            activate_trial=ActivateTrial(
                deps,
                TrialSettings(
                    days=settings.trial_days,
                    traffic_limit_bytes=settings.trial_traffic_gb * GIB,
                    device_limit=settings.trial_device_limit or None,
                    squads=settings.trial_squads,
                    enabled=settings.trial_days > 0,
                ),
            ),
            start_checkout=StartCheckout(deps, gateways),
            confirm_payment=confirm,
            refund_payment=RefundPayment(deps, gateways),
            recheck_pending=RecheckPending(deps, gateways, confirm),
            pay_from_balance=PayFromBalance(deps),
            verify_ledger=VerifyLedger(deps),
            load_plans=LoadPlans(deps),
            list_plans=ListPlans(deps),
            apply_subscription=apply,
            outbox=OutboxWorker(deps, handlers),
            handle_panel_event=handle_panel_event,
        )
