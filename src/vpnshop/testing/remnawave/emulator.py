"""The emulator: its life cycle, its routes by version, and the helpers a test uses to
stage a scenario."""

from __future__ import annotations

import asyncio
import math
import re
import uuid as uuidlib
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from vpnshop.testing.remnawave.devices import _Devices
from vpnshop.testing.remnawave.model import (
    LEGACY_EXPIRATION,
    EmuDevice,
    EmuSquad,
    EmuUser,
    SentWebhook,
    _ms,
    _Route,
    iso,
)
from vpnshop.testing.remnawave.system import _System
from vpnshop.testing.remnawave.transport import _Transport
from vpnshop.testing.remnawave.user_actions import _UserActions
from vpnshop.testing.remnawave.users_read import _UserReads
from vpnshop.testing.remnawave.users_write import _UserWrites


class RemnawaveEmulator(_Transport, _UserWrites, _UserReads, _UserActions, _Devices, _System):
    """The fake panel. ``async with RemnawaveEmulator() as panel: panel.base_url ..."""

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
