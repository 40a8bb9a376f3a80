"""The emulator's records, constants and small helpers: what a panel stores and the
patterns it reports in validation issues."""

from __future__ import annotations

import re
import secrets
import string
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from aiohttp import web

STATUSES = ("ACTIVE", "DISABLED", "LIMITED", "EXPIRED")
STRATEGIES_OLD = ("NO_RESET", "DAY", "WEEK", "MONTH")
STRATEGIES_NEW = (*STRATEGIES_OLD, "MONTH_ROLLING")
LEGACY_EXPIRATION = {
    -72: "user.expires_in_72_hours",
    -48: "user.expires_in_48_hours",
    -24: "user.expires_in_24_hours",
    24: "user.expired_24_hours_ago",
}

# Patterns as the panel reports them in validation issues.
USERNAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
TAG_RE = re.compile(r"^[A-Z0-9_]+$")
HWID_RE = re.compile(r"^[a-zA-Z0-9=-]{10,64}$")
EMAIL_RE = re.compile(
    r"^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$"
)
EMAIL_PATTERN = (
    r"/^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+"
    r"[A-Za-z]{2,}$/"
)
UUID_RE = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    r"|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$"
)
UUID_PATTERN = "/" + UUID_RE.pattern + "/"
DATETIME_RE = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d"
    r"(:[0-5]\d(\.\d+)?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?$"
)
DATETIME_PATTERN = (
    r"/^(?:(?:\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29|"
    r"\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|"
    r"(?:02)-(?:0[1-9]|1\d|2[0-8])))T(?:(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?"
    r"(?:Z||([+-](?:[01]\d|2[0-3]):[0-5]\d)))$/"
)
_ALNUM = string.ascii_letters + string.digits
_SHORT = _ALNUM + "_-"
PLACEHOLDER_LINKS = [
    "vless://00000000-0000-0000-0000-000000000000@0.0.0.0:1?encryption=none&type=tcp"
    f"&security=none#%E2%86%92%20{label}"
    for label in (
        "Remnawave",
        "No%20hosts%20found",
        "Check%20Hosts%20tab",
        "Check%20Internal%20Squads%20tab",
    )
]


def _version(text: str) -> tuple[int, int, int]:
    match = re.match(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not match:
        raise ValueError(f"unreadable version {text!r}")
    major, minor, patch = (int(g) if g is not None else 0 for g in match.groups())
    return (major, minor, patch)


def iso(value: datetime | None) -> str | None:
    """The panel's timestamp format: UTC, milliseconds, Z."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _ms(value: datetime) -> datetime:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _parse_dt(text: str) -> datetime:
    t = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    parsed = datetime.fromisoformat(t)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _ms(parsed)


def _rand(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


class ManualClock:
    """A settable clock (``now()``), shared by a test, the emulator and the adapter."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, value: datetime) -> None:
        self._now = value

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now


@attrs.define
class EmuDevice:
    hwid: str
    platform: str | None = None
    os_version: str | None = None
    device_model: str | None = None
    user_agent: str | None = None
    request_ip: str | None = None
    created_at: datetime = attrs.field(factory=lambda: datetime.now(UTC))
    updated_at: datetime = attrs.field(factory=lambda: datetime.now(UTC))


@attrs.define
class EmuUser:
    """One panel user as the emulator stores it (both keys, every field)."""

    id: int
    uuid: str
    short_uuid: str
    username: str
    expire_at: datetime
    created_at: datetime
    updated_at: datetime
    status: str = "ACTIVE"
    traffic_limit_bytes: int = 0
    traffic_limit_strategy: str = "NO_RESET"
    telegram_id: int | None = None
    email: str | None = None
    description: str | None = None
    tag: str | None = None
    hwid_device_limit: int | None = None
    external_squad_uuid: str | None = None
    trojan_password: str = attrs.field(factory=lambda: _rand(_SHORT, 32))
    vless_uuid: str = attrs.field(factory=lambda: str(uuidlib.uuid4()))
    ss_password: str = attrs.field(factory=lambda: _rand(_SHORT, 32))
    last_triggered_threshold: int = 0
    sub_revoked_at: datetime | None = None
    last_traffic_reset_at: datetime | None = None
    internal_squads: list[str] = attrs.field(factory=list)
    used_traffic_bytes: int = 0
    lifetime_used_traffic_bytes: int = 0
    online_at: datetime | None = None
    last_connected_node_uuid: str | None = None
    first_connected_at: datetime | None = None
    sub_last_user_agent: str | None = None
    sub_last_opened_at: datetime | None = None
    devices: list[EmuDevice] = attrs.field(factory=list)


@attrs.define
class EmuSquad:
    uuid: str
    name: str
    view_position: int
    created_at: datetime
    inbound_uuid: str = attrs.field(factory=lambda: str(uuidlib.uuid4()))


@attrs.define
class SentWebhook:
    """One webhook the emulator produced (and, when a URL is configured, delivered)."""

    event: str
    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]
    status: int | None = None
    error: str | None = None
    attempts: int = 0


@attrs.define
class RecordedRequest:
    method: str
    path: str  # relative to the server root, e.g. "/api/users"
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@attrs.define
class _Fault:
    method: str | None
    pattern: re.Pattern[str]
    status: int
    remaining: int | None
    body: Any
    headers: dict[str, str]
    drop: bool
    hang: bool


class _ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@attrs.define
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[_Ctx, re.Match[str]], Awaitable[web.StreamResponse]]
    scope: str  # e.g. "users:create"
    public: bool = False


@attrs.define
class _Ctx:
    request: web.Request
    path: str  # relative to /api
    query: Mapping[str, str]
    body: Any
    raw_body: bytes


_MISSING = object()
