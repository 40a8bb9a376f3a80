"""Which periodic jobs the scheduler runs: one factory per family of jobs.

A factory takes the App and returns the :class:`~vpnshop.services.periodic.PeriodicJob`
values it builds (none when the part it needs is not configured). To add jobs, write a
factory in its own module and append it to :data:`FACTORIES`; intervals come from
``app.settings.scheduler.interval(name, default)`` so that the operator can override
them with ``VPNSHOP_SCHEDULER_INTERVALS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vpnshop.bootstrap import App
from vpnshop.services.periodic import JobRegistry, PeriodicJob
from vpnshop_scheduler.core_jobs import core_jobs
from vpnshop_scheduler.customer_jobs import customer_jobs

JobFactory = Callable[[App], Iterable[PeriodicJob]]

FACTORIES: list[JobFactory] = [core_jobs, customer_jobs]


def build_registry(app: App, factories: Iterable[JobFactory] = FACTORIES) -> JobRegistry:
    """Every job of every factory, in order; a duplicate name is a bug."""
    registry = JobRegistry()
    for factory in factories:
        for job in factory(app):
            registry.add(job)
    return registry
