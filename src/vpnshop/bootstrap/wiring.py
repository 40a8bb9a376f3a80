"""``wire``: every use case, built from settings and adapters that are already open.

Pure: it opens, starts and closes nothing, so tests, the CLI, each shell and the demo
build their App the same way, from a real store or the in-memory one, real adapters or
fakes. What to open (and when to close it) is :mod:`vpnshop.bootstrap.resources`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from vpnshop.bootstrap.app import App, Storage
from vpnshop.config import Settings
from vpnshop.domain.money import currency
from vpnshop.domain.outbox import JobKind
from vpnshop.domain.plan import GIB
from vpnshop.domain.referral import ReferralPolicy
from vpnshop.ports.clock import Clock, IdGenerator
from vpnshop.ports.notifier import Notifier
from vpnshop.ports.panel import PanelWebhookVerifier, VpnPanel
from vpnshop.ports.payments import ChargeReturner, PaymentGateway
from vpnshop.ports.recurring import SavedMethodCharger
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.balance_payments import PayFromBalance
from vpnshop.services.checkout import StartCheckout
from vpnshop.services.confirmation import ConfirmPayment
from vpnshop.services.customers import RegisterCustomer
from vpnshop.services.deps import Deps, no_kick
from vpnshop.services.journeys import CustomerJourneys
from vpnshop.services.ledger import AdjustBalance, CreditBalance, VerifyLedger
from vpnshop.services.links import ReadyLink
from vpnshop.services.money_journeys import MoneyJourneys
from vpnshop.services.notifications import SendNotifications
from vpnshop.services.outbox import JobHandler, OutboxWorker
from vpnshop.services.panel import ApplySubscription, PanelNaming
from vpnshop.services.panel_events import HandlePanelEvent
from vpnshop.services.plans import ListPlans, LoadPlans
from vpnshop.services.recurring import CHARGE_SAVED_METHOD, ChargeSavedMethod
from vpnshop.services.refunds import RecheckPending, RefundPayment
from vpnshop.services.settings import MarkReachable
from vpnshop.services.stray_charges import RETURN_CHARGE, ReturnCharge
from vpnshop.services.subscriptions import ActivateTrial, ExtendSubscription, TrialSettings
from vpnshop.services.topup import TopupLimits

PANEL_WEBHOOK_WINDOW = timedelta(minutes=5)  # how old a signed panel webhook may be


def referral_policy(settings: Settings) -> ReferralPolicy:
    return ReferralPolicy(
        percent=settings.referral_percent,
        referrer_bonus_days=settings.referral_bonus_days_referrer,
        referee_bonus_days=settings.referral_bonus_days_referee,
    )


def trial_settings(settings: Settings) -> TrialSettings:
    return TrialSettings(
        days=settings.trial_days,
        traffic_limit_bytes=settings.trial_traffic_gb * GIB,
        device_limit=settings.trial_device_limit or None,
        squads=settings.trial_squads,
        enabled=settings.trial_days > 0,
    )


def panel_webhook_verifier(settings: Settings, clock: Clock) -> PanelWebhookVerifier | None:
    """The panel webhooks' verifier when the panel and its webhook secret are configured
    (without a secret no panel webhook is ever accepted)."""
    panel = settings.panel
    if panel is None or panel.webhook_secret is None:
        return None
    from vpnshop.adapters.remnawave import RemnawaveWebhookVerifier

    return RemnawaveWebhookVerifier(
        panel.webhook_secret.get(), window=PANEL_WEBHOOK_WINDOW, clock=clock
    )


def notifications(
    settings: Settings, deps: Deps, notifier: Notifier, *, links_expected: bool
) -> SendNotifications:
    """The outbox's notification handlers, rendering with ``vpnshop.i18n``."""
    from vpnshop.i18n.notices import render_notice

    return SendNotifications(
        deps,
        notifier,
        render_notice,
        MarkReachable(deps),
        admin_ids=settings.admin_ids,
        links_expected=links_expected,
    )


def topup_limits(settings: Settings) -> TopupLimits:
    """The bot's top-up presets and range, in minor units of the default currency."""
    cur = currency(settings.default_currency)
    bot = settings.bot
    return TopupLimits(
        currency=cur,
        presets=tuple(a * cur.scale for a in bot.topup_amounts),
        minimum=bot.topup_min * cur.scale,
        maximum=bot.topup_max * cur.scale,
    )


def wire(
    settings: Settings,
    *,
    storage: Storage | Callable[[], UnitOfWork],
    clock: Clock,
    ids: IdGenerator,
    panel: VpnPanel | None = None,
    gateways: Mapping[str, PaymentGateway] | None = None,
    notifier: Notifier | None = None,
    kick: Callable[[], None] = no_kick,
) -> App:
    """The App for *settings* on *storage* (an opened store, or a bare unit-of-work
    factory for a store without a fast path), *panel* (None: no panel jobs in this
    process), *gateways* (None: none) and *notifier*. *kick* is called after every
    commit that enqueued outbox jobs."""
    if not isinstance(storage, Storage):
        storage = Storage(storage)
    gateways = dict(gateways or {})
    deps = Deps(
        uow=storage,
        clock=clock,
        ids=ids,
        kick=kick,
        read=storage.read_uow,
        read_runner=storage.read_runner,
    )
    naming = (
        PanelNaming(username_template=settings.panel.username_template)
        if settings.panel is not None
        else PanelNaming()
    )
    apply = ApplySubscription(deps, panel, naming) if panel is not None else None
    handlers: dict[str, JobHandler] = {}
    if apply is not None:
        handlers[JobKind.APPLY_SUBSCRIPTION] = apply.handle
    if notifier is not None:
        notices = notifications(settings, deps, notifier, links_expected=panel is not None)
        handlers[JobKind.NOTIFY_CUSTOMER] = notices.customer
        handlers[JobKind.NOTIFY_ADMINS] = notices.admins
    confirm = ConfirmPayment(deps, referral_policy(settings), settler=storage.settler)
    returners = {n: g for n, g in gateways.items() if isinstance(g, ChargeReturner)}
    if returners:  # stray charges (a second Stars payment of a paid order) go back
        handlers[RETURN_CHARGE] = ReturnCharge(deps, returners)
    yookassa = gateways.get("yookassa")
    if isinstance(yookassa, SavedMethodCharger):  # auto-renewal by a saved card
        handlers[CHARGE_SAVED_METHOD] = ChargeSavedMethod(deps, yookassa, confirm)
    register = RegisterCustomer(deps)
    trial = trial_settings(settings)
    checkout = StartCheckout(deps, gateways)
    pay_from_balance = PayFromBalance(deps)
    return App(
        settings=settings,
        deps=deps,
        engine=storage.engine,
        panel=panel,
        gateways=gateways,
        register_customer=register,
        credit_balance=CreditBalance(deps),
        adjust_balance=AdjustBalance(deps),
        extend_subscription=ExtendSubscription(deps),
        activate_trial=ActivateTrial(deps, trial),
        start_checkout=checkout,
        confirm_payment=confirm,
        pay_from_balance=pay_from_balance,
        refund_payment=RefundPayment(deps, gateways),
        recheck_pending=RecheckPending(deps, gateways, confirm),
        verify_ledger=VerifyLedger(deps),
        load_plans=LoadPlans(deps),
        list_plans=ListPlans(deps),
        apply_subscription=apply,
        outbox=OutboxWorker(
            deps,
            handlers,
            lease=timedelta(seconds=settings.scheduler.outbox_lease),
            max_attempts=settings.scheduler.outbox_max_attempts,
        ),
        handle_panel_event=(
            HandlePanelEvent(deps, storage, naming, shop_tag=settings.panel.tag)
            if settings.panel is not None
            else None
        ),
        panel_webhooks=panel_webhook_verifier(settings, clock),
        settle_stats=storage.settle_stats,
        notifier=notifier,
        journeys=CustomerJourneys.build(
            deps, panel, register=register, trial=trial, policy=confirm.referral
        ),
        ready_link=ReadyLink(deps, apply),
        money=MoneyJourneys.build(
            deps,
            gateways,
            checkout=checkout,
            pay_from_balance=pay_from_balance,
            confirm=confirm,
            limits=topup_limits(settings),
        ),
    )
