"""Prometheus metrics of the webhooks process, in a registry of their own.

Each :class:`WebhookMetrics` owns a fresh ``CollectorRegistry``: nothing is registered in
prometheus-client's global registry, so any number of apps (tests, benchmarks) can live
in one process without "duplicated timeseries" errors.

:meth:`WebhookMetrics.panel_call` is the Remnawave adapter's ``on_call`` observer: the
server passes it to ``bootstrap`` (``on_panel_call``), and the adapter calls it with
``"ok"``, ``"error"`` or ``"unavailable"`` after each HTTP request to the panel (the
outbox's calls, the API line detection), counted in ``vpnshop_panel_calls_total``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from vpnshop.ports.settlement import BatchStats

__all__ = ["CONTENT_TYPE", "WebhookMetrics"]

# Webhooks are one short transaction each; most answer within tens of milliseconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WebhookMetrics:
    """The webhook server's counters, histogram and gauges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            "vpnshop_webhooks",
            "Provider notifications received, by provider and outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self.payments_confirmed = Counter(
            "vpnshop_payments_confirmed",
            "Payments confirmed (credited exactly once) from provider notifications.",
            ["provider"],
            registry=r,
        )
        self.confirmed_amount = Counter(
            "vpnshop_payments_confirmed_amount_minor",
            "Confirmed money in minor units (kopecks, cents, whole stars).",
            ["provider", "currency"],
            registry=r,
        )
        self.latency = Histogram(
            "vpnshop_webhook_duration_seconds",
            "Time from receiving a notification to answering it.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "vpnshop_outbox_pending_jobs",
            "Outbox jobs waiting to run (read from the database at scrape time).",
            registry=r,
        )
        self.panel_calls = Counter(
            "vpnshop_panel_calls",
            "HTTP requests sent to the VPN panel (each retry counts), by outcome.",
            ["outcome"],
            registry=r,
        )

    def webhook(self, provider: str, outcome: str, seconds: float) -> None:
        self.webhooks.labels(provider=provider, outcome=outcome).inc()
        self.latency.labels(provider=provider).observe(seconds)

    def confirmed(self, provider: str, currency: str | None, minor: int | None) -> None:
        self.payments_confirmed.labels(provider=provider).inc()
        if currency is not None and minor is not None and minor > 0:
            self.confirmed_amount.labels(provider=provider, currency=currency).inc(minor)

    def panel_call(self, outcome: str) -> None:
        """The hook for the panel adapter: count one panel call with *outcome*."""
        self.panel_calls.labels(outcome=outcome).inc()

    def watch_settler(self, stats: BatchStats) -> None:
        """Report the payment settler's group commit, read at scrape time:
        confirmations per batch is ``rate(confirmations) / rate(batches)``."""
        self.registry.register(_SettlerCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _SettlerCollector(Collector):
    def __init__(self, stats: BatchStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        g = self._stats
        for name, documentation, value in (
            ("vpnshop_settle_batches", "Transactions the payment settler ran.", g.batches),
            (
                "vpnshop_settle_confirmations",
                "Payment confirmations the settler ran, in all its batches.",
                g.items,
            ),
            (
                "vpnshop_settle_batches_retried",
                "Batches that failed as a whole and were run one confirmation at a time.",
                g.retried,
            ),
        ):
            yield CounterMetricFamily(name, documentation, value=value)
