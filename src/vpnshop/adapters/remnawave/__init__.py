"""Remnawave panel adapter: the ``VpnPanel`` port over the panel's REST API (2.3-2.8 and
3.x), and the verifier/parser of its signed webhooks. See docs/remnawave.md."""

from vpnshop.adapters.remnawave.client import PanelCallObserver, PanelCallOutcome
from vpnshop.adapters.remnawave.errors import (
    PanelBadResponseError,
    PanelConnectionDroppedError,
    PanelRateLimitedError,
    PanelTimeoutError,
    RemnawaveConfigError,
)
from vpnshop.adapters.remnawave.panel import RemnawavePanel
from vpnshop.adapters.remnawave.settings import RemnawaveSettings
from vpnshop.adapters.remnawave.webhooks import RemnawaveWebhookVerifier, VerifiedDelivery

__all__ = [
    "PanelBadResponseError",
    "PanelCallObserver",
    "PanelCallOutcome",
    "PanelConnectionDroppedError",
    "PanelRateLimitedError",
    "PanelTimeoutError",
    "RemnawaveConfigError",
    "RemnawavePanel",
    "RemnawaveSettings",
    "RemnawaveWebhookVerifier",
    "VerifiedDelivery",
]
