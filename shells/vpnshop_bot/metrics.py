"""The bot process's metrics (served at ``/metrics`` on ``VPNSHOP_BOT_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class BotMetrics:
    """Updates by type and handler, handler latency, errors; one registry per
    dispatcher so tests read their own numbers."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.updates = Counter(
            "vpnshop_bot_updates",
            "Updates handled, by type and handler.",
            ["type", "handler"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vpnshop_bot_handler_seconds",
            "Handler latency.",
            ["type", "handler"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.errors = Counter(
            "vpnshop_bot_errors",
            "Updates whose handler raised.",
            ["type"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "vpnshop_bot_dropped_updates",
            "Updates dropped before a handler, by reason (banned, throttled, channel).",
            ["reason"],
            registry=self.registry,
        )
