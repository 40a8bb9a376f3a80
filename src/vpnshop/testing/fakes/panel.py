"""A Remnawave-like panel in memory."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from vpnshop.domain.panel import (
    PanelAccess,
    PanelDevice,
    PanelInfo,
    PanelStats,
    PanelStatus,
    PanelUser,
    Squad,
)
from vpnshop.ports.clock import Clock
from vpnshop.ports.panel import (
    PanelNotFoundError,
    PanelNotOwnedError,
    PanelUnavailableError,
    VpnPanel,
)
from vpnshop.testing.fakes.clock import FakeClock


class FakePanel:
    """A Remnawave-like panel in memory.

    The shop owns users carrying its *tag* (those it created, or linked with ``link``);
    ``add_foreign_user`` makes users the shop does not own. Set ``down = True`` to make
    every call raise PanelUnavailableError. ``calls`` records (method, key) pairs.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        tag: str = "VPNSHOP",
        version: str = "2.1.0",
        api_line: str = "2",
        sub_base_url: str = "https://panel.example/sub/",
        squads: tuple[Squad, ...] = (Squad("sq-default", "Default"),),
    ) -> None:
        self._clock = clock or FakeClock()
        self.tag = tag
        self.version = version
        self.api_line = api_line
        self.sub_base_url = sub_base_url
        self._squads = list(squads)
        self.users: dict[str, PanelUser] = {}
        self.device_lists: dict[str, list[PanelDevice]] = {}
        self.calls: list[tuple[str, str | None]] = []
        self.down = False
        self._seq = itertools.count(1)

    # -- test helpers ---------------------------------------------------------------
    def add_foreign_user(
        self,
        username: str,
        *,
        telegram_id: int | None = None,
        expires_at: datetime | None = None,
        tag: str | None = None,
    ) -> PanelUser:
        """A user created outside the shop (not owned unless *tag* is the shop's)."""
        user = self._new_user(
            username, expires_at or self._clock.now(), tag=tag, telegram_id=telegram_id
        )
        self.users[user.key] = user
        return user

    def add_device(self, key: str, device: PanelDevice) -> None:
        self.device_lists.setdefault(key, []).append(device)

    def is_owned(self, key: str) -> bool:
        user = self.users.get(key)
        return user is not None and user.tag == self.tag

    # -- the port -------------------------------------------------------------------
    async def info(self) -> PanelInfo:
        self._call("info")
        return PanelInfo(version=self.version, api_line=self.api_line)

    async def apply(self, access: PanelAccess) -> PanelUser:
        self._call("apply", access.key)
        now = self._clock.now()
        existing: PanelUser | None
        if access.key is not None:
            existing = self._owned(access.key)
        else:
            # Retrying a create whose answer was lost must not make a second user.
            existing = next((u for u in self.users.values() if u.username == access.username), None)
            if existing is not None and existing.tag != self.tag:
                raise PanelNotOwnedError(f"username {access.username} belongs to someone else")
        expired = access.expires_at <= now
        if expired:
            # The shop never sends an expiry in the past; the user is disabled instead.
            expires_at = existing.expires_at if existing is not None else now
        else:
            expires_at = access.expires_at
        status = PanelStatus.ACTIVE if access.enabled and not expired else PanelStatus.DISABLED
        base = existing or self._new_user(access.username, expires_at, tag=self.tag)
        user = attrs.evolve(
            base,
            username=access.username,
            status=status,
            expires_at=expires_at,
            traffic_limit_bytes=access.traffic_limit_bytes,
            traffic_reset=access.traffic_reset,
            device_limit=access.device_limit,
            internal_squads=access.internal_squads,
            external_squad=access.external_squad,
            description=access.description,
            tag=self.tag,
            telegram_id=access.telegram_id,
            email=access.email,
        )
        self.users[user.key] = user
        return user

    async def link(self, key: str) -> PanelUser:
        self._call("link", key)
        user = self._existing(key)
        linked = attrs.evolve(user, tag=self.tag)
        self.users[key] = linked
        return linked

    async def get(self, key: str) -> PanelUser | None:
        self._call("get", key)
        return self.users.get(key)

    async def find_by_telegram_id(self, telegram_id: int) -> list[PanelUser]:
        self._call("find_by_telegram_id", str(telegram_id))
        return [u for u in self.users.values() if u.telegram_id == telegram_id]

    async def list_users(self, start: int = 0, size: int = 500) -> tuple[list[PanelUser], int]:
        self._call("list_users", None)
        users = list(self.users.values())
        return users[start : start + size], len(users)

    async def enable(self, key: str) -> PanelUser:
        self._call("enable", key)
        return self._store(attrs.evolve(self._owned(key), status=PanelStatus.ACTIVE))

    async def disable(self, key: str) -> PanelUser:
        self._call("disable", key)
        return self._store(attrs.evolve(self._owned(key), status=PanelStatus.DISABLED))

    async def reset_traffic(self, key: str) -> PanelUser:
        self._call("reset_traffic", key)
        user = self._owned(key)
        status = PanelStatus.ACTIVE if user.status is PanelStatus.LIMITED else user.status
        return self._store(attrs.evolve(user, used_traffic_bytes=0, status=status))

    async def revoke(self, key: str) -> PanelUser:
        self._call("revoke", key)
        user = self._owned(key)
        short = f"s{next(self._seq):08d}"
        return self._store(
            attrs.evolve(user, short_uuid=short, subscription_url=self.sub_base_url + short)
        )

    async def delete(self, key: str) -> None:
        self._call("delete", key)
        if key not in self.users:
            return
        self._owned(key)
        del self.users[key]
        self.device_lists.pop(key, None)

    async def devices(self, key: str) -> list[PanelDevice]:
        self._call("devices", key)
        self._owned(key)
        return list(self.device_lists.get(key, []))

    async def remove_device(self, key: str, hwid: str) -> list[PanelDevice]:
        self._call("remove_device", key)
        self._owned(key)
        remaining = [d for d in self.device_lists.get(key, []) if d.hwid != hwid]
        self.device_lists[key] = remaining
        return list(remaining)

    async def squads(self) -> list[Squad]:
        self._call("squads")
        return [
            attrs.evolve(
                s, members=sum(1 for u in self.users.values() if s.uuid in u.internal_squads)
            )
            for s in self._squads
        ]

    async def stats(self) -> PanelStats:
        self._call("stats")
        by_status: dict[str, int] = {}
        for user in self.users.values():
            by_status[user.status.value] = by_status.get(user.status.value, 0) + 1
        return PanelStats(users_total=len(self.users), users_by_status=by_status)

    async def health(self) -> bool:
        self.calls.append(("health", None))
        return not self.down

    # -- internals ------------------------------------------------------------------
    def _call(self, method: str, key: str | None = None) -> None:
        self.calls.append((method, key))
        if self.down:
            raise PanelUnavailableError("the fake panel is down", status=503)

    def _new_user(
        self,
        username: str,
        expires_at: datetime,
        *,
        tag: str | None,
        telegram_id: int | None = None,
    ) -> PanelUser:
        n = next(self._seq)
        short = f"s{n:08d}"
        return PanelUser(
            key=f"u{n:06d}",
            username=username,
            short_uuid=short,
            status=PanelStatus.ACTIVE,
            expires_at=expires_at,
            subscription_url=self.sub_base_url + short,
            tag=tag,
            telegram_id=telegram_id,
            created_at=self._clock.now(),
        )

    def _existing(self, key: str) -> PanelUser:
        user = self.users.get(key)
        if user is None:
            raise PanelNotFoundError(f"no panel user {key}", status=404)
        return user

    def _owned(self, key: str) -> PanelUser:
        user = self._existing(key)
        if user.tag != self.tag:
            raise PanelNotOwnedError(f"panel user {key} is not the shop's")
        return user

    def _store(self, user: PanelUser) -> PanelUser:
        self.users[user.key] = user
        return user


if TYPE_CHECKING:
    _panel: VpnPanel = FakePanel()
