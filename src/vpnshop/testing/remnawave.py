"""A Remnawave panel emulator for tests: an aiohttp server that behaves like the real panel
for everything the shop uses, on either API line.

Calibrated on the recordings of a real 3.3.2 panel (see the contract tests that replay
them) and on the panel's published contract for older versions:

* ``version`` decides routes, shapes and metadata: 3.x keys users by numeric ``id`` and
  answers ``DELETE`` with 204; 2.3-2.8 key them by ``uuid``; ``/system/metadata`` and
  ``/users/stream`` exist from 2.8, ``/users/resolve`` and ``MONTH_ROLLING`` from 2.7,
  ``/users/by-id`` on 2.3-2.8, ``/users/by-telegram-id`` before 3.0 (404 A062 when empty
  before 2.4); 2.x validation errors use zod v3 issues, 3.x zod v4 issues.
* the proxy check: without ``X-Forwarded-For`` and ``X-Forwarded-Proto: https`` the
  connection is closed with no response (``require_forwarded_headers``, on by default);
* 401 without a valid token, optional token scopes (2.8+);
* signed webhooks (``X-Remnawave-Signature`` = hex HMAC-SHA256 of the exact raw body) for
  every change, to ``webhook_url``;
* the expiry scheduler: on a 30 s tick (at :00 and :30) ACTIVE users whose expiry passed
  become EXPIRED (evaluated lazily, so a manual clock works);
* fault knobs: ``error_rate``, ``latency``, ``hang``, ``down``, ``drop_connections`` and
  :meth:`RemnawaveEmulator.fail` for a given status on a given route.

Test helpers (:meth:`add_user`, :meth:`set_traffic_used`, :meth:`add_hwid_device`,
:meth:`set_expire_at`, :meth:`notify_expiration`, ...) change state directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import string
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import aiohttp
import attrs
from aiohttp import web

__all__ = ["EmuDevice", "EmuUser", "ManualClock", "RemnawaveEmulator", "SentWebhook"]

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


# -- validation issues (zod v4 for 3.x, zod v3 for 2.x) --------------------------------
class _Issues:
    def __init__(self, v4: bool) -> None:
        self.v4 = v4
        self.items: list[dict[str, Any]] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def invalid_type(self, path: list[Any], expected: str, received: str) -> None:
        if self.v4:
            issue: dict[str, Any] = {"expected": expected, "code": "invalid_type"}
            if received == "NaN":
                issue["received"] = "NaN"
            issue["path"] = path
            issue["message"] = f"Invalid input: expected {expected}, received {received}"
        else:
            issue = {
                "code": "invalid_type",
                "expected": expected,
                "received": "nan" if received == "NaN" else received,
                "path": path,
                "message": "Required"
                if received == "undefined"
                else f"Expected {expected}, received {received}",
            }
        self.items.append(issue)

    def fmt(self, path: list[Any], fmt: str, pattern: str, message: str) -> None:
        if self.v4:
            self.items.append(
                {
                    "origin": "string",
                    "code": "invalid_format",
                    "format": fmt,
                    "pattern": pattern,
                    "path": path,
                    "message": message,
                }
            )
        else:
            self.items.append(
                {
                    "validation": fmt,
                    "code": "invalid_string",
                    "message": message,
                    "path": path,
                }
            )

    def small(self, path: list[Any], origin: str, minimum: int, message: str | None = None) -> None:
        if self.v4:
            default = (
                f"Too small: expected string to have >={minimum} characters"
                if origin == "string"
                else f"Too small: expected number to be >={minimum}"
            )
            self.items.append(
                {
                    "origin": origin,
                    "code": "too_small",
                    "minimum": minimum,
                    "inclusive": True,
                    "path": path,
                    "message": message or default,
                }
            )
        else:
            self.items.append(
                {
                    "code": "too_small",
                    "minimum": minimum,
                    "type": origin,
                    "inclusive": True,
                    "exact": False,
                    "message": message or f"Number must be greater than or equal to {minimum}",
                    "path": path,
                }
            )

    def big(self, path: list[Any], origin: str, maximum: int, message: str | None = None) -> None:
        if self.v4:
            default = (
                f"Too big: expected string to have <={maximum} characters"
                if origin == "string"
                else f"Too big: expected number to be <={maximum}"
            )
            self.items.append(
                {
                    "origin": origin,
                    "code": "too_big",
                    "maximum": maximum,
                    "inclusive": True,
                    "path": path,
                    "message": message or default,
                }
            )
        else:
            self.items.append(
                {
                    "code": "too_big",
                    "maximum": maximum,
                    "type": origin,
                    "inclusive": True,
                    "exact": False,
                    "message": message or f"Number must be less than or equal to {maximum}",
                    "path": path,
                }
            )

    def enum(self, path: list[Any], values: tuple[str, ...], received: Any) -> None:
        if self.v4:
            joined = "|".join(f'"{v}"' for v in values)
            self.items.append(
                {
                    "code": "invalid_value",
                    "values": list(values),
                    "path": path,
                    "message": f"Invalid option: expected one of {joined}",
                }
            )
        else:
            joined = " | ".join(f"'{v}'" for v in values)
            self.items.append(
                {
                    "received": received,
                    "code": "invalid_enum_value",
                    "options": list(values),
                    "path": path,
                    "message": f"Invalid enum value. Expected {joined}, received '{received}'",
                }
            )

    def custom(self, path: list[Any], message: str) -> None:
        self.items.append(
            {"code": "custom", "path": path, "message": message}
            if self.v4
            else {"code": "custom", "message": message, "path": path}
        )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_MISSING = object()


class RemnawaveEmulator:
    """The fake panel. ``async with RemnawaveEmulator() as panel: panel.base_url ...``"""

    def __init__(
        self,
        version: str = "3.3.2",
        *,
        token: str = "emulator-token",  # noqa: S107 (a test token)
        token_scopes: list[str] | None = None,
        require_forwarded_headers: bool = True,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_attempts: int = 3,
        webhook_retry_delay: float = 5.0,
        duplicate_username_code: str = "A019",
        sub_public_domain: str = "panel.example.test/api/sub",
        default_squad_uuid: str | None = None,
        first_id: int = 1,
        clock: Any = None,
        auto_expire: bool = True,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if duplicate_username_code not in ("A019", "A018"):
            raise ValueError("duplicate_username_code is 'A019' (stock) or 'A018' (local build)")
        self.version = version
        self.v = _version(version)
        self.tokens: dict[str, list[str]] = {token: list(token_scopes or ["*"])}
        self.token = token
        self.require_forwarded_headers = require_forwarded_headers
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_attempts = webhook_attempts
        self.webhook_retry_delay = webhook_retry_delay
        self.duplicate_username_code = duplicate_username_code
        self.sub_public_domain = sub_public_domain
        self.auto_expire = auto_expire
        self._clock = clock
        self._rng = random.Random(seed)
        self._host, self._port = host, port

        # fault knobs
        self.error_rate = 0.0
        self.latency = 0.0
        self.down = False
        self.drop_connections = False
        self._hang = False
        self._released = asyncio.Event()
        self._released.set()
        self._faults: list[_Fault] = []

        # state
        self._next_id = first_id
        self.users_by_id: dict[int, EmuUser] = {}
        now = self.now()
        self.squads: list[EmuSquad] = [
            EmuSquad(default_squad_uuid or str(uuidlib.uuid4()), "Default-Squad", 1, now)
        ]
        self.external_squads: dict[str, str] = {}
        self.requests: list[RecordedRequest] = []
        self.webhooks: list[SentWebhook] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self._last_tick = self._tick_floor(now)
        self._started_at = now

        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self.base_url = ""
        self._routes = self._build_routes()

    # -- features by version ----------------------------------------------------------
    @property
    def line3(self) -> bool:
        return self.v >= (3, 0, 0)

    @property
    def v4_issues(self) -> bool:
        return self.line3

    @property
    def default_squad_uuid(self) -> str:
        return self.squads[0].uuid

    def has(self, since: tuple[int, int, int], before: tuple[int, int, int] | None = None) -> bool:
        return self.v >= since and (before is None or self.v < before)

    # -- life cycle -------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._entry)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port)
        await self._site.start()
        server = self._site._server
        assert server is not None
        sock = server.sockets[0]  # type: ignore[attr-defined]
        host, port = sock.getsockname()[:2]
        self._port = port
        self.base_url = f"http://{host}:{port}"
        self._session = aiohttp.ClientSession()
        return self.base_url

    async def close(self) -> None:
        self._released.set()
        for task in list(self._deliveries):
            task.cancel()
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> RemnawaveEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- time -------------------------------------------------------------------------
    def now(self) -> datetime:
        if self._clock is None:
            value = datetime.now(UTC)
        elif hasattr(self._clock, "now"):
            value = self._clock.now()
        else:
            value = self._clock()
        return _ms(value)

    @staticmethod
    def _tick_floor(value: datetime) -> datetime:
        return value.replace(second=0 if value.second < 30 else 30, microsecond=0)

    def _run_scheduler(self) -> None:
        """The panel's 30 s cron: expire ACTIVE users whose expiry is at or before the
        latest tick. Evaluated lazily (on each request and helper call)."""
        if not self.auto_expire:
            return
        tick = self._tick_floor(self.now())
        if tick <= self._last_tick:
            return
        self._last_tick = tick
        self._expire(tick)

    def _expire(self, until: datetime) -> list[EmuUser]:
        expired = []
        for user in sorted(self.users_by_id.values(), key=lambda u: u.id):
            if user.status == "ACTIVE" and user.expire_at <= until:
                user.status = "EXPIRED"
                user.updated_at = self.now()
                self._emit_user("user.expired", user)
                expired.append(user)
        return expired

    # -- knobs ------------------------------------------------------------------------
    @property
    def hang(self) -> bool:
        return self._hang

    @hang.setter
    def hang(self, value: bool) -> None:
        self._hang = value
        if value:
            self._released.clear()
        else:
            self._released.set()

    def fail(
        self,
        path: str,
        status: int = 500,
        *,
        method: str | None = None,
        times: int | None = 1,
        error_code: str | None = None,
        message: str | None = None,
        body: Any = _MISSING,
        retry_after: float | None = None,
        drop: bool = False,
        hang: bool = False,
    ) -> None:
        """Answer requests whose path (relative to ``/api``, no query) fully matches the
        regex *path* with *status* (``times`` times; None = until :meth:`clear_faults`).
        ``drop`` closes the connection with no answer, ``hang`` never answers."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        self._faults.append(
            _Fault(
                method=method.upper() if method else None,
                pattern=re.compile(path),
                status=status,
                remaining=times,
                body=body,
                headers=headers,
                drop=drop,
                hang=hang,
            )
        )
        if error_code is not None or message is not None:
            fault = self._faults[-1]
            fault.body = {
                "errorCode": error_code or "A001",
                "message": message or "Internal server error",
            }

    def clear_faults(self) -> None:
        self._faults.clear()

    def add_token(self, token: str, scopes: list[str] | None = None) -> None:
        self.tokens[token] = list(scopes or ["*"])

    # -- the HTTP entry ---------------------------------------------------------------
    async def _entry(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=raw,
            )
        )
        if self.drop_connections:
            return self._drop(request)
        if self.down:
            return web.Response(status=503, text="Service Unavailable", content_type="text/plain")
        if self.require_forwarded_headers and (
            not request.headers.get("X-Forwarded-For")
            or request.headers.get("X-Forwarded-Proto") != "https"
        ):
            return self._drop(request)  # proxyCheckMiddleware destroys the socket
        if self._hang:
            await self._released.wait()
        if self.latency:
            await asyncio.sleep(self.latency)

        path = request.path
        rel = path[4:] if path.startswith("/api/") or path == "/api" else None
        fault = self._match_fault(request.method, rel if rel is not None else path)
        if fault is not None:
            if fault.hang:
                await asyncio.Event().wait()  # until the client gives up / server closes
            if fault.drop:
                return self._drop(request)
            return self._fault_response(fault, request)
        if self.error_rate and self._rng.random() < self.error_rate:
            return self._json(500, self._biz_body(request, "A001", "Internal server error"))

        self._run_scheduler()
        if rel is None:
            return self._not_found(request)
        route, match = self._route(request.method, rel)
        if route is None or match is None:
            return self._not_found(request)

        body: Any = None
        if request.method in ("POST", "PATCH", "PUT") and raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                return self._json(
                    400,
                    {
                        "message": self._json_error_message(raw, exc),
                        "error": "Bad Request",
                        "statusCode": 400,
                    },
                )
        if not route.public:
            denied = self._authorize(request, route)
            if denied is not None:
                return denied
        ctx = _Ctx(request=request, path=rel, query=request.query, body=body, raw_body=raw)
        try:
            return await route.handler(ctx, match)
        except _ApiError as exc:
            return self._json(exc.status, exc.body)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.close()
        raise asyncio.CancelledError  # aiohttp stops handling; the client sees no answer

    def _match_fault(self, method: str, rel: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method not in (None, method):
                continue
            if not fault.pattern.fullmatch(rel):
                continue
            if fault.remaining is not None:
                if fault.remaining <= 0:
                    continue
                fault.remaining -= 1
            return fault
        return None

    def _fault_response(self, fault: _Fault, request: web.Request) -> web.StreamResponse:
        body = fault.body
        if body is _MISSING:
            if fault.status == 429:
                body = {"message": "ThrottlerException: Too Many Requests", "statusCode": 429}
            elif fault.status >= 500:
                body = self._biz_body(request, "A001", "Internal server error")
            else:
                body = self._biz_body(request, "E000", "Injected error")
        elif isinstance(body, dict) and set(body) == {"errorCode", "message"}:
            body = self._biz_body(request, body["errorCode"], body["message"])
        if isinstance(body, bytes | str):
            return web.Response(status=fault.status, body=body, headers=fault.headers)
        resp = self._json(fault.status, body)
        resp.headers.update(fault.headers)
        return resp

    def _authorize(self, request: web.Request, route: _Route) -> web.StreamResponse | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        scopes = self.tokens.get(token) if token else None
        if scopes is None:
            return self._json(401, {"message": "Unauthorized", "statusCode": 401})
        if self.has((2, 8, 0)) and "*" not in scopes:
            resource, _, _name = route.scope.partition(":")
            kind = "read" if route.method == "GET" else "write"
            allowed = {f"{resource}:*", f"{resource}:{kind}", route.scope}
            if not allowed & set(scopes):
                return self._json(
                    403, {"message": "Forbidden resource", "error": "Forbidden", "statusCode": 403}
                )
        return None

    @staticmethod
    def _json_error_message(raw: bytes, exc: Exception) -> str:
        pos = getattr(exc, "pos", 0)
        text = raw.decode("utf-8", "replace")
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        if "property name" in str(exc):
            return (
                f"Expected property name or '}}' in JSON at position {pos} "
                f"(line {line} column {col})"
            )
        return f"Unexpected token in JSON at position {pos} (line {line} column {col})"

    @staticmethod
    def _json(status: int, body: Any) -> web.Response:
        return web.json_response(body, status=status)

    def _not_found(self, request: web.Request) -> web.Response:
        return self._json(
            404,
            {
                "message": f"Cannot {request.method} {request.path}",
                "error": "Not Found",
                "statusCode": 404,
            },
        )

    def _biz_body(self, request: web.Request, code: str, message: str) -> dict[str, Any]:
        return {
            "timestamp": iso(self.now()),
            "path": request.path_qs,
            "message": message,
            "errorCode": code,
        }

    def _biz(self, ctx: _Ctx, status: int, code: str, message: str) -> _ApiError:
        return _ApiError(status, self._biz_body(ctx.request, code, message))

    def _invalid(self, issues: _Issues) -> _ApiError:
        return _ApiError(
            400, {"statusCode": 400, "message": "Validation failed", "errors": issues.items}
        )

    def _ok(self, payload: Any, status: int = 200) -> web.Response:
        return self._json(status, {"response": payload})

    # -- routes -----------------------------------------------------------------------
    def _route(self, method: str, rel: str) -> tuple[_Route | None, re.Match[str] | None]:
        for route in self._routes:
            if route.method != method:
                continue
            match = route.pattern.fullmatch(rel)
            if match is not None:
                return route, match
        return None, None

    def _build_routes(self) -> list[_Route]:
        r: list[_Route] = []

        def add(method: str, pattern: str, handler: Any, scope: str, public: bool = False) -> None:
            r.append(_Route(method, re.compile(pattern), handler, scope, public))

        seg = r"(?P<v>[^/]+)"
        if self.has((2, 0, 0)):
            add("GET", r"/internal-squads", self._h_squads, "internal-squads:list")
        add("GET", r"/users", self._h_list, "users:list")
        add("POST", r"/users", self._h_create, "users:create")
        add("PATCH", r"/users", self._h_update, "users:update")
        if self.has((2, 8, 0)):
            add("GET", r"/users/stream", self._h_stream, "users:stream")
        if self.has((2, 7, 0)):
            add("POST", r"/users/resolve", self._h_resolve, "users:resolve")
        add("GET", rf"/users/by-username/{seg}", self._h_by_username, "users:by-username")
        add("GET", rf"/users/by-short-uuid/{seg}", self._h_by_short, "users:by-short-uuid")
        if self.has((2, 3, 0), (3, 0, 0)):
            add("GET", rf"/users/by-id/{seg}", self._h_by_id, "users:by-id")
        if not self.line3:
            add("GET", rf"/users/by-telegram-id/{seg}", self._h_by_tg, "users:by-telegram-id")
        for action in ("enable", "disable", "reset-traffic", "revoke"):
            add(
                "POST",
                rf"/users/{seg}/actions/{action}",
                self._action(action),
                f"users:{'revoke-subscription' if action == 'revoke' else action}",
            )
        if self.line3:
            add("POST", rf"/users/{seg}/actions/extend", self._action("extend"), "users:extend")
        add("GET", rf"/users/{seg}", self._h_get, "users:by-id")
        add("DELETE", rf"/users/{seg}", self._h_delete, "users:delete")
        add("GET", rf"/sub/{seg}/info", self._h_sub_info, "sub:info", public=True)
        add(
            "GET",
            rf"/subscriptions/by-username/{seg}",
            self._h_subscription("username"),
            "subscriptions:by-username",
        )
        add(
            "GET",
            rf"/subscriptions/by-short-uuid/{seg}",
            self._h_subscription("short"),
            "subscriptions:by-short-uuid-protected",
        )
        if self.line3:
            add(
                "GET",
                rf"/subscriptions/by-id/{seg}",
                self._h_subscription("key"),
                "subscriptions:by-id",
            )
        else:
            add(
                "GET",
                rf"/subscriptions/by-uuid/{seg}",
                self._h_subscription("key"),
                "subscriptions:by-uuid",
            )
        add("POST", r"/hwid/devices", self._h_hwid_add, "hwid-user-devices:create")
        add("POST", r"/hwid/devices/delete", self._h_hwid_delete, "hwid-user-devices:delete")
        add(
            "POST",
            r"/hwid/devices/delete-all",
            self._h_hwid_delete_all,
            "hwid-user-devices:delete-all",
        )
        add("GET", rf"/hwid/devices/{seg}", self._h_hwid_list, "hwid-user-devices:list-by-user")
        add("GET", r"/system/stats", self._h_stats, "system:stats")
        add("GET", r"/system/health", self._h_health, "system:remnawave-health")
        if self.has((2, 8, 0)):
            add("GET", r"/system/metadata", self._h_metadata, "system:metadata")
        return r

    # -- rendering --------------------------------------------------------------------
    def subscription_url(self, user: EmuUser) -> str:
        return f"https://{self.sub_public_domain}/{user.short_uuid}"

    def _squad_refs(self, user: EmuUser) -> list[dict[str, str]]:
        by_uuid = {s.uuid: s for s in self.squads}
        return [{"uuid": u, "name": by_uuid[u].name} for u in user.internal_squads if u in by_uuid]

    def render_user(self, user: EmuUser) -> dict[str, Any]:
        """The user object exactly as this version's API and webhooks show it."""
        if self.v < (2, 3, 0):
            return self._render_user_old(user)
        out: dict[str, Any] = {}
        if not self.line3:
            out["uuid"] = user.uuid
        out.update(
            {
                "id": user.id,
                "shortUuid": user.short_uuid,
                "username": user.username,
                "status": user.status,
                "trafficLimitBytes": user.traffic_limit_bytes,
                "trafficLimitStrategy": user.traffic_limit_strategy,
                "expireAt": iso(user.expire_at),
                "telegramId": user.telegram_id,
                "email": user.email,
                "description": user.description,
                "tag": user.tag,
                "hwidDeviceLimit": user.hwid_device_limit,
                "externalSquadUuid": user.external_squad_uuid,
                "trojanPassword": user.trojan_password,
                "vlessUuid": user.vless_uuid,
                "ssPassword": user.ss_password,
                "lastTriggeredThreshold": user.last_triggered_threshold,
                "subRevokedAt": iso(user.sub_revoked_at),
                "lastTrafficResetAt": iso(user.last_traffic_reset_at),
            }
        )
        if self.v < (2, 7, 0):
            out["subLastUserAgent"] = user.sub_last_user_agent
            out["subLastOpenedAt"] = iso(user.sub_last_opened_at)
        out.update(
            {
                "createdAt": iso(user.created_at),
                "updatedAt": iso(user.updated_at),
                "subscriptionUrl": self.subscription_url(user),
                "activeInternalSquads": self._squad_refs(user),
                "userTraffic": {
                    "usedTrafficBytes": user.used_traffic_bytes,
                    "lifetimeUsedTrafficBytes": user.lifetime_used_traffic_bytes,
                    "onlineAt": iso(user.online_at),
                    "lastConnectedNodeUuid": user.last_connected_node_uuid,
                    "firstConnectedAt": iso(user.first_connected_at),
                },
            }
        )
        return out

    def _render_user_old(self, user: EmuUser) -> dict[str, Any]:
        """2.0-2.2: no id, traffic fields at top level, lastConnectedNode and happ."""
        return {
            "uuid": user.uuid,
            "shortUuid": user.short_uuid,
            "username": user.username,
            "status": user.status,
            "usedTrafficBytes": user.used_traffic_bytes,
            "lifetimeUsedTrafficBytes": user.lifetime_used_traffic_bytes,
            "trafficLimitBytes": user.traffic_limit_bytes,
            "trafficLimitStrategy": user.traffic_limit_strategy,
            "subLastUserAgent": user.sub_last_user_agent,
            "subLastOpenedAt": iso(user.sub_last_opened_at),
            "expireAt": iso(user.expire_at),
            "onlineAt": iso(user.online_at),
            "subRevokedAt": iso(user.sub_revoked_at),
            "lastTrafficResetAt": iso(user.last_traffic_reset_at),
            "trojanPassword": user.trojan_password,
            "vlessUuid": user.vless_uuid,
            "ssPassword": user.ss_password,
            "description": user.description,
            "tag": user.tag,
            "telegramId": user.telegram_id,
            "email": user.email,
            "hwidDeviceLimit": user.hwid_device_limit,
            "firstConnectedAt": iso(user.first_connected_at),
            "lastTriggeredThreshold": user.last_triggered_threshold,
            "createdAt": iso(user.created_at),
            "updatedAt": iso(user.updated_at),
            "activeInternalSquads": self._squad_refs(user),
            "subscriptionUrl": self.subscription_url(user),
            "lastConnectedNode": None,
            "happ": {"cryptoLink": f"happ://crypt/{user.short_uuid}"},
        }

    def render_device(self, user: EmuUser, device: EmuDevice) -> dict[str, Any]:
        out: dict[str, Any] = {"hwid": device.hwid}
        if self.v >= (2, 8, 0):
            out["userId"] = user.id
        else:
            out["userUuid"] = user.uuid
        out.update(
            {
                "platform": device.platform,
                "osVersion": device.os_version,
                "deviceModel": device.device_model,
                "userAgent": device.user_agent,
                "requestIp": device.request_ip,
                "createdAt": iso(device.created_at),
                "updatedAt": iso(device.updated_at),
            }
        )
        return out

    def _device_list(self, user: EmuUser) -> dict[str, Any]:
        return {
            "total": len(user.devices),
            "devices": [self.render_device(user, d) for d in user.devices],
        }

    # -- webhooks ---------------------------------------------------------------------
    def _payload(self, scope: str, event: str, data: Any, meta: Any = _MISSING) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if self.v >= (2, 5, 0):
            payload["scope"] = scope
        payload["event"] = event
        payload["timestamp"] = iso(self.now())
        payload["data"] = data
        if meta is not _MISSING and self.v >= (2, 4, 0):
            payload["meta"] = meta
        return payload

    def _emit_user(self, event: str, user: EmuUser, meta: Any = None) -> SentWebhook:
        return self._emit(self._payload("user", event, self.render_user(user), meta))

    def _emit_device(self, event: str, user: EmuUser, device: EmuDevice) -> SentWebhook:
        rendered = self.render_user(user)
        if self.line3:
            # Observed on 3.3.2: the HWID events carry the user without its squads.
            rendered["activeInternalSquads"] = []
        data = {"hwidUserDevice": self.render_device(user, device), "user": rendered}
        return self._emit(self._payload("user_hwid_devices", event, data))

    def _emit(self, payload: dict[str, Any]) -> SentWebhook:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "Remnawave"}
        if self.webhook_secret:
            headers["X-Remnawave-Signature"] = hmac.new(
                self.webhook_secret.encode("utf-8"), body, hashlib.sha256
            ).hexdigest()
        headers["X-Remnawave-Timestamp"] = payload["timestamp"]
        sent = SentWebhook(event=payload["event"], body=body, headers=headers, payload=payload)
        self.webhooks.append(sent)
        if self.webhook_url and self._session is not None:
            task = asyncio.get_running_loop().create_task(self._deliver(sent))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        return sent

    async def _deliver(self, sent: SentWebhook) -> None:
        assert self._session is not None
        assert self.webhook_url
        for attempt in range(1, self.webhook_attempts + 1):
            sent.attempts = attempt
            try:
                async with self._session.post(
                    self.webhook_url,
                    data=sent.body,
                    headers=sent.headers,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    sent.status = resp.status
                    await resp.read()
                    if 200 <= resp.status < 300:
                        sent.error = None
                        return
                    sent.error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                sent.error = repr(exc)
            if attempt < self.webhook_attempts:
                await asyncio.sleep(self.webhook_retry_delay)

    async def flush_webhooks(self) -> None:
        """Wait until every pending webhook delivery finished (or gave up)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    def events(self) -> list[str]:
        return [w.event for w in self.webhooks]

    # -- lookups ----------------------------------------------------------------------
    def _by_key(self, key: str) -> EmuUser | None:
        if self.line3:
            try:
                return self.users_by_id.get(int(key))
            except ValueError:
                return None
        for user in self.users_by_id.values():
            if user.uuid == key:
                return user
        return None

    def _by_username(self, username: str) -> EmuUser | None:
        for user in self.users_by_id.values():
            if user.username == username:
                return user
        return None

    def _by_short(self, short: str) -> EmuUser | None:
        for user in self.users_by_id.values():
            if user.short_uuid == short:
                return user
        return None

    def key_of(self, user: EmuUser) -> str:
        """The user's API key on this version (id on 3.x, uuid on 2.x)."""
        return str(user.id) if self.line3 else user.uuid

    def _path_key(self, ctx: _Ctx, value: str, name: str = "userId") -> str:
        """Validate a user key taken from the path like the panel does."""
        issues = _Issues(self.v4_issues)
        if self.line3:
            if not re.fullmatch(r"-?\d+(\.\d+)?", value):
                issues.invalid_type([name], "number", "NaN")
                raise self._invalid(issues)
        elif not UUID_RE.match(value):
            issues.fmt(["uuid"], "uuid", UUID_PATTERN, "Invalid uuid")
            raise self._invalid(issues)
        return value

    def _body_key(
        self, ctx: _Ctx, body: Mapping[str, Any], issues: _Issues
    ) -> EmuUser | str | None:
        """HWID bodies: ``userId`` (2.8+ devices and 3.x) or ``userUuid`` (2.x routes)."""
        if self.line3:
            value = body.get("userId")
            if not isinstance(value, int) or isinstance(value, bool):
                issues.invalid_type(
                    ["userId"], "number", "undefined" if value is None else _type_name(value)
                )
                return "invalid"
            return self.users_by_id.get(value)
        value = body.get("userUuid")
        if not isinstance(value, str) or not UUID_RE.match(value):
            issues.fmt(["userUuid"], "uuid", UUID_PATTERN, "Invalid uuid")
            return "invalid"
        return self._by_key(value)

    # -- field validation -------------------------------------------------------------
    def _check_str(
        self,
        issues: _Issues,
        body: Mapping[str, Any],
        name: str,
        *,
        required: bool = False,
        nullable: bool = False,
        min_len: int | None = None,
        max_len: int | None = None,
        min_msg: str | None = None,
        max_msg: str | None = None,
        regex: re.Pattern[str] | None = None,
        regex_msg: str = "Invalid",
    ) -> None:
        if name not in body:
            if required:
                issues.invalid_type([name], "string", "undefined")
            return
        value = body[name]
        if value is None and nullable:
            return
        if not isinstance(value, str):
            issues.invalid_type([name], "string", _type_name(value))
            return
        if min_len is not None and len(value) < min_len:
            issues.small([name], "string", min_len, min_msg)
        if max_len is not None and len(value) > max_len:
            issues.big([name], "string", max_len, max_msg)
        if regex is not None and not regex.match(value):
            issues.fmt([name], "regex", "/" + regex.pattern + "/", regex_msg)

    def _check_num(
        self,
        issues: _Issues,
        body: Mapping[str, Any],
        name: str,
        *,
        nullable: bool = False,
        minimum: int | None = None,
        min_msg: str | None = None,
        integer: bool = False,
    ) -> None:
        if name not in body:
            return
        value = body[name]
        if value is None and nullable:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            issues.invalid_type([name], "number", _type_name(value))
            return
        if integer and not float(value).is_integer():
            issues.invalid_type([name], "int", "number")
            return
        if minimum is not None and value < minimum:
            issues.small([name], "number", minimum, min_msg)

    def _check_enum(
        self, issues: _Issues, body: Mapping[str, Any], name: str, values: tuple[str, ...]
    ) -> None:
        if name in body and body[name] not in values:
            issues.enum([name], values, body[name])

    def _check_dt(
        self, issues: _Issues, body: Mapping[str, Any], name: str, *, required: bool
    ) -> None:
        if name not in body:
            if required:
                issues.invalid_type([name], "string", "undefined")
            return
        value = body[name]
        if not isinstance(value, str):
            issues.invalid_type([name], "string", _type_name(value))
            return
        if not DATETIME_RE.match(value):
            issues.fmt(
                [name],
                "datetime",
                DATETIME_PATTERN,
                "Invalid ISO datetime" if self.v4_issues else "Invalid datetime",
            )

    def _check_email(self, issues: _Issues, body: Mapping[str, Any], name: str) -> None:
        if name not in body or body[name] is None:
            return
        value = body[name]
        if not isinstance(value, str):
            issues.invalid_type([name], "string", _type_name(value))
        elif not EMAIL_RE.match(value):
            issues.fmt(
                [name],
                "email",
                EMAIL_PATTERN,
                "Invalid email address" if self.v4_issues else "Invalid email",
            )

    def _check_uuid(
        self, issues: _Issues, body: Mapping[str, Any], name: str, *, nullable: bool
    ) -> None:
        if name not in body:
            return
        value = body[name]
        if value is None and nullable:
            return
        if not isinstance(value, str) or not UUID_RE.match(value):
            issues.fmt(
                [name], "uuid", UUID_PATTERN, "Invalid UUID" if self.v4_issues else "Invalid uuid"
            )

    def _check_uuid_list(self, issues: _Issues, body: Mapping[str, Any], name: str) -> None:
        if name not in body:
            return
        value = body[name]
        if not isinstance(value, list):
            issues.invalid_type([name], "array", _type_name(value))
            return
        for i, item in enumerate(value):
            if not isinstance(item, str) or not UUID_RE.match(item):
                issues.fmt(
                    [name, i],
                    "uuid",
                    UUID_PATTERN,
                    "Invalid UUID" if self.v4_issues else "Invalid uuid",
                )

    def _strategies(self) -> tuple[str, ...]:
        return STRATEGIES_NEW if self.v >= (2, 7, 0) else STRATEGIES_OLD

    def _validate_user_fields(
        self, issues: _Issues, body: Mapping[str, Any], *, create: bool
    ) -> None:
        self._check_num(
            issues,
            body,
            "trafficLimitBytes",
            minimum=0,
            min_msg="Traffic limit must be greater than 0" if create else None,
        )
        self._check_enum(issues, body, "trafficLimitStrategy", self._strategies())
        self._check_dt(issues, body, "expireAt", required=create)
        self._check_str(issues, body, "description", nullable=not create)
        self._check_str(
            issues,
            body,
            "tag",
            nullable=True,
            max_len=16,
            max_msg="Tag must be less than 16 characters",
            regex=TAG_RE,
            regex_msg="Tag can only contain uppercase letters, numbers, underscores",
        )
        self._check_num(issues, body, "telegramId", nullable=True, integer=not self.line3)
        self._check_email(issues, body, "email")
        self._check_num(
            issues, body, "hwidDeviceLimit", nullable=not create, minimum=0, integer=True
        )
        self._check_uuid_list(issues, body, "activeInternalSquads")
        self._check_uuid(issues, body, "externalSquadUuid", nullable=True)

    def _require_object(self, ctx: _Ctx) -> dict[str, Any]:
        body = ctx.body if ctx.body is not None else {}
        if not isinstance(body, dict):
            issues = _Issues(self.v4_issues)
            issues.invalid_type([], "object", _type_name(body))
            raise self._invalid(issues)
        return body

    # -- state changes ----------------------------------------------------------------
    def _allocate_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value

    def _new_short_uuid(self) -> str:
        while True:
            candidate = _rand(_SHORT, 16)
            if self._by_short(candidate) is None:
                return candidate

    def _squads_exist(self, uuids: list[str]) -> bool:
        known = {s.uuid for s in self.squads}
        return all(u in known for u in uuids)

    def _regenerate_credentials(self, user: EmuUser) -> None:
        user.trojan_password = _rand(_SHORT, 32)
        user.vless_uuid = str(uuidlib.uuid4())
        user.ss_password = _rand(_SHORT, 32)

    # -- handlers: users --------------------------------------------------------------
    async def _h_create(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        self._check_str(
            issues,
            body,
            "username",
            required=True,
            min_len=3,
            max_len=36,
            min_msg="Username must be at least 3 characters",
            max_msg="Username must be less than 36 characters",
            regex=USERNAME_RE,
            regex_msg="Username can only contain letters, numbers, underscores and dashes",
        )
        self._check_enum(issues, body, "status", STATUSES)
        self._check_str(issues, body, "shortUuid")
        self._check_str(issues, body, "trojanPassword", min_len=8, max_len=32)
        self._check_uuid(issues, body, "vlessUuid", nullable=False)
        self._check_str(issues, body, "ssPassword", min_len=8, max_len=32)
        self._check_dt(issues, body, "createdAt", required=False)
        self._check_dt(issues, body, "lastTrafficResetAt", required=False)
        self._validate_user_fields(issues, body, create=True)
        if not self.line3:
            self._check_uuid(issues, body, "uuid", nullable=False)
        if issues:
            raise self._invalid(issues)

        # Past validation, the insert uses up a BIGSERIAL id whether or not it succeeds.
        new_id = self._allocate_id()
        failed = self._biz(ctx, 500, "A018", "Failed to create user")
        if self._by_username(body["username"]) is not None:
            if self.duplicate_username_code == "A019":
                raise self._biz(ctx, 400, "A019", "User username already exists")
            raise failed
        short = body.get("shortUuid")
        if short is not None and self._by_short(short) is not None:
            raise self._biz(ctx, 400, "A020", "User short UUID already exists")
        limit = body.get("trafficLimitBytes", 0)
        if not float(limit).is_integer():
            raise failed  # a BIGINT column refuses 1.5
        squads = list(body.get("activeInternalSquads") or [])
        if not self._squads_exist(squads):
            raise failed
        ext = body.get("externalSquadUuid")
        if ext is not None and ext not in self.external_squads:
            raise failed
        user_uuid = (
            str(body["uuid"]) if not self.line3 and body.get("uuid") else str(uuidlib.uuid4())
        )
        now = self.now()
        user = EmuUser(
            id=new_id,
            uuid=user_uuid,
            short_uuid=short or self._new_short_uuid(),
            username=body["username"],
            expire_at=_parse_dt(body["expireAt"]),
            created_at=_parse_dt(body["createdAt"]) if body.get("createdAt") else now,
            updated_at=now,
            status=body.get("status", "ACTIVE"),
            traffic_limit_bytes=int(limit),
            traffic_limit_strategy=body.get("trafficLimitStrategy", "NO_RESET"),
            telegram_id=body.get("telegramId"),
            email=body.get("email"),
            description=body.get("description"),
            tag=body.get("tag"),
            hwid_device_limit=body.get("hwidDeviceLimit"),
            external_squad_uuid=ext,
            internal_squads=squads,
            last_traffic_reset_at=(
                _parse_dt(body["lastTrafficResetAt"]) if body.get("lastTrafficResetAt") else None
            ),
        )
        for name, attr in (
            ("trojanPassword", "trojan_password"),
            ("ssPassword", "ss_password"),
            ("vlessUuid", "vless_uuid"),
        ):
            if body.get(name):
                setattr(user, attr, body[name])
        self.users_by_id[user.id] = user
        self._emit_user("user.created", user)
        return self._ok(self.render_user(user), status=201)

    async def _h_update(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        key_name = "id" if self.line3 else "uuid"
        if self.line3:
            self._check_num(issues, body, "id", integer=True)
        else:
            self._check_uuid(issues, body, "uuid", nullable=False)
        self._check_str(issues, body, "username")
        self._check_enum(issues, body, "status", ("ACTIVE", "DISABLED"))
        self._validate_user_fields(issues, body, create=False)
        expire = body.get("expireAt")
        if (
            isinstance(expire, str)
            and DATETIME_RE.match(expire)
            and _parse_dt(expire) <= self.now()
        ):
            issues.custom(["expireAt"], "Expiration date cannot be in the past")
        if body.get(key_name) is None and body.get("username") is None:
            issues.custom([], f"At least one of username, {key_name} must be provided")
        if issues:
            raise self._invalid(issues)

        if body.get(key_name) is not None:
            user = self._by_key(str(body[key_name]))
        else:
            user = self._by_username(body["username"])
        if user is None:
            raise self._biz(ctx, 404, "A025", "User not found")
        failed = self._biz(ctx, 500, "A039", "Update user error")
        if "activeInternalSquads" in body and not self._squads_exist(
            list(body["activeInternalSquads"])
        ):
            raise failed
        ext = body.get("externalSquadUuid")
        if ext is not None and ext not in self.external_squads:
            raise failed
        if "trafficLimitBytes" in body and not float(body["trafficLimitBytes"]).is_integer():
            raise failed

        now = self.now()
        new_status = body.get("status")
        if "expireAt" in body:
            user.expire_at = _parse_dt(body["expireAt"])
            if new_status is None and user.status == "EXPIRED" and user.expire_at > now:
                new_status = "ACTIVE"  # a future expiry reactivates an EXPIRED user
        if "trafficLimitBytes" in body:
            user.traffic_limit_bytes = int(body["trafficLimitBytes"])
            if (
                new_status is None
                and user.status == "LIMITED"
                and (
                    user.traffic_limit_bytes == 0
                    or user.traffic_limit_bytes > user.used_traffic_bytes
                )
            ):
                new_status = "ACTIVE"
        if new_status is not None:
            user.status = new_status
        simple = {
            "trafficLimitStrategy": "traffic_limit_strategy",
            "description": "description",
            "tag": "tag",
            "telegramId": "telegram_id",
            "email": "email",
            "hwidDeviceLimit": "hwid_device_limit",
            "externalSquadUuid": "external_squad_uuid",
        }
        for field, attr in simple.items():
            if field in body:
                setattr(user, attr, body[field])
        if "activeInternalSquads" in body:
            user.internal_squads = list(dict.fromkeys(body["activeInternalSquads"]))
        user.updated_at = now
        self._emit_user("user.modified", user)
        return self._ok(self.render_user(user))

    def _user_or_404(self, ctx: _Ctx, key: str, code: str = "A025") -> EmuUser:
        user = self._by_key(key)
        if user is None:
            message = "User not found" if code == "A025" else "User with specified params not found"
            raise self._biz(ctx, 404, code, message)
        return user

    async def _h_get(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        key = self._path_key(ctx, m["v"])
        return self._ok(self.render_user(self._user_or_404(ctx, key, "A063")))

    async def _h_by_id(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        value = m["v"]
        if not value.isdigit():
            issues = _Issues(self.v4_issues)
            issues.invalid_type(["id"], "number", "NaN")
            raise self._invalid(issues)
        user = self.users_by_id.get(int(value))
        if user is None:
            raise self._biz(ctx, 404, "A063", "User with specified params not found")
        return self._ok(self.render_user(user))

    async def _h_by_username(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        user = self._by_username(m["v"])
        if user is None:
            raise self._biz(ctx, 404, "A063", "User with specified params not found")
        return self._ok(self.render_user(user))

    async def _h_by_short(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        user = self._by_short(m["v"])
        if user is None:
            raise self._biz(ctx, 404, "A063", "User with specified params not found")
        return self._ok(self.render_user(user))

    async def _h_by_tg(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        value = m["v"]
        if not re.fullmatch(r"-?\d+", value):
            issues = _Issues(self.v4_issues)
            issues.invalid_type(["telegramId"], "number", "NaN")
            raise self._invalid(issues)
        found = [
            u
            for u in sorted(self.users_by_id.values(), key=lambda u: u.id)
            if u.telegram_id == int(value)
        ]
        if not found and self.v < (2, 4, 0):
            raise self._biz(ctx, 404, "A062", "Users not found")
        return self._ok([self.render_user(u) for u in found])

    def _query_int(self, ctx: _Ctx, name: str, issues: _Issues) -> int | None:
        if name not in ctx.query:
            return None
        text = ctx.query[name]
        if not re.fullmatch(r"-?\d+", text):
            issues.invalid_type([name], "number", "NaN")
            return None
        return int(text)

    async def _h_list(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        issues = _Issues(self.v4_issues)
        start = self._query_int(ctx, "start", issues)
        size = self._query_int(ctx, "size", issues)
        if start is not None and start < 0:
            issues.small(["start"], "number", 0)
        if size is not None and size < 1:
            issues.small(["size"], "number", 1, "Size (limit) must be greater than 0")
        if size is not None and size > 1000:
            issues.big(["size"], "number", 1000, "Size (limit) must be less than 1000")
        if issues:
            raise self._invalid(issues)
        start = start or 0
        size = size or 25
        users = sorted(self.users_by_id.values(), key=lambda u: u.id, reverse=True)
        page = users[start : start + size]
        return self._ok({"total": len(users), "users": [self.render_user(u) for u in page]})

    async def _h_stream(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        issues = _Issues(self.v4_issues)
        size = self._query_int(ctx, "size", issues)
        cursor = self._query_int(ctx, "cursor", issues)
        telegram_id = self._query_int(ctx, "telegramId", issues)
        status = ctx.query.get("status")
        if status is not None and status not in STATUSES:
            issues.enum(["status"], STATUSES, status)
        if size is not None and size < 1:
            issues.small(["size"], "number", 1)
        if size is not None and size > 1000:
            issues.big(["size"], "number", 1000)
        if issues:
            raise self._invalid(issues)
        users = sorted(self.users_by_id.values(), key=lambda u: u.id)
        if cursor is not None:
            users = [u for u in users if u.id > cursor]
        if "telegramId" in ctx.query:
            users = [u for u in users if u.telegram_id == telegram_id]
        if status is not None:
            users = [u for u in users if u.status == status]
        for name, attr in (("email", "email"), ("tag", "tag"), ("username", "username")):
            if name in ctx.query:
                users = [u for u in users if getattr(u, attr) == ctx.query[name]]
        has_more = size is not None and len(users) > size
        page = users[:size] if size is not None else users
        return self._ok(
            {
                "users": [self.render_user(u) for u in page],
                "nextCursor": str(page[-1].id) if has_more and page else None,
                "hasMore": has_more,
            }
        )

    async def _h_resolve(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        keys = (
            ["id", "shortUuid", "username"]
            if self.line3
            else ["uuid", "id", "shortUuid", "username"]
        )
        given = [k for k in keys if body.get(k) is not None]
        if len(given) != 1:
            issues = _Issues(self.v4_issues)
            issues.custom([], f"Exactly one of {', '.join(keys)} must be provided")
            raise self._invalid(issues)
        field = given[0]
        value = body[field]
        user: EmuUser | None
        if field == "id":
            user = self.users_by_id.get(value) if isinstance(value, int) else None
        elif field == "uuid":
            user = self._by_key(str(value))
        elif field == "shortUuid":
            user = self._by_short(str(value))
        else:
            user = self._by_username(str(value))
        if user is None:
            raise self._biz(ctx, 404, "A063", "User with specified params not found")
        out: dict[str, Any] = {} if self.line3 else {"uuid": user.uuid}
        out.update({"id": user.id, "username": user.username, "shortUuid": user.short_uuid})
        return self._ok(out)

    def _action(self, name: str) -> Callable[[_Ctx, re.Match[str]], Awaitable[web.StreamResponse]]:
        async def handler(ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
            key = self._path_key(ctx, m["v"])
            body = ctx.body if isinstance(ctx.body, dict) else {}
            if name == "revoke":
                self._validate_revoke(body)
            if name == "extend":
                issues = _Issues(self.v4_issues)
                if "days" not in body:
                    issues.invalid_type(["days"], "number", "undefined")
                else:
                    self._check_num(issues, body, "days", minimum=1)
                if issues:
                    raise self._invalid(issues)
            user = self._user_or_404(ctx, key)
            now = self.now()
            if name == "enable":
                if user.status == "ACTIVE":
                    raise self._biz(ctx, 400, "A030", "User already enabled")
                user.status = "ACTIVE"
                self._emit_user("user.enabled", user)
            elif name == "disable":
                if user.status == "DISABLED":
                    raise self._biz(ctx, 400, "A029", "User already disabled")
                user.status = "DISABLED"
                self._emit_user("user.disabled", user)
            elif name == "reset-traffic":
                user.used_traffic_bytes = 0
                user.last_traffic_reset_at = now
                user.last_triggered_threshold = 0
                if user.status == "LIMITED":
                    user.status = "ACTIVE"
                user.updated_at = now
                self._emit_user("user.traffic_reset", user)
            elif name == "revoke":
                self._revoke(ctx, user, body, now)
                self._emit_user("user.revoked", user)
            elif name == "extend":
                days = timedelta(days=float(body["days"]))
                if user.status == "EXPIRED":
                    user.expire_at = now + days
                    user.status = "ACTIVE"
                else:
                    user.expire_at = user.expire_at + days
                user.updated_at = now
                self._emit_user("user.modified", user)
            return self._ok(self.render_user(user))

        return handler

    def _validate_revoke(self, body: Mapping[str, Any]) -> None:
        issues = _Issues(self.v4_issues)
        if "revokeOnlyPasswords" in body and not isinstance(body["revokeOnlyPasswords"], bool):
            issues.invalid_type(
                ["revokeOnlyPasswords"], "boolean", _type_name(body["revokeOnlyPasswords"])
            )
        lo, hi = (16, 64) if self.line3 else (6, 48)
        self._check_str(issues, body, "shortUuid", min_len=lo, max_len=hi)
        if issues:
            raise self._invalid(issues)

    def _revoke(self, ctx: _Ctx, user: EmuUser, body: Mapping[str, Any], now: datetime) -> None:
        only_passwords = bool(body.get("revokeOnlyPasswords"))
        if not only_passwords:
            wanted = body.get("shortUuid")
            if wanted is not None:
                other = self._by_short(wanted)
                if other is not None and other is not user:
                    raise self._biz(ctx, 500, "A027", "Revoke user subscription error")
                user.short_uuid = wanted
            else:
                user.short_uuid = self._new_short_uuid()
        self._regenerate_credentials(user)
        user.sub_revoked_at = now
        user.updated_at = now

    async def _h_delete(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        key = self._path_key(ctx, m["v"])
        user = self._user_or_404(ctx, key)
        self._emit_user("user.deleted", user)
        del self.users_by_id[user.id]
        if self.line3:
            return web.Response(status=204)
        return self._ok({"isDeleted": True})

    # -- handlers: subscriptions ------------------------------------------------------
    def _subscription_info(self, user: EmuUser) -> dict[str, Any]:
        now = self.now()
        left = max(0, (user.expire_at - now).days) if user.expire_at > now else 0

        def human(n: int) -> str:
            return "0" if n == 0 else f"{n / 2**30:.2f} GiB"

        return {
            "isFound": True,
            "user": {
                "shortUuid": user.short_uuid,
                "daysLeft": left,
                "trafficUsed": human(user.used_traffic_bytes),
                "trafficLimit": human(user.traffic_limit_bytes),
                "lifetimeTrafficUsed": human(user.lifetime_used_traffic_bytes),
                "lifetimeTrafficUsedBytes": str(user.lifetime_used_traffic_bytes),
                "trafficLimitBytes": str(user.traffic_limit_bytes),
                "trafficUsedBytes": str(user.used_traffic_bytes),
                "username": user.username,
                "expiresAt": iso(user.expire_at),
                "isActive": user.status == "ACTIVE",
                "userStatus": user.status,
                "trafficLimitStrategy": user.traffic_limit_strategy,
            },
            "links": list(PLACEHOLDER_LINKS),
            "ssConfLinks": {},
            "subscriptionUrl": self.subscription_url(user),
        }

    async def _h_sub_info(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        user = self._by_short(m["v"])
        if user is None:
            raise self._biz(ctx, 404, "A025", "User not found")
        return self._ok(self._subscription_info(user))

    def _h_subscription(
        self, by: str
    ) -> Callable[[_Ctx, re.Match[str]], Awaitable[web.StreamResponse]]:
        async def handler(ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
            value = m["v"]
            if by == "username":
                user = self._by_username(value)
            elif by == "short":
                user = self._by_short(value)
            else:
                user = self._by_key(self._path_key(ctx, value, "id" if self.line3 else "uuid"))
            if user is None:
                raise self._biz(ctx, 404, "A025", "User not found")
            return self._ok(self._subscription_info(user))

        return handler

    # -- handlers: HWID ---------------------------------------------------------------
    async def _h_hwid_list(self, ctx: _Ctx, m: re.Match[str]) -> web.StreamResponse:
        key = self._path_key(ctx, m["v"])
        user = self._user_or_404(ctx, key)
        return self._ok(self._device_list(user))

    def _hwid_user(self, ctx: _Ctx, body: Mapping[str, Any], issues: _Issues) -> EmuUser:
        found = self._body_key(ctx, body, issues)
        if issues or found == "invalid":
            raise self._invalid(issues)
        if found is None or isinstance(found, str):
            raise self._biz(ctx, 404, "A025", "User not found")
        return found

    async def _h_hwid_add(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        self._check_str(
            issues, body, "hwid", required=True, regex=HWID_RE, regex_msg="Invalid HWID"
        )
        for name in ("platform", "osVersion", "deviceModel", "userAgent", "requestIp"):
            self._check_str(issues, body, name, nullable=True)
        user = self._hwid_user(ctx, body, issues)
        device = EmuDevice(
            hwid=body["hwid"],
            platform=body.get("platform"),
            os_version=body.get("osVersion"),
            device_model=body.get("deviceModel"),
            user_agent=body.get("userAgent"),
            request_ip=body.get("requestIp"),
        )
        self._add_device(ctx, user, device)
        return self._ok(self._device_list(user))

    def _add_device(self, ctx: _Ctx | None, user: EmuUser, device: EmuDevice) -> None:
        def fail(code: str, message: str) -> _ApiError | ValueError:
            if ctx is None:
                return ValueError(f"{code}: {message}")
            return self._biz(ctx, 400, code, message)

        if any(d.hwid == device.hwid for d in user.devices):
            raise fail("A098", "User hwid device already exists")
        if user.hwid_device_limit and len(user.devices) >= user.hwid_device_limit:
            raise fail("A099", "User hwid device limit reached")
        now = self.now()
        device.created_at = device.updated_at = now
        user.devices.append(device)
        self._emit_device("user_hwid_devices.added", user, device)

    async def _h_hwid_delete(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        self._check_str(issues, body, "hwid", required=True)
        user = self._hwid_user(ctx, body, issues)
        for device in list(user.devices):
            if device.hwid == body["hwid"]:
                user.devices.remove(device)
                self._emit_device("user_hwid_devices.deleted", user, device)
        return self._ok(self._device_list(user))

    async def _h_hwid_delete_all(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        body = self._require_object(ctx)
        issues = _Issues(self.v4_issues)
        user = self._hwid_user(ctx, body, issues)
        for device in list(user.devices):
            user.devices.remove(device)
            self._emit_device("user_hwid_devices.deleted", user, device)
        return self._ok(self._device_list(user))

    # -- handlers: squads and system ---------------------------------------------------
    async def _h_squads(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        items = []
        for squad in self.squads:
            members = sum(1 for u in self.users_by_id.values() if squad.uuid in u.internal_squads)
            items.append(
                {
                    "uuid": squad.uuid,
                    "viewPosition": squad.view_position,
                    "name": squad.name,
                    "info": {"membersCount": members, "inboundsCount": 1},
                    "inbounds": [
                        {
                            "uuid": squad.inbound_uuid,
                            "profileUuid": "00000000-0000-0000-0000-000000000000",
                            "tag": "Shadowsocks",
                            "type": "shadowsocks",
                            "network": None,
                            "security": None,
                            "port": 1234,
                            "rawInbound": {
                                "tag": "Shadowsocks",
                                "port": 1234,
                                "protocol": "shadowsocks",
                                "settings": {
                                    "method": "chacha20-ietf-poly1305",
                                    "clients": [],
                                    "network": "tcp,udp",
                                },
                                "sniffing": {
                                    "enabled": True,
                                    "destOverride": ["http", "tls", "quic"],
                                },
                            },
                        }
                    ],
                    "createdAt": iso(squad.created_at),
                    "updatedAt": iso(squad.created_at),
                }
            )
        return self._ok({"total": len(items), "internalSquads": items})

    async def _h_stats(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        now = self.now()
        users = list(self.users_by_id.values())
        counts = {s: sum(1 for u in users if u.status == s) for s in STATUSES}

        def online_since(delta: timedelta) -> int:
            return sum(1 for u in users if u.online_at is not None and u.online_at >= now - delta)

        memory = {"total": 25276514304, "free": 23503437824, "used": 1773076480}
        if self.v < (2, 7, 0):
            memory.update({"active": 1773076480, "available": 23503437824})
        return self._ok(
            {
                "cpu": {"cores": 2},
                "memory": memory,
                "uptime": round((now - self._started_at).total_seconds(), 2),
                "timestamp": int(now.timestamp() * 1000),
                "users": {"statusCounts": counts, "totalUsers": len(users)},
                "onlineStats": {
                    "onlineNow": online_since(timedelta(minutes=1)),
                    "lastDay": online_since(timedelta(days=1)),
                    "lastWeek": online_since(timedelta(days=7)),
                    "neverOnline": sum(1 for u in users if u.online_at is None),
                },
                "nodes": {"totalOnline": 0, "totalBytesLifetime": "0"},
            }
        )

    async def _h_health(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        now_ms = int(self.now().timestamp() * 1000)
        if self.v < (2, 7, 0):
            return self._ok(
                {"pm2Stats": [{"name": "remnawave-api", "memory": "300 MiB", "cpu": "1"}]}
            )
        metrics = [
            {
                "rss": 809623552,
                "heapUsed": 253803424,
                "heapTotal": 372191232,
                "external": 8537250,
                "arrayBuffers": 2466474,
                "eventLoopDelayMs": 0.22,
                "eventLoopP99Ms": 1.05,
                "activeHandles": 27,
                "uptime": 43.4,
                "pid": 16972 + i,
                "timestamp": now_ms,
                "instanceId": "0",
                "instanceType": kind,
            }
            for i, kind in enumerate(("api", "scheduler", "processor"))
        ]
        return self._ok({"runtimeMetrics": metrics})

    async def _h_metadata(self, ctx: _Ctx, _m: re.Match[str]) -> web.StreamResponse:
        sha = "0f344f388807f5323b49024a563b3f8146d66857"
        return self._ok(
            {
                "version": self.version,
                "build": {"time": "2011-11-11T11:11:11Z", "number": "0"},
                "git": {
                    "backend": {
                        "commitSha": sha,
                        "branch": "dev",
                        "commitUrl": f"https://github.com/remnawave/backend/commit/{sha}",
                    },
                    "frontend": {
                        "commitSha": sha,
                        "commitUrl": f"https://github.com/remnawave/frontend/commit/{sha}",
                    },
                },
            }
        )

    # -- test helpers -----------------------------------------------------------------
    def _user(self, key: str | int) -> EmuUser:
        user = self.users_by_id.get(key) if isinstance(key, int) else self._by_key(key)
        if user is None and isinstance(key, str):
            user = self._by_username(key)
        if user is None:
            raise KeyError(f"no emulated user {key!r}")
        return user

    def record(self, key: str | int) -> EmuUser:
        """The stored record of a user (by API key, numeric id or username); mutable."""
        self._run_scheduler()
        return self._user(key)

    def user(self, key: str | int) -> dict[str, Any]:
        """The user as the API would render it (by API key, numeric id or username)."""
        return self.render_user(self.record(key))

    def users(self) -> list[dict[str, Any]]:
        self._run_scheduler()
        return [self.render_user(u) for u in sorted(self.users_by_id.values(), key=lambda u: u.id)]

    def add_user(
        self,
        username: str,
        *,
        expire_at: datetime | None = None,
        status: str = "ACTIVE",
        tag: str | None = None,
        telegram_id: int | None = None,
        emit: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create a user directly (an admin's user, for instance): no validation, no API."""
        now = self.now()
        user = EmuUser(
            id=self._allocate_id(),
            uuid=str(uuidlib.uuid4()),
            short_uuid=self._new_short_uuid(),
            username=username,
            expire_at=_ms(expire_at or now + timedelta(days=30)),
            created_at=now,
            updated_at=now,
            status=status,
            tag=tag,
            telegram_id=telegram_id,
            **fields,
        )
        self.users_by_id[user.id] = user
        if emit:
            self._emit_user("user.created", user)
        return self.render_user(user)

    def add_squad(self, name: str) -> str:
        squad = EmuSquad(str(uuidlib.uuid4()), name, len(self.squads) + 1, self.now())
        self.squads.append(squad)
        return squad.uuid

    def add_external_squad(self, name: str) -> str:
        value = str(uuidlib.uuid4())
        self.external_squads[value] = name
        return value

    def set_traffic_used(self, key: str | int, used_bytes: int) -> dict[str, Any]:
        """Set the traffic counter; crossing the limit makes the user LIMITED
        (``user.limited``), and thresholds fire ``user.bandwidth_usage_threshold_reached``."""
        user = self.record(key)
        delta = max(0, used_bytes - user.used_traffic_bytes)
        user.used_traffic_bytes = used_bytes
        user.lifetime_used_traffic_bytes += delta
        if user.traffic_limit_bytes > 0:
            percent = math.floor(used_bytes * 100 / user.traffic_limit_bytes)
            for threshold in (80, 95):
                if percent >= threshold > user.last_triggered_threshold and percent < 100:
                    user.last_triggered_threshold = threshold
                    self._emit_user("user.bandwidth_usage_threshold_reached", user)
            if used_bytes >= user.traffic_limit_bytes and user.status == "ACTIVE":
                user.status = "LIMITED"
                user.updated_at = self.now()
                self._emit_user("user.limited", user)
        return self.render_user(user)

    def connect(self, key: str | int, node_uuid: str | None = None) -> dict[str, Any]:
        """The user connects: ``onlineAt`` now; the first time, ``user.first_connected``."""
        user = self.record(key)
        now = self.now()
        user.online_at = now
        user.last_connected_node_uuid = node_uuid or str(uuidlib.uuid4())
        if user.first_connected_at is None:
            user.first_connected_at = now
            self._emit_user("user.first_connected", user)
        return self.render_user(user)

    def add_hwid_device(self, key: str | int, hwid: str, **fields: Any) -> dict[str, Any]:
        """Register a device as a client app would (``user_hwid_devices.added``)."""
        user = self.record(key)
        self._add_device(None, user, EmuDevice(hwid=hwid, **fields))
        return self._device_list(user)

    def set_expire_at(self, key: str | int, when: datetime) -> dict[str, Any]:
        """Change the expiry without validation or webhook (to stage a scenario)."""
        user = self.record(key)
        user.expire_at = _ms(when)
        return self.render_user(user)

    def advance_expiry(self, key: str | int, delta: timedelta) -> dict[str, Any]:
        user = self.record(key)
        return self.set_expire_at(key, user.expire_at + delta)

    def expire_due_users(self) -> list[dict[str, Any]]:
        """Run the expiry job now (not waiting for the next tick)."""
        return [self.render_user(u) for u in self._expire(self.now())]

    def notify_expiration(self, key: str | int, hours: int) -> SentWebhook:
        """The expiry warning: ``user.expiration`` (2.8+, ``meta.expiration=hours``) or,
        before 2.8, ``user.expires_in_{72,48,24}_hours`` / ``user.expired_24_hours_ago``."""
        user = self.record(key)
        if self.v >= (2, 8, 0):
            return self._emit_user("user.expiration", user, {"expiration": hours})
        if hours not in LEGACY_EXPIRATION:
            raise ValueError(
                f"a {self.version} panel only warns at {sorted(LEGACY_EXPIRATION)} hours"
            )
        return self._emit_user(LEGACY_EXPIRATION[hours], user)

    def notify_not_connected(self, key: str | int, hours: int) -> SentWebhook:
        return self._emit_user(
            "user.not_connected", self.record(key), {"notConnectedAfterHours": hours}
        )

    def payload_timestamp(self) -> str:
        """``now`` in the format of a payload's ``timestamp``."""
        return iso(self.now()) or ""

    def emit_raw(self, payload: dict[str, Any]) -> SentWebhook:
        """Sign and send an arbitrary payload (``node.*``, ``service.*`` ...)."""
        return self._emit(payload)
