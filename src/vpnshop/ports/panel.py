"""The VPN panel port: where a customer's paid time becomes a working VPN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from vpnshop.domain.errors import DomainError
from vpnshop.domain.panel import (
    PanelAccess,
    PanelDevice,
    PanelInfo,
    PanelStats,
    PanelUser,
    Squad,
)
from vpnshop.domain.panel_events import PanelEvent


class PanelError(DomainError):
    """A panel call failed. ``vendor_code`` and ``vendor_message`` are the panel's own."""

    code = "panel_error"

    def __init__(
        self, message: str, *, vendor_code: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.vendor_code = vendor_code
        self.vendor_message = message
        self.status = status


class PanelNotFoundError(PanelError):
    code = "panel_not_found"


class PanelConflictError(PanelError):
    """The change conflicts with panel state (duplicate username, already enabled...)."""

    code = "panel_conflict"


class PanelInvalidError(PanelError):
    """The panel refused the request as invalid. Retrying will not help."""

    code = "panel_invalid"


class PanelUnauthorizedError(PanelError):
    code = "panel_unauthorized"


class PanelForbiddenError(PanelError):
    """The API token lacks the scope for this call."""

    code = "panel_forbidden"


class PanelUnavailableError(PanelError):
    """The panel could not be reached or failed (5xx, timeout, 429). Retry later."""

    code = "panel_unavailable"


class PanelNotOwnedError(PanelError):
    """The panel user is not linked to a shop subscription; the shop will not touch it."""

    code = "panel_not_owned"


class PanelVersionError(PanelError):
    """The panel's version is outside the supported range."""

    code = "panel_version"


class VpnPanel(Protocol):
    """A Remnawave-like panel. Every method raises a PanelError subclass on failure;
    transient failures (PanelUnavailableError) are already retried inside the adapter.
    Methods that take a ``key`` act only on users the shop owns (created by it or linked
    by an admin), and raise PanelNotOwnedError otherwise."""

    async def info(self) -> PanelInfo:
        """The panel's version and API line (detected once, then cached)."""
        ...

    async def apply(self, access: PanelAccess) -> PanelUser:
        """Create or update the user so that it matches *access*. Idempotent.

        An expiry in the past is never sent: such access is applied as DISABLED.
        """
        ...

    async def link(self, key: str) -> PanelUser:
        """Take ownership of a pre-existing panel user (an admin confirmed it): mark it
        with the shop's tag so that later calls may modify it."""
        ...

    async def get(self, key: str) -> PanelUser | None:
        """The user with this primary key, or None."""
        ...

    async def find_by_telegram_id(self, telegram_id: int) -> list[PanelUser]:
        """Every panel user carrying this Telegram id (owned or not; read-only)."""
        ...

    async def list_users(self, start: int = 0, size: int = 500) -> tuple[list[PanelUser], int]:
        """One page of every panel user (owned or not; read-only) and the total count.
        *size* is 1..1000; pages shift when users are added meanwhile."""
        ...

    async def enable(self, key: str) -> PanelUser:
        """Enable the user. Idempotent: enabling an enabled user is not an error."""
        ...

    async def disable(self, key: str) -> PanelUser:
        """Disable the user. Idempotent."""
        ...

    async def reset_traffic(self, key: str) -> PanelUser: ...

    async def revoke(self, key: str) -> PanelUser:
        """Issue a new subscription link; the old one stops working."""
        ...

    async def delete(self, key: str) -> None:
        """Delete the user. Idempotent: a missing user is not an error."""
        ...

    async def devices(self, key: str) -> list[PanelDevice]: ...

    async def remove_device(self, key: str, hwid: str) -> list[PanelDevice]:
        """Forget one device; returns the remaining ones."""
        ...

    async def squads(self) -> list[Squad]: ...

    async def stats(self) -> PanelStats: ...

    async def health(self) -> bool:
        """True when the panel answers an authenticated request."""
        ...


class PanelWebhookVerifier(Protocol):
    """Authenticates the panel's signed webhooks and parses them into domain events."""

    def parse(self, body: bytes, headers: Mapping[str, str]) -> PanelEvent:
        """Verify the signature, the timestamp window and replays, then parse. Raises
        WebhookSignatureError, ReplayedWebhookError or another PanelWebhookError."""
        ...

    def forget(self, dedupe_key: str) -> None:
        """Drop a delivery from the replay memory, so that the panel's retry of a
        delivery whose handling failed is processed."""
        ...
