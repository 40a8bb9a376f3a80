"""The scheduler's own jobs: payment re-checks and expiry, abandoned orders, panel drift.

(The outbox drain is not a periodic job: it is the library's drain loop, which every
shell runs, woken by its own commits and polled at the ``outbox`` interval.)
"""

from __future__ import annotations

from collections.abc import Iterable

from vpnshop.bootstrap import App
from vpnshop.services.periodic import PeriodicJob


def core_jobs(app: App) -> Iterable[PeriodicJob]:
    """Filled in as the jobs land; see docs/scheduler.md."""
    return []
