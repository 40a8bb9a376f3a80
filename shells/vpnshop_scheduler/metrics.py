"""Prometheus metrics of the scheduler process, read from the counters the drain loop and
the periodic runner keep (a registry of its own, nothing global)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vpnshop.services.drain import DrainLoop
from vpnshop.services.periodic import PeriodicRunner

__all__ = ["CONTENT_TYPE", "SchedulerCollector", "render"]


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


def registry_for(drain: DrainLoop, runner: PeriodicRunner) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(drain, runner))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
