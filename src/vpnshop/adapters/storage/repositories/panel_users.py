"""The cached view of panel users (``panel_users``), one row per subscription."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import _Repo, prepared
from vpnshop.domain.panel import PanelStatus, PanelUserView

if TYPE_CHECKING:
    from vpnshop.ports.storage import PanelUserRepository

_COLUMNS = (
    "panel_key",
    "status",
    "used_traffic_bytes",
    "lifetime_used_traffic_bytes",
    "traffic_limit_bytes",
    "online_at",
    "first_connected_at",
    "devices",
    "last_event",
    "updated_at",
)


def _view(r: Any) -> PanelUserView:
    return PanelUserView(
        subscription_id=r.subscription_id,
        panel_key=r.panel_key,
        status=PanelStatus(r.status),
        used_traffic_bytes=r.used_traffic_bytes,
        lifetime_used_traffic_bytes=r.lifetime_used_traffic_bytes,
        traffic_limit_bytes=r.traffic_limit_bytes,
        online_at=r.online_at,
        first_connected_at=r.first_connected_at,
        devices=r.devices,
        last_event=r.last_event,
        updated_at=r.updated_at,
    )


_BY_SUBSCRIPTION = prepared(
    sa.select(t.panel_users).where(
        t.panel_users.c.subscription_id == sa.bindparam("subscription_id")
    )
)


class SqlPanelUsers(_Repo):
    """``upsert`` is one ``INSERT ... ON CONFLICT (subscription_id) DO UPDATE``."""

    async def upsert(self, view: PanelUserView) -> None:
        values = {
            "subscription_id": view.subscription_id,
            "panel_key": view.panel_key,
            "status": view.status.value,
            "used_traffic_bytes": view.used_traffic_bytes,
            "lifetime_used_traffic_bytes": view.lifetime_used_traffic_bytes,
            "traffic_limit_bytes": view.traffic_limit_bytes,
            "online_at": view.online_at,
            "first_connected_at": view.first_connected_at,
            "devices": view.devices,
            "last_event": view.last_event,
            "updated_at": view.updated_at,
        }
        insert = self._insert(t.panel_users).values(values)
        stmt = insert.on_conflict_do_update(
            index_elements=[t.panel_users.c.subscription_id],
            set_={name: insert.excluded[name] for name in _COLUMNS},
        )
        await self._conn.execute(stmt)

    async def get(self, subscription_id: int) -> PanelUserView | None:
        row = await self._one(_BY_SUBSCRIPTION, {"subscription_id": subscription_id})
        return None if row is None else _view(row)

    async def find_subscription(self, panel_key: str, panel_username: str) -> int | None:
        s = t.subscriptions
        for condition in (s.c.panel_key == panel_key, s.c.panel_username == panel_username):
            query = sa.select(s.c.id).where(condition).order_by(s.c.id).limit(1)
            found = (await self._conn.execute(query)).scalar()
            if found is not None:
                return int(found)
        return None


if TYPE_CHECKING:

    def _check_repo(conn: AsyncConnection) -> PanelUserRepository:
        return SqlPanelUsers(conn)
