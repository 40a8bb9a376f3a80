"""The scheduler's own jobs: payment re-checks and expiry, abandoned orders, panel drift.

(The outbox drain is not a periodic job: it is the library's drain loop, which every
shell runs, woken by its own commits and polling at the ``outbox`` interval.)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from vpnshop.bootstrap import App
from vpnshop.services.drift import CheckPanelDrift
from vpnshop.services.maintenance import CleanupOrders, ExpirePayments
from vpnshop.services.periodic import PeriodicJob


def core_jobs(app: App) -> Iterable[PeriodicJob]:
    """The jobs below, each only when the part it needs is configured."""
    s = app.settings.scheduler
    jobs = []
    if app.gateways:
        recheck_after = timedelta(minutes=s.recheck_after_minutes)

        async def recheck() -> object:
            return await app.recheck_pending(older_than=recheck_after)

        expire = ExpirePayments(app.deps, app.gateways, app.confirm_payment)
        lifetime = timedelta(minutes=s.payment_lifetime_minutes)

        async def expire_payments() -> object:
            return await expire(lifetime)

        jobs += [
            PeriodicJob("recheck", s.interval("recheck"), recheck),
            PeriodicJob("expire_payments", s.interval("expire_payments"), expire_payments),
        ]
    cleanup = CleanupOrders(app.deps)
    age = timedelta(hours=s.abandoned_order_hours)

    async def cleanup_orders() -> object:
        return await cleanup(age)

    jobs.append(PeriodicJob("cleanup_orders", s.interval("cleanup_orders"), cleanup_orders))
    if app.panel is not None and app.settings.panel is not None:
        drift = CheckPanelDrift(app.deps, app.panel, app.settings.panel.tag)
        jobs.append(PeriodicJob("panel_drift", s.interval("panel_drift"), drift))
    return jobs
