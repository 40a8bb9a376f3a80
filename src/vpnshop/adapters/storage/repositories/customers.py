"""Customers."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import Row, _Repo, prepared
from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import ConflictError


def _customer(r: Row) -> Customer:
    return Customer(
        id=r.id,
        telegram_id=r.telegram_id,
        language=r.language,
        username=r.username,
        referrer_id=r.referrer_id,
        campaign=r.campaign,
        banned=r.banned,
        referral_code=r.referral_code,
        unreachable=r.unreachable,
        discount_code=r.discount_code,
        deleted_at=r.deleted_at,
        created_at=r.created_at,
    )


def _customer_values(c: Customer) -> dict[str, Any]:
    return {
        "telegram_id": c.telegram_id,
        "language": c.language,
        "username": c.username,
        "referrer_id": c.referrer_id,
        "campaign": c.campaign,
        "banned": c.banned,
        "referral_code": c.referral_code,
        "unreachable": c.unreachable,
        "discount_code": c.discount_code,
        "deleted_at": c.deleted_at,
        "created_at": c.created_at,
    }


_OWN_METHODS = ("referral_code", "unreachable", "discount_code")


_BY_ID = prepared(sa.select(t.customers).where(t.customers.c.id == sa.bindparam("customer_id")))


class SqlCustomers(_Repo):
    async def add(self, customer: Customer) -> Customer:
        stmt = (
            self._insert(t.customers)
            .values(**_customer_values(customer))
            .on_conflict_do_nothing(index_elements=["telegram_id"])
            .returning(t.customers.c.id)
        )
        row = await self._one(stmt)
        if row is None:
            raise ConflictError(f"customer with Telegram id {customer.telegram_id} exists")
        return Customer(**{**_customer_values(customer), "id": row.id})

    async def get_or_add(self, customer: Customer) -> tuple[Customer, bool]:
        # Two statements on purpose: in READ COMMITTED the INSERT waits for a concurrent
        # insert of the same Telegram id to commit, and only a new statement (a new
        # snapshot) sees that row. One statement with a CTE would see nothing.
        try:
            return await self.add(customer), True
        except ConflictError:
            existing = await self.by_telegram_id(customer.telegram_id)
            if existing is None:  # stored and deleted again in between: no customer to give
                raise
            return existing, False

    async def get(self, customer_id: int) -> Customer | None:
        row = await self._one(_BY_ID, {"customer_id": customer_id})
        return _customer(row) if row else None

    async def by_telegram_id(self, telegram_id: int) -> Customer | None:
        row = await self._one(
            sa.select(t.customers).where(t.customers.c.telegram_id == telegram_id)
        )
        return _customer(row) if row else None

    async def lock(self, customer_id: int) -> None:
        if self._pg:
            await self._conn.execute(
                sa.select(t.customers.c.id)
                .where(t.customers.c.id == customer_id)
                # NO KEY UPDATE: it must not conflict with the KEY SHARE locks that inserts
                # of rows referencing the customer take (that would deadlock).
                .with_for_update(key_share=True)
            )

    async def update(self, customer: Customer) -> None:
        values = _customer_values(customer)
        # These move only through their own methods, so that a stale copy cannot undo them.
        for key in ("created_at", *_OWN_METHODS):
            del values[key]
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(
                    sa.update(t.customers).where(t.customers.c.id == customer.id).values(**values)
                )
        except IntegrityError as e:
            raise ConflictError(
                f"Telegram id {customer.telegram_id} belongs to another customer"
            ) from e

    async def count(self) -> int:
        return int(
            (
                await self._conn.execute(sa.select(sa.func.count()).select_from(t.customers))
            ).scalar_one()
        )

    async def by_referral_code(self, code: str) -> Customer | None:
        row = await self._one(sa.select(t.customers).where(t.customers.c.referral_code == code))
        return _customer(row) if row else None

    async def set_referral_code(self, customer_id: int, code: str) -> str | None:
        c = t.customers.c
        try:
            async with self._conn.begin_nested():  # a unique violation must not end the tx
                await self._conn.execute(
                    sa.update(t.customers)
                    .where(c.id == customer_id, c.referral_code.is_(None))
                    .values(referral_code=code)
                )
        except IntegrityError as e:
            raise ConflictError(f"referral code {code!r} is taken") from e
        row = await self._one(sa.select(c.referral_code).where(c.id == customer_id))
        return None if row is None else row.referral_code

    async def _set_if_null(self, customer_id: int, column: str, value: object) -> bool:
        col = t.customers.c[column]
        row = await self._one(
            sa.update(t.customers)
            .where(t.customers.c.id == customer_id, col.is_(None))
            .values({column: value})
            .returning(t.customers.c.id)
        )
        return row is not None

    async def _set_changed(self, customer_id: int, column: str, value: object) -> bool:
        col = t.customers.c[column]
        differs = col.is_not(None) if value is None else sa.or_(col.is_(None), col != value)
        row = await self._one(
            sa.update(t.customers)
            .where(t.customers.c.id == customer_id, differs)
            .values({column: value})
            .returning(t.customers.c.id)
        )
        return row is not None

    async def set_referrer(self, customer_id: int, referrer_id: int) -> bool:
        return await self._set_if_null(customer_id, "referrer_id", referrer_id)

    async def set_campaign(self, customer_id: int, campaign: str) -> bool:
        return await self._set_if_null(customer_id, "campaign", campaign)

    async def set_language(self, customer_id: int, language: str) -> bool:
        return await self._set_changed(customer_id, "language", language)

    async def set_unreachable(self, customer_id: int, unreachable: bool) -> bool:
        return await self._set_changed(customer_id, "unreachable", unreachable)

    async def set_discount_code(self, customer_id: int, code: str | None) -> bool:
        return await self._set_changed(customer_id, "discount_code", code)
