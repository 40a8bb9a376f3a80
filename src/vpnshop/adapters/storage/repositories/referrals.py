"""Referrals and the referee bonus claimed once."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import _Repo
from vpnshop.domain.referral import Referral


class SqlReferrals(_Repo):
    async def claim_bonus(self, referee_id: int, now: datetime) -> int | None:
        r = t.referrals.c
        row = await self._one(
            sa.update(t.referrals)
            .where(r.referee_id == referee_id, r.bonus_granted_at.is_(None))
            .values(bonus_granted_at=now)
            .returning(r.referrer_id)
        )
        return None if row is None else int(row.referrer_id)

    async def add(self, referral: Referral) -> bool:
        row = await self._one(
            self._insert(t.referrals)
            .values(
                referee_id=referral.referee_id,
                referrer_id=referral.referrer_id,
                created_at=referral.created_at,
            )
            .on_conflict_do_nothing(index_elements=["referee_id"])
            .returning(t.referrals.c.referee_id)
        )
        return row is not None

    async def referrer_of(self, customer_id: int) -> int | None:
        row = await self._one(
            sa.select(t.referrals.c.referrer_id).where(t.referrals.c.referee_id == customer_id)
        )
        return int(row.referrer_id) if row else None

    async def referees_of(self, customer_id: int) -> list[int]:
        rows = await self._all(
            sa.select(t.referrals.c.referee_id)
            .where(t.referrals.c.referrer_id == customer_id)
            .order_by(t.referrals.c.created_at)
        )
        return [int(r.referee_id) for r in rows]
