"""Promo codes and their redemptions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import Row, _Repo
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.money import Money
from vpnshop.domain.money import currency as currency_of
from vpnshop.domain.promo import PromoCode, PromoKind, PromoRedemption, normalise_code


def _promo(r: Row) -> PromoCode:
    return PromoCode(
        code=r.code,
        kind=PromoKind(r.kind),
        value=r.value,
        currency=r.currency,
        max_uses=r.max_uses,
        uses=r.uses,
        once_per_customer=r.once_per_customer,
        valid_until=r.valid_until,
        min_amount=(
            Money(r.min_amount_minor, currency_of(r.min_amount_currency))
            if r.min_amount_minor is not None
            else None
        ),
        plan_codes=frozenset(r.plan_codes),
        active=r.active,
        created_at=r.created_at,
    )


def _promo_values(p: PromoCode) -> dict[str, Any]:
    return {
        "code": p.code,
        "kind": p.kind.value,
        "value": p.value,
        "currency": p.currency,
        "max_uses": p.max_uses,
        "uses": p.uses,
        "once_per_customer": p.once_per_customer,
        "valid_until": p.valid_until,
        "min_amount_minor": p.min_amount.minor if p.min_amount else None,
        "min_amount_currency": p.min_amount.currency.code if p.min_amount else None,
        "plan_codes": sorted(p.plan_codes),
        "active": p.active,
        "created_at": p.created_at,
    }


class SqlPromos(_Repo):
    async def add(self, promo: PromoCode) -> None:
        row = await self._one(
            self._insert(t.promo_codes)
            .values(**_promo_values(promo))
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(t.promo_codes.c.code)
        )
        if row is None:
            raise ConflictError(f"promo code {promo.code} exists")

    async def get(self, code: str) -> PromoCode | None:
        row = await self._one(
            sa.select(t.promo_codes).where(t.promo_codes.c.code == normalise_code(code))
        )
        return _promo(row) if row else None

    async def redeemed(self, code: str, customer_id: int) -> bool:
        r = t.promo_redemptions.c
        stmt = sa.select(r.id).where(r.code == normalise_code(code), r.customer_id == customer_id)
        return await self._one(stmt.limit(1)) is not None

    async def list(self, *, active_only: bool = False) -> list[PromoCode]:
        stmt = sa.select(t.promo_codes).order_by(t.promo_codes.c.code)
        if active_only:
            stmt = stmt.where(t.promo_codes.c.active.is_(True))
        return [_promo(r) for r in await self._all(stmt)]

    async def update(self, promo: PromoCode) -> None:
        values = _promo_values(promo)
        for key in ("code", "uses", "created_at"):  # uses only moves through redeem()
            del values[key]
        await self._conn.execute(
            sa.update(t.promo_codes).where(t.promo_codes.c.code == promo.code).values(**values)
        )

    async def redeem(
        self, redemption: PromoRedemption, *, once_per_customer: bool, max_uses: int | None
    ) -> bool:
        code = normalise_code(redemption.code)
        counted = await self._one(
            sa.update(t.promo_codes)
            .where(
                t.promo_codes.c.code == code,
                sa.or_(
                    t.promo_codes.c.max_uses.is_(None),
                    t.promo_codes.c.uses < t.promo_codes.c.max_uses,
                ),
            )
            .values(uses=t.promo_codes.c.uses + 1)
            .returning(t.promo_codes.c.code)
        )
        if counted is None:
            return False
        inserted = await self._one(
            self._insert(t.promo_redemptions)
            .values(
                code=code,
                customer_id=redemption.customer_id,
                once_key=code if once_per_customer else None,
                order_id=redemption.order_id,
                at=redemption.at,
            )
            .on_conflict_do_nothing(index_elements=["code", "customer_id", "once_key"])
            .returning(t.promo_redemptions.c.id)
        )
        if inserted is None:
            # Already redeemed: give the use back (same transaction, so nobody saw it).
            await self._conn.execute(
                sa.update(t.promo_codes)
                .where(t.promo_codes.c.code == code)
                .values(uses=t.promo_codes.c.uses - 1)
            )
            return False
        return True
