"""Plans."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import Row, _Repo
from vpnshop.domain.money import Money
from vpnshop.domain.money import currency as currency_of
from vpnshop.domain.plan import Plan, TrafficReset


def _plan(r: Row) -> Plan:
    return Plan(
        code=r.code,
        names=dict(r.names),
        duration_days=r.duration_days,
        prices={c: Money(int(v), currency_of(c)) for c, v in r.prices.items()},
        traffic_limit_bytes=r.traffic_limit_bytes,
        traffic_reset=TrafficReset(r.traffic_reset),
        device_limit=r.device_limit,
        squads=tuple(r.squads),
        active=r.active,
        sort_order=r.sort_order,
    )


def _plan_values(p: Plan) -> dict[str, Any]:
    return {
        "code": p.code,
        "names": dict(p.names),
        "duration_days": p.duration_days,
        "prices": {c: m.minor for c, m in sorted(p.prices.items())},
        "traffic_limit_bytes": p.traffic_limit_bytes,
        "traffic_reset": p.traffic_reset.value,
        "device_limit": p.device_limit,
        "squads": list(p.squads),
        "active": p.active,
        "sort_order": p.sort_order,
    }


class SqlPlans(_Repo):
    async def get(self, code: str) -> Plan | None:
        row = await self._one(sa.select(t.plans).where(t.plans.c.code == code))
        return _plan(row) if row else None

    async def list(self, *, active_only: bool = True) -> list[Plan]:
        stmt = sa.select(t.plans).order_by(t.plans.c.sort_order, t.plans.c.code)
        if active_only:
            stmt = stmt.where(t.plans.c.active.is_(True))
        return [_plan(r) for r in await self._all(stmt)]

    async def upsert(self, plan: Plan) -> bool:
        current = await self.get(plan.code)
        if current == plan:
            return False
        values = _plan_values(plan)
        if current is None:
            # Two loads of a new plan at once (two replicas starting) must not fail: the
            # second insert does nothing, and updates the row the first one made.
            insert = self._insert(t.plans).values(**values).on_conflict_do_nothing()
            if (await self._conn.execute(insert)).rowcount == 1:
                return True
        await self._conn.execute(
            sa.update(t.plans).where(t.plans.c.code == plan.code).values(**values)
        )
        return True
