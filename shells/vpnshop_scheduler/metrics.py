"""Prometheus metrics of the scheduler process, read from the counters the drain loop and
the periodic runner keep (a registry of its own, nothing global)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vpnshop.domain.broadcast import BroadcastProgress
from vpnshop.services.drain import DrainLoop
from vpnshop.services.periodic import PeriodicRunner

__all__ = ["CONTENT_TYPE", "BroadcastCollector", "SchedulerCollector", "render"]


class SchedulerCollector(Collector):
    def __init__(self, drain: DrainLoop, runner: PeriodicRunner) -> None:
        self.drain = drain
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        s = self.drain.stats
        jobs = CounterMetricFamily(
            "vpnshop_outbox_jobs",
            "Outbox jobs run by this process, by outcome.",
            labels=["outcome"],
        )
        for outcome, value in (("done", s.done), ("retried", s.retried), ("parked", s.parked)):
            jobs.add_metric([outcome], value)
        yield jobs
        yield CounterMetricFamily(
            "vpnshop_outbox_failed_claims", "Claims that failed (database down).", s.failed_claims
        )
        yield GaugeMetricFamily(
            "vpnshop_outbox_in_flight", "Outbox jobs running now.", self.drain.in_flight
        )
        runs = CounterMetricFamily(
            "vpnshop_scheduler_runs",
            "Runs of each periodic job, by outcome.",
            labels=["job", "outcome"],
        )
        last = GaugeMetricFamily(
            "vpnshop_scheduler_last_success_timestamp_seconds",
            "When each periodic job last ran without failing (unix time).",
            labels=["job"],
        )
        duration = GaugeMetricFamily(
            "vpnshop_scheduler_last_duration_seconds",
            "How long each job's last run took.",
            labels=["job"],
        )
        for name, st in sorted(self.runner.stats.items()):
            runs.add_metric([name, "ok"], st.runs - st.failures)
            runs.add_metric([name, "failed"], st.failures)
            runs.add_metric([name, "skipped"], st.skipped)
            last.add_metric([name], st.last_success)
            duration.add_metric([name], st.last_seconds)
        yield runs
        yield last
        yield duration


class BroadcastCollector(Collector):
    """The progress of the newest broadcasts, as last read from the database (the
    /metrics handler reads it before each scrape: the counts live in the database, so
    every replica reports the same)."""

    def __init__(self) -> None:
        self.progress: Sequence[BroadcastProgress] = ()

    def collect(self) -> Iterator[Metric]:
        recipients = GaugeMetricFamily(
            "vpnshop_broadcast_recipients",
            "Recipients of each recent broadcast, by state.",
            labels=["broadcast", "status"],
        )
        for p in self.progress:
            bid = str(p.broadcast.id)
            for state, value in (
                ("pending", p.pending),
                ("in_flight", p.in_flight),
                ("sent", p.sent),
                ("failed", p.failed),
                ("skipped", p.skipped),
            ):
                recipients.add_metric([bid, state], value)
        yield recipients


def registry_for(
    drain: DrainLoop, runner: PeriodicRunner, broadcasts: BroadcastCollector | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(drain, runner))
    if broadcasts is not None:
        registry.register(broadcasts)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
