"""The Remnawave implementation of the :class:`vpnshop.ports.panel.VpnPanel` port.

Ownership: every user the shop creates carries the shop tag (``settings.shop_tag``).
Every modifying call first reads the user and refuses (``PanelNotOwnedError``) when the
tag is not the shop's; :meth:`RemnawavePanel.link` is the one, admin-confirmed, way to
put the shop tag on a pre-existing user.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from vpnshop.adapters.remnawave.client import PanelCallObserver, RemnawaveClient
from vpnshop.adapters.remnawave.detect import Detected, detect
from vpnshop.adapters.remnawave.errors import PanelBadResponseError
from vpnshop.adapters.remnawave.lines import ApiLine, ApiLine2, ApiLine3
from vpnshop.adapters.remnawave.mapping import (
    MappingError,
    devices_from_panel,
    format_dt,
    parse_dt,
    squad_from_panel,
    stats_from_panel,
    truncate_ms,
    user_from_panel,
    user_key,
)
from vpnshop.adapters.remnawave.settings import RemnawaveSettings
from vpnshop.domain.panel import (
    USERNAME_PATTERN,
    PanelAccess,
    PanelDevice,
    PanelInfo,
    PanelStats,
    PanelStatus,
    PanelUser,
    Squad,
)
from vpnshop.domain.plan import TrafficReset
from vpnshop.ports.clock import Clock
from vpnshop.ports.panel import (
    PanelConflictError,
    PanelError,
    PanelForbiddenError,
    PanelInvalidError,
    PanelNotFoundError,
    PanelNotOwnedError,
    PanelUnavailableError,
)

log = logging.getLogger(__name__)

#: A duplicate username: 400 A019 on the stock panel, 500 A018 on the patched 3.3.2 build.
DUPLICATE_USERNAME_CODES = frozenset({"A019", "A018"})
#: 500s the panel also uses for deterministic failures (an unknown squad, for instance).
WRITE_FAILED_CODES = frozenset({"A018", "A039"})
#: An access expiring sooner than this is applied as expired (panel clock skew, latency).
EXPIRY_MARGIN = timedelta(seconds=60)
#: The expireAt a user created for an already expired access gets (it is created DISABLED).
EXPIRED_CREATE_EXPIRY = timedelta(minutes=1)


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _user(raw: Any) -> PanelUser:
    try:
        return user_from_panel(raw)
    except MappingError as exc:
        raise PanelBadResponseError(
            f"the panel sent a user object the shop cannot read: {exc}"
        ) from exc


class RemnawavePanel:
    """A Remnawave panel (2.3-2.8 or 3.x) behind the ``VpnPanel`` port.

    Use as ``async with RemnawavePanel(settings) as panel: ...`` or call :meth:`start`
    and :meth:`aclose`. The instance owns one ``aiohttp.ClientSession`` for its life.
    """

    def __init__(
        self,
        settings: RemnawaveSettings,
        *,
        clock: Clock | None = None,
        on_call: PanelCallObserver | None = None,
    ) -> None:
        """*on_call* hears the outcome of every HTTP request sent to the panel (metrics)."""
        self._settings = settings
        self._client = RemnawaveClient(settings, on_call=on_call)
        self._clock: Clock = clock or _UtcClock()
        self._detected: Detected | None = None
        self._line: ApiLine | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        line = self._detected.line if self._detected else "?"
        return f"RemnawavePanel({self._settings.api_root!r}, line={line})"

    @property
    def settings(self) -> RemnawaveSettings:
        return self._settings

    def username_for(self, subscription_id: int, customer_id: int = 0) -> str:
        """The panel username of a shop subscription (``settings.username_template``)."""
        return self._settings.username_for(subscription_id, customer_id)

    # -- life cycle -----------------------------------------------------------------
    async def start(self, *, detect_now: bool = True) -> None:
        """Open the session and detect the API line.

        A panel that cannot be reached does not fail the start: detection is retried on
        the first call. A wrong token or an unsupported version does fail it.
        """
        await self._client.start()
        if detect_now:
            try:
                await self._ensure_line()
            except PanelUnavailableError as exc:
                log.warning("remnawave: panel unreachable at start, will detect later: %s", exc)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> RemnawavePanel:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _ensure_line(self) -> ApiLine:
        if self._line is not None:
            return self._line
        async with self._lock:
            if self._line is None:
                found = await detect(self._client, self._settings.api_line)
                self._detected = found
                self._line = ApiLine3(self._client) if found.line == "3" else ApiLine2(self._client)
                log.info(
                    "remnawave: panel version %s, API line %s (%s)",
                    found.version or "unknown",
                    found.line,
                    found.how,
                )
        return self._line

    # -- port: info -----------------------------------------------------------------
    async def info(self) -> PanelInfo:
        await self._ensure_line()
        assert self._detected is not None
        return PanelInfo(version=self._detected.version, api_line=self._detected.line)

    # -- ownership ------------------------------------------------------------------
    def _require_owned(self, raw: Mapping[str, Any]) -> None:
        tag = raw.get("tag")
        if tag != self._settings.shop_tag:
            raise PanelNotOwnedError(
                f"panel user {raw.get('username')!r} ({user_key(raw)}) carries tag {tag!r}, "
                f"not the shop tag {self._settings.shop_tag!r}; the shop will not modify it "
                "unless an admin links it"
            )

    async def _owned(self, key: str) -> tuple[ApiLine, dict[str, Any]]:
        line = await self._ensure_line()
        raw = await line.get(key)
        if raw is None:
            raise PanelNotFoundError(f"panel user {key} not found", vendor_code="A063", status=404)
        self._require_owned(raw)
        return line, raw

    # -- port: apply ----------------------------------------------------------------
    def _check_access(self, access: PanelAccess) -> None:
        if not USERNAME_PATTERN.match(access.username):
            raise PanelInvalidError(
                f"username {access.username!r} is not a valid Remnawave username "
                "(^[a-zA-Z0-9_-]{3,36}$); build it with settings.username_for()"
            )
        if access.tag not in (None, self._settings.shop_tag):
            raise PanelInvalidError(
                f"PanelAccess.tag {access.tag!r} would replace the shop tag "
                f"{self._settings.shop_tag!r}, which marks the user as the shop's; "
                "leave it None"
            )
        if access.traffic_limit_bytes < 0:
            raise PanelInvalidError("traffic_limit_bytes cannot be negative")
        if access.device_limit is not None and access.device_limit < 0:
            raise PanelInvalidError("device_limit cannot be negative")
        detected = self._detected
        if (
            access.traffic_reset is TrafficReset.MONTH_ROLLING
            and detected is not None
            and not detected.month_rolling
        ):
            raise PanelInvalidError(
                "the MONTH_ROLLING traffic reset needs Remnawave 2.7 or later; this panel "
                f"({detected.version or 'before 2.7'}) only has NO_RESET/DAY/WEEK/MONTH"
            )

    def _is_expired(self, access: PanelAccess, now: datetime) -> bool:
        return truncate_ms(access.expires_at) <= now + EXPIRY_MARGIN

    def _create_body(self, access: PanelAccess, now: datetime) -> dict[str, Any]:
        expired = self._is_expired(access, now)
        active = access.enabled and not expired
        # An expired access is created DISABLED; its expireAt must still be in the future
        # (the shop never sends a past expiry), so it gets a short placeholder.
        expiry = now + EXPIRED_CREATE_EXPIRY if expired else truncate_ms(access.expires_at)
        body: dict[str, Any] = {
            "username": access.username,
            "expireAt": format_dt(expiry),
            "status": "ACTIVE" if active else "DISABLED",
            "trafficLimitBytes": int(access.traffic_limit_bytes),
            "trafficLimitStrategy": access.traffic_reset.value,
            "activeInternalSquads": list(access.internal_squads),
            "tag": self._settings.shop_tag,
        }
        optional = {
            "hwidDeviceLimit": access.device_limit,
            "externalSquadUuid": access.external_squad,
            "description": access.description,
            "telegramId": access.telegram_id,
            "email": access.email,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body

    def _update_body(
        self, access: PanelAccess, cur: Mapping[str, Any], now: datetime
    ) -> dict[str, Any]:
        """Only what differs. An empty dict means the user already matches."""
        body: dict[str, Any] = {}
        expired = self._is_expired(access, now)
        want_active = access.enabled and not expired
        if not expired:
            wanted = truncate_ms(access.expires_at)
            try:
                current_expiry: datetime | None = parse_dt(cur.get("expireAt"))
            except MappingError:
                current_expiry = None
            if current_expiry != wanted:
                body["expireAt"] = format_dt(wanted)
        status = cur.get("status")
        if want_active:
            # LIMITED belongs to the panel (traffic used up); leave it alone.
            if status in (PanelStatus.DISABLED.value, PanelStatus.EXPIRED.value):
                body["status"] = PanelStatus.ACTIVE.value
        elif status != PanelStatus.DISABLED.value:
            body["status"] = PanelStatus.DISABLED.value
        if cur.get("trafficLimitBytes") != access.traffic_limit_bytes:
            body["trafficLimitBytes"] = int(access.traffic_limit_bytes)
        if cur.get("trafficLimitStrategy") != access.traffic_reset.value:
            body["trafficLimitStrategy"] = access.traffic_reset.value
        if cur.get("hwidDeviceLimit") != access.device_limit:
            body["hwidDeviceLimit"] = access.device_limit
        squads = {
            str(s.get("uuid")) for s in cur.get("activeInternalSquads") or [] if isinstance(s, dict)
        }
        if squads != set(access.internal_squads):
            body["activeInternalSquads"] = list(access.internal_squads)
        simple = {
            "externalSquadUuid": access.external_squad,
            "description": access.description,
            "telegramId": access.telegram_id,
            "email": access.email,
        }
        for field, wanted_value in simple.items():
            if cur.get(field) != wanted_value:
                body[field] = wanted_value
        return body

    async def _explain_write_failure(self, access: PanelAccess, exc: PanelError) -> None:
        """The panel answers an unknown squad with a 500 (A018/A039); say so plainly."""
        if exc.vendor_code not in WRITE_FAILED_CODES or not access.internal_squads:
            return
        try:
            known = {squad.uuid for squad in await self.squads()}
        except PanelError:
            return
        unknown = sorted(set(access.internal_squads) - known)
        if unknown:
            err = PanelInvalidError(
                f"internal squad(s) {unknown} do not exist on the panel "
                f"({exc.vendor_code}: {exc.vendor_message})",
                vendor_code=exc.vendor_code,
                status=exc.status,
            )
            err.vendor_message = exc.vendor_message
            raise err from exc

    async def apply(self, access: PanelAccess) -> PanelUser:
        """Create or update the panel user so that it matches *access*.

        Idempotent: a user that already matches is not written to. An access that has
        expired is applied as DISABLED and its expiry is not sent (the panel keeps its
        own); one created already expired gets a placeholder expiry one minute ahead.
        The returned user's ``key`` is the one to store (it can differ from
        ``access.key`` when that user was gone and the user was found by username).
        """
        line = await self._ensure_line()
        self._check_access(access)
        now = truncate_ms(self._clock.now())

        current: dict[str, Any] | None = None
        if access.key is not None:
            current = await line.get(access.key)
            if current is not None and current.get("username") != access.username:
                log.warning(
                    "remnawave: key %s is user %r, not %r; resolving by username",
                    access.key,
                    current.get("username"),
                    access.username,
                )
                current = None
        if current is None and not access.fresh:
            current = await line.get_by_username(access.username)
        if current is None:
            try:
                return _user(await line.create(self._create_body(access, now)))
            except PanelError as exc:
                if exc.vendor_code not in DUPLICATE_USERNAME_CODES:
                    raise
                # Lost response of an earlier create, or a concurrent apply: adopt the
                # user if it is the shop's (checked below), refuse otherwise.
                current = await line.get_by_username(access.username)
                if current is None:
                    await self._explain_write_failure(access, exc)
                    raise
                log.info("remnawave: user %r already exists; adopting it", access.username)

        self._require_owned(current)
        body = self._update_body(access, current, now)
        if not body:
            return _user(current)
        try:
            return _user(await line.update(user_key(current), body))
        except PanelError as exc:
            await self._explain_write_failure(access, exc)
            raise

    async def link(self, key: str) -> PanelUser:
        line = await self._ensure_line()
        raw = await line.get(key)
        if raw is None:
            raise PanelNotFoundError(f"panel user {key} not found", vendor_code="A063", status=404)
        if raw.get("tag") == self._settings.shop_tag:
            return _user(raw)
        log.warning(
            "remnawave: linking panel user %r (%s, tag %r) to the shop",
            raw.get("username"),
            key,
            raw.get("tag"),
        )
        return _user(await line.update(user_key(raw), {"tag": self._settings.shop_tag}))

    # -- port: reads ----------------------------------------------------------------
    async def get(self, key: str) -> PanelUser | None:
        line = await self._ensure_line()
        raw = await line.get(key)
        return None if raw is None else _user(raw)

    async def find_by_telegram_id(self, telegram_id: int) -> list[PanelUser]:
        line = await self._ensure_line()
        return [_user(raw) for raw in await line.find_by_telegram_id(telegram_id)]

    async def list_users(self, start: int = 0, size: int = 500) -> tuple[list[PanelUser], int]:
        line = await self._ensure_line()
        users, total = await line.list_users(start, size)
        return [_user(raw) for raw in users], total

    async def devices(self, key: str) -> list[PanelDevice]:
        line = await self._ensure_line()
        if not line.valid_key(key):
            raise PanelNotFoundError(f"panel user {key} not found", vendor_code="A063", status=404)
        return self._devices(await line.devices(key))

    @staticmethod
    def _devices(payload: Any) -> list[PanelDevice]:
        try:
            return devices_from_panel(payload)
        except MappingError as exc:
            raise PanelBadResponseError(f"unreadable device list: {exc}") from exc

    async def squads(self) -> list[Squad]:
        await self._ensure_line()
        payload = await self._client.request("GET", "/internal-squads")
        try:
            return [squad_from_panel(s) for s in (payload or {}).get("internalSquads") or []]
        except (MappingError, AttributeError) as exc:
            raise PanelBadResponseError(f"unreadable internal squads: {exc}") from exc

    async def stats(self) -> PanelStats:
        await self._ensure_line()
        try:
            return stats_from_panel(await self._client.request("GET", "/system/stats"))
        except MappingError as exc:
            raise PanelBadResponseError(f"unreadable system stats: {exc}") from exc

    async def probe(self, path: str, params: Mapping[str, str] | None = None) -> None:
        """GET an API path once (no retries) and discard the answer; raises the
        ``PanelError`` of a refusal. For diagnostics: which reads does the token allow?"""
        await self._client.request("GET", path, params=params, retry=False)

    async def health(self) -> bool:
        """True when the panel answers an authenticated request (a 403 counts: the token
        was accepted, it only lacks the system scope). Never raises, never retries."""
        try:
            await self._client.request("GET", "/system/health", retry=False)
        except PanelForbiddenError:
            return True
        except (PanelError, RuntimeError):
            return False
        return True

    # -- port: actions --------------------------------------------------------------
    async def _toggle(self, key: str, action: str, already_code: str) -> PanelUser:
        line, raw = await self._owned(key)
        try:
            return _user(await line.action(user_key(raw), action))
        except PanelConflictError as exc:
            if exc.vendor_code != already_code:
                raise
            fresh = await line.get(user_key(raw))
            return _user(fresh if fresh is not None else raw)

    async def enable(self, key: str) -> PanelUser:
        return await self._toggle(key, "enable", "A030")

    async def disable(self, key: str) -> PanelUser:
        return await self._toggle(key, "disable", "A029")

    async def reset_traffic(self, key: str) -> PanelUser:
        line, raw = await self._owned(key)
        return _user(await line.action(user_key(raw), "reset-traffic"))

    async def revoke(self, key: str) -> PanelUser:
        line, raw = await self._owned(key)
        return _user(await line.action(user_key(raw), "revoke"))

    async def delete(self, key: str) -> None:
        line = await self._ensure_line()
        raw = await line.get(key)
        if raw is None:
            return
        self._require_owned(raw)
        try:
            await line.delete(user_key(raw))
        except PanelNotFoundError:
            return  # A025: deleted meanwhile

    async def remove_device(self, key: str, hwid: str) -> list[PanelDevice]:
        line, raw = await self._owned(key)
        return self._devices(await line.delete_device(user_key(raw), hwid))
