"""Verify and parse Remnawave webhook deliveries.

The panel POSTs ``JSON.stringify(payload)`` with

* ``X-Remnawave-Signature``: hex HMAC-SHA256 of the **raw body bytes**, keyed with the
  panel's ``WEBHOOK_SECRET_HEADER``;
* ``X-Remnawave-Timestamp``: the payload's ``timestamp`` (not itself signed).

Typical use in the webhook shell::

    verifier = RemnawaveWebhookVerifier(secret, clock=clock)
    try:
        event = verifier.parse(await request.read(), request.headers)
    except ReplayedWebhookError:
        return 200                      # already handled
    except WebhookSignatureError:
        return 401
    except PanelWebhookError:
        return 400
    try:
        await handle(event)             # may also dedupe on event.dedupe_key in the DB
    except Exception:
        verifier.forget(event.dedupe_key)   # let the panel's retry through
        raise

Since the timestamp header is unsigned, the window is enforced on the *signed*
``timestamp`` inside the body, and a header that disagrees with it is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from vpnshop.adapters.payments._input import BIGINT_MAX, load_json, shown
from vpnshop.adapters.remnawave.errors import RemnawaveConfigError
from vpnshop.adapters.remnawave.mapping import (
    MappingError,
    device_from_panel,
    parse_dt,
    user_from_panel,
)
from vpnshop.domain.panel import PanelDevice, PanelUser
from vpnshop.domain.panel_events import (
    LEGACY_EXPIRATION_EVENTS,
    MalformedWebhookError,
    PanelEvent,
    PanelEventType,
    PanelWebhookError,
    ReplayedWebhookError,
    WebhookSignatureError,
    WebhookTimestampError,
)
from vpnshop.ports.clock import Clock

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "MalformedWebhookError",
    "PanelWebhookError",
    "RemnawaveWebhookVerifier",
    "ReplayedWebhookError",
    "VerifiedDelivery",
    "WebhookSignatureError",
    "WebhookTimestampError",
    "parse_event",
    "sign",
]

SIGNATURE_HEADER = "X-Remnawave-Signature"
TIMESTAMP_HEADER = "X-Remnawave-Timestamp"
_KNOWN = {t.value: t for t in PanelEventType if t is not PanelEventType.IGNORED}


def sign(secret: str, body: bytes) -> str:
    """The signature the panel puts in ``X-Remnawave-Signature`` for *body*."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                value = candidate
                break
    return value.strip() if isinstance(value, str) else None


@attrs.frozen
class VerifiedDelivery:
    """A delivery whose signature, timestamp and freshness were checked."""

    payload: Mapping[str, Any] = attrs.field(eq=False, hash=False)
    signature: str
    timestamp: datetime

    @property
    def dedupe_key(self) -> str:
        """Stable id of this delivery (the panel's retries of it share it)."""
        return f"remnawave:{self.signature}"


class _CallableClock:
    def __init__(self, fn: Callable[[], datetime]) -> None:
        self._fn = fn

    def now(self) -> datetime:
        return self._fn()


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class RemnawaveWebhookVerifier:
    """Checks ``X-Remnawave-Signature`` (constant time), the timestamp window and replays.

    A replay is the same signature seen again within the window: it raises
    :class:`ReplayedWebhookError` (answer 2xx). The memory of seen signatures is bounded
    (``max_remembered``) and in-process; for several processes, also dedupe on
    :attr:`PanelEvent.dedupe_key` in the database.
    """

    def __init__(
        self,
        secret: str | None,
        *,
        window: timedelta = timedelta(minutes=5),
        clock: Clock | Callable[[], datetime] | None = None,
        max_remembered: int = 10_000,
    ) -> None:
        if not secret or not secret.strip():
            raise RemnawaveConfigError(
                "the Remnawave webhook secret (the panel's WEBHOOK_SECRET_HEADER) is not set; "
                "unsigned panel webhooks are never accepted"
            )
        if window <= timedelta(0):
            raise RemnawaveConfigError("the webhook timestamp window must be positive")
        if max_remembered < 1:
            raise RemnawaveConfigError("max_remembered must be at least 1")
        self._key = secret.encode("utf-8")
        self._window = window
        if clock is None:
            self._clock: Clock = _UtcClock()
        elif hasattr(clock, "now"):
            self._clock = clock
        else:
            self._clock = _CallableClock(clock)
        self._max = max_remembered
        self._seen: OrderedDict[str, datetime] = OrderedDict()

    def __repr__(self) -> str:
        return f"RemnawaveWebhookVerifier(window={self._window}, remembered={len(self._seen)})"

    @property
    def window(self) -> timedelta:
        return self._window

    # -- replay memory --------------------------------------------------------------
    def _prune(self, now: datetime) -> None:
        horizon = now - self._window
        while self._seen:
            _key, seen_at = next(iter(self._seen.items()))
            if seen_at >= horizon and len(self._seen) <= self._max:
                break
            self._seen.popitem(last=False)

    def seen(self, dedupe_key: str) -> bool:
        return dedupe_key in self._seen

    def forget(self, dedupe_key: str) -> None:
        """Drop a delivery from the replay memory (its handling failed; let the panel's
        retry through)."""
        self._seen.pop(dedupe_key, None)

    # -- verification ---------------------------------------------------------------
    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedDelivery:
        """Check one delivery; raise a :class:`PanelWebhookError` subclass when refused."""
        signature = (_header(headers, SIGNATURE_HEADER) or "").lower()
        if not signature:
            raise WebhookSignatureError(f"the {SIGNATURE_HEADER} header is missing")
        expected = hmac.new(self._key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
            raise WebhookSignatureError("the webhook signature does not match the body")

        # Depth, NUL, surrogates, non-finite numbers: the same rules as every payment webhook.
        payload = load_json(body, "the webhook body", error=MalformedWebhookError)
        if not isinstance(payload, dict):
            raise MalformedWebhookError("the webhook body is not a JSON object")

        header_ts = _header(headers, TIMESTAMP_HEADER)
        if not header_ts:
            raise WebhookTimestampError(f"the {TIMESTAMP_HEADER} header is missing")
        try:
            stamped = parse_dt(header_ts)
            signed = parse_dt(payload["timestamp"]) if "timestamp" in payload else stamped
        except (MappingError, OverflowError) as exc:
            raise WebhookTimestampError(f"unreadable webhook timestamp: {exc}") from exc
        if signed != stamped:
            raise WebhookTimestampError(
                f"the {TIMESTAMP_HEADER} header ({header_ts}) differs from the signed "
                f"payload timestamp ({payload.get('timestamp')})"
            )
        now = self._clock.now()
        if abs(now - signed) > self._window:
            raise WebhookTimestampError(
                f"webhook timestamp {header_ts} is outside the accepted window of "
                f"{self._window} around {now.isoformat()}"
            )

        delivery = VerifiedDelivery(payload=payload, signature=signature, timestamp=signed)
        self._prune(now)
        key = delivery.dedupe_key
        if key in self._seen:
            raise ReplayedWebhookError("this webhook delivery was already accepted", dedupe_key=key)
        self._seen[key] = now
        self._prune(now)
        return delivery

    def parse(self, body: bytes, headers: Mapping[str, str]) -> PanelEvent:
        """Verify, then parse into a domain event. A delivery that verifies but cannot be
        parsed is forgotten again, so the replay memory never hides a fixed parser."""
        delivery = self.verify(body, headers)
        try:
            return parse_event(delivery.payload, dedupe_key=delivery.dedupe_key)
        except PanelWebhookError:
            self.forget(delivery.dedupe_key)
            raise


def _user(data: Any, event: str) -> PanelUser:
    try:
        return user_from_panel(data)
    except (MappingError, OverflowError) as exc:  # Overflow: a date at the calendar's edge
        raise MalformedWebhookError(f"{event}: unreadable user: {exc}") from exc


def _device(data: Any, event: str) -> PanelDevice:
    try:
        return device_from_panel(data)
    except (MappingError, OverflowError) as exc:
        raise MalformedWebhookError(f"{event}: unreadable device: {exc}") from exc


def _meta_int(meta: Any, name: str, event: str, required: bool) -> int | None:
    value = meta.get(name) if isinstance(meta, Mapping) else None
    if value is None:
        if required:
            raise MalformedWebhookError(f"{event}: meta.{name} is missing")
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value != int(value)
        or not -BIGINT_MAX <= value <= BIGINT_MAX
    ):
        raise MalformedWebhookError(f"{event}: meta.{name} must be an integer, got {shown(value)}")
    return int(value)


def parse_event(payload: Mapping[str, Any], *, dedupe_key: str) -> PanelEvent:
    """A verified webhook payload of any supported panel version as a :class:`PanelEvent`.

    Unknown events (``node.*``, ``service.*``, ``errors.*``, new ones) become an
    :attr:`PanelEventType.IGNORED` event: accepted, nothing to do.
    """
    name = payload.get("event")
    if not isinstance(name, str) or not name:
        raise MalformedWebhookError("the webhook payload has no event name")
    scope = payload.get("scope")
    scope = scope if isinstance(scope, str) else name.split(".", 1)[0]  # no scope before 2.5
    try:
        occurred_at = parse_dt(payload.get("timestamp"))
    except (MappingError, OverflowError) as exc:
        raise MalformedWebhookError(f"{name}: {exc}") from exc
    data = payload.get("data")
    meta = payload.get("meta")  # absent before 2.4, null for most events

    if name in LEGACY_EXPIRATION_EVENTS:
        return PanelEvent(
            type=PanelEventType.USER_EXPIRATION,
            name=name,
            occurred_at=occurred_at,
            dedupe_key=dedupe_key,
            scope=scope,
            user=_user(data, name),
            expiration_hours=LEGACY_EXPIRATION_EVENTS[name],
        )
    kind = _KNOWN.get(name)
    if kind is None:
        return PanelEvent(
            type=PanelEventType.IGNORED,
            name=name,
            occurred_at=occurred_at,
            dedupe_key=dedupe_key,
            scope=scope,
        )
    if kind in (PanelEventType.DEVICE_ADDED, PanelEventType.DEVICE_DELETED):
        if not isinstance(data, Mapping):
            raise MalformedWebhookError(f"{name}: data is not an object")
        return PanelEvent(
            type=kind,
            name=name,
            occurred_at=occurred_at,
            dedupe_key=dedupe_key,
            scope=scope,
            user=_user(data.get("user"), name),
            device=_device(data.get("hwidUserDevice"), name),
        )
    user = _user(data, name)
    threshold = None
    if kind is PanelEventType.USER_BANDWIDTH_THRESHOLD and isinstance(data, Mapping):
        raw = data.get("lastTriggeredThreshold")
        if isinstance(raw, int | float) and not isinstance(raw, bool) and 0 <= raw <= 10_000:
            threshold = int(raw)  # a percentage; nan and inf fail the range test
    return PanelEvent(
        type=kind,
        name=name,
        occurred_at=occurred_at,
        dedupe_key=dedupe_key,
        scope=scope,
        user=user,
        expiration_hours=_meta_int(
            meta, "expiration", name, required=kind is PanelEventType.USER_EXPIRATION
        )
        if kind is PanelEventType.USER_EXPIRATION
        else None,
        not_connected_hours=_meta_int(meta, "notConnectedAfterHours", name, required=False)
        if kind is PanelEventType.USER_NOT_CONNECTED
        else None,
        threshold_percent=threshold,
    )
