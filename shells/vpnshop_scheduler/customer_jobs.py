"""The customer jobs: expiry reminders, auto-renewal from the balance, broadcasts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from vpnshop.bootstrap import App
from vpnshop.domain.money import currency
from vpnshop.services.broadcasts import SendBroadcasts
from vpnshop.services.periodic import PeriodicJob
from vpnshop.services.recurring import CHARGE_SAVED_METHOD
from vpnshop.services.reminders import SendReminders
from vpnshop.services.renewals import RenewFromBalance

DEFAULT_INTERVALS = {"reminders": 60.0, "auto_renew": 300.0, "broadcasts": 5.0}


def customer_jobs(app: App) -> Iterable[PeriodicJob]:
    """Reminders and renewals always; broadcasts when the bot token is configured."""
    s = app.settings.customer_jobs
    interval = app.settings.scheduler.interval
    yield PeriodicJob(
        "reminders",
        interval("reminders", DEFAULT_INTERVALS["reminders"]),
        SendReminders(
            app.deps,
            offsets=s.reminder_offsets,
            notify=s.reminders_enabled,
            renews_before=timedelta(days=s.auto_renew_days_before),
            max_lateness=timedelta(seconds=s.reminder_max_lateness),
            batch=s.scan_batch,
        ),
    )
    yield PeriodicJob(
        "auto_renew",
        interval("auto_renew", DEFAULT_INTERVALS["auto_renew"]),
        RenewFromBalance(
            app.deps,
            currency(app.settings.default_currency),
            days_before=s.auto_renew_days_before,
            # A short balance charges the card saved at YooKassa, when it is configured.
            saved_method_provider=(
                "yookassa" if CHARGE_SAVED_METHOD in app.outbox.handlers else None
            ),
        ),
    )
    if app.notifier is not None:
        yield PeriodicJob(
            "broadcasts",
            interval("broadcasts", DEFAULT_INTERVALS["broadcasts"]),
            SendBroadcasts(app.deps, app.notifier, rate=s.broadcast_rate, run_for=60.0),
        )
