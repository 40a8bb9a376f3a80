"""Settings of the scheduler (``vpnshop run scheduler``) and of the outbox drain that
every shell runs.

Each job's interval has a default here; ``VPNSHOP_SCHEDULER_INTERVALS`` overrides any job
by name (``outbox=1,recheck=120``), including jobs added later, which ask for theirs with
:meth:`SchedulerSettings.interval`.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from vpnshop.config.reader import Reader, integer, seconds, words

DEFAULT_INTERVALS: Mapping[str, float] = {
    "outbox": 2.0,  # the poll; commits in the same process kick the drain at once
    "recheck": 60.0,
    "expire_payments": 300.0,
    "cleanup_orders": 3600.0,
    "panel_drift": 900.0,
}


@attrs.frozen
class SchedulerSettings:
    host: str = "127.0.0.1"
    port: int = 9090  # /healthz and /metrics
    intervals: Mapping[str, float] = attrs.field(factory=dict)  # overrides by job name
    # The outbox: jobs run at once per process, a claim's lease (renewed while a job
    # runs, so a crashed holder's jobs are taken over within about this long), and the
    # attempts before a job is parked with its last error.
    outbox_concurrency: int = 16
    outbox_lease: float = 10.0
    outbox_max_attempts: int = 25
    # Payments still open this many minutes after they were created are asked about at
    # their provider (a lost webhook); open ones past the lifetime are expired.
    recheck_after_minutes: int = 10
    payment_lifetime_minutes: int = 24 * 60
    # Orders without any payment after this many hours are abandoned and removed.
    abandoned_order_hours: int = 48

    def interval(self, job: str, default: float | None = None) -> float:
        """The interval of *job* in seconds: the operator's override, else the default
        here, else *default* (a job defined elsewhere), else 60 s."""
        if job in self.intervals:
            return self.intervals[job]
        if job in DEFAULT_INTERVALS:
            return DEFAULT_INTERVALS[job]
        return 60.0 if default is None else default


def _intervals(value: str) -> dict[str, float]:
    found: dict[str, float] = {}
    parse = seconds(0.05, 7 * 24 * 3600)
    for item in words(value):
        name, sep, number = item.partition("=")
        if not sep or not name:
            raise ValueError(f"expected job=seconds pairs (outbox=1,recheck=120), got {item!r}")
        found[name.strip().lower()] = parse(number)
    return found


def read_scheduler(r: Reader) -> SchedulerSettings:
    return SchedulerSettings(
        host=r.get("SCHEDULER_HOST", str, "127.0.0.1"),
        port=r.get("SCHEDULER_PORT", integer(0, 65535), 9090),
        intervals=r.get("SCHEDULER_INTERVALS", _intervals, {}),
        outbox_concurrency=r.get("OUTBOX_CONCURRENCY", integer(1, 256), 16),
        outbox_lease=r.get("OUTBOX_LEASE", seconds(1, 600), 10.0),
        outbox_max_attempts=r.get("OUTBOX_MAX_ATTEMPTS", integer(1, 1000), 25),
        recheck_after_minutes=r.get("RECHECK_AFTER_MINUTES", integer(1, 7 * 24 * 60), 10),
        payment_lifetime_minutes=r.get(
            "PAYMENT_LIFETIME_MINUTES", integer(5, 30 * 24 * 60), 24 * 60
        ),
        abandoned_order_hours=r.get("ABANDONED_ORDER_HOURS", integer(1, 24 * 365), 48),
    )
