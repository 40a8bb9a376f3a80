"""Events a VPN panel reports about its users (Remnawave webhooks), as the core sees them.

The Remnawave adapter verifies a delivery and parses it into one :class:`PanelEvent`; the
core decides what to do with it. Nothing here does I/O.

Expiry warnings come in two spellings depending on the panel version: 2.8+ and 3.x send
``user.expiration`` with ``meta.expiration`` in hours, older panels send
``user.expires_in_72_hours`` and friends. Both become :attr:`PanelEventType.USER_EXPIRATION`
with the same sign convention as the panel: a negative ``expiration_hours`` means "expires
in that many hours", a positive one means "expired that many hours ago".
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import attrs

from vpnshop.domain.errors import DomainError
from vpnshop.domain.panel import PanelDevice, PanelUser


class PanelEventType(enum.StrEnum):
    """What happened. Values are the panel's own event names (3.x spelling)."""

    USER_CREATED = "user.created"
    USER_MODIFIED = "user.modified"
    USER_DELETED = "user.deleted"
    USER_REVOKED = "user.revoked"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_LIMITED = "user.limited"  # traffic limit reached
    USER_EXPIRED = "user.expired"
    USER_TRAFFIC_RESET = "user.traffic_reset"
    USER_FIRST_CONNECTED = "user.first_connected"
    USER_BANDWIDTH_THRESHOLD = "user.bandwidth_usage_threshold_reached"
    USER_NOT_CONNECTED = "user.not_connected"
    USER_EXPIRATION = "user.expiration"  # an expiry warning (before or after the fact)
    DEVICE_ADDED = "user_hwid_devices.added"
    DEVICE_DELETED = "user_hwid_devices.deleted"
    IGNORED = "ignored"  # accepted, but the shop has nothing to do (node.*, service.*, ...)


#: The pre-2.8 expiry warnings and the ``meta.expiration`` value 2.8+ would send instead.
LEGACY_EXPIRATION_EVENTS: dict[str, int] = {
    "user.expires_in_72_hours": -72,
    "user.expires_in_48_hours": -48,
    "user.expires_in_24_hours": -24,
    "user.expired_24_hours_ago": 24,
}


@attrs.frozen
class PanelEvent:
    """One panel webhook delivery, verified and parsed.

    ``dedupe_key`` identifies the delivery (it is derived from the signature, so a panel
    retry of the same payload has the same key); store it to make handling idempotent.
    ``name`` is the event name exactly as the panel sent it (``user.expires_in_24_hours``
    for an old panel, for instance), ``type`` the normalised kind.
    """

    type: PanelEventType
    name: str
    occurred_at: datetime
    dedupe_key: str
    scope: str | None = None
    user: PanelUser | None = None
    device: PanelDevice | None = None
    #: USER_EXPIRATION only: < 0 expires in that many hours, > 0 expired that long ago.
    expiration_hours: int | None = None
    #: USER_NOT_CONNECTED only: ``meta.notConnectedAfterHours``.
    not_connected_hours: int | None = None
    #: USER_BANDWIDTH_THRESHOLD only: the threshold (percent) the user crossed.
    threshold_percent: int | None = None

    @property
    def ignored(self) -> bool:
        return self.type is PanelEventType.IGNORED

    @property
    def user_key(self) -> str | None:
        return self.user.key if self.user is not None else None

    @property
    def expires_in(self) -> timedelta | None:
        """For an expiry warning, the time left (negative once expired)."""
        if self.expiration_hours is None:
            return None
        return timedelta(hours=-self.expiration_hours)


class PanelWebhookError(DomainError):
    """A panel webhook delivery was refused. The shell answers 4xx unless told otherwise."""

    code = "panel_webhook_invalid"


class WebhookSignatureError(PanelWebhookError):
    """The signature header is missing or does not match the raw body. Answer 401/403."""

    code = "panel_webhook_signature"


class WebhookTimestampError(PanelWebhookError):
    """The timestamp is missing, unreadable, outside the accepted window, or differs from
    the signed payload's own timestamp. Answer 4xx."""

    code = "panel_webhook_stale"


class ReplayedWebhookError(PanelWebhookError):
    """This exact delivery was already accepted within the window.

    Not an attack signal on its own (the panel retries a delivery whose answer it did not
    get): the shell answers **2xx** and does nothing.
    """

    code = "panel_webhook_replayed"

    def __init__(self, message: str, *, dedupe_key: str) -> None:
        super().__init__(message)
        self.dedupe_key = dedupe_key


class MalformedWebhookError(PanelWebhookError):
    """The body is signed correctly but is not a webhook payload the parser understands
    (not JSON, no event name, a user event without a readable user). Answer 400."""

    code = "panel_webhook_malformed"
