"""The ledger and its holds: the balance is the sum of the entries."""

from __future__ import annotations

import sqlalchemy as sa

from vpnshop.adapters.storage import tables as t
from vpnshop.adapters.storage.repositories.base import Row, _Repo, prepared
from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import InsufficientFundsError
from vpnshop.domain.ledger import EntryKind, Hold, HoldStatus, LedgerEntry
from vpnshop.domain.money import Currency, Money
from vpnshop.domain.money import currency as currency_of
from vpnshop.ports.storage import BalanceMismatch


def _entry(r: Row) -> LedgerEntry:
    return LedgerEntry(
        id=r.id,
        customer_id=r.customer_id,
        amount=Money(r.amount_minor, currency_of(r.currency)),
        kind=EntryKind(r.kind),
        idempotency_key=r.idempotency_key,
        actor=Actor.parse(r.actor),
        reference=r.reference,
        memo=r.memo,
        created_at=r.created_at,
    )


_BALANCES = prepared(
    sa.select(t.balances.c.currency, t.balances.c.amount_minor)
    .where(t.balances.c.customer_id == sa.bindparam("customer_id"))
    .order_by(t.balances.c.currency)
)


class SqlLedger(_Repo):
    async def post(self, entry: LedgerEntry) -> bool:
        inserted = await self._one(
            self._insert(t.ledger)
            .values(
                customer_id=entry.customer_id,
                amount_minor=entry.amount.minor,
                currency=entry.amount.currency.code,
                kind=entry.kind.value,
                idempotency_key=entry.idempotency_key,
                actor=str(entry.actor),
                reference=entry.reference,
                memo=entry.memo,
                created_at=entry.created_at,
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(t.ledger.c.id)
        )
        if inserted is None:
            return False
        b = t.balances.c
        delta = entry.amount.minor
        if delta > 0:
            stmt = self._insert(t.balances).values(
                customer_id=entry.customer_id,
                currency=entry.amount.currency.code,
                amount_minor=delta,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["customer_id", "currency"],
                set_={"amount_minor": b.amount_minor + stmt.excluded.amount_minor},
            )
            await self._conn.execute(stmt)
            return True
        # A debit is one conditional UPDATE: concurrent debits serialise on the row and
        # each re-checks the condition, so the balance can never go below zero.
        row = await self._one(
            sa.update(t.balances)
            .where(
                b.customer_id == entry.customer_id,
                b.currency == entry.amount.currency.code,
                b.amount_minor + delta >= 0,
            )
            .values(amount_minor=b.amount_minor + delta)
            .returning(b.amount_minor)
        )
        if row is None:
            raise InsufficientFundsError(
                f"customer {entry.customer_id}: balance too low for {-entry.amount}"
            )
        return True

    async def balance(self, customer_id: int, currency: Currency) -> Money:
        row = await self._one(
            sa.select(t.balances.c.amount_minor).where(
                t.balances.c.customer_id == customer_id, t.balances.c.currency == currency.code
            )
        )
        return Money(int(row.amount_minor) if row else 0, currency)

    async def entries(
        self, customer_id: int, limit: int = 50, offset: int = 0
    ) -> list[LedgerEntry]:
        stmt = (
            sa.select(t.ledger)
            .where(t.ledger.c.customer_id == customer_id)
            .order_by(t.ledger.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_entry(r) for r in await self._all(stmt)]

    async def balances(self, customer_id: int) -> list[Money]:
        rows = await self._all(_BALANCES, {"customer_id": customer_id})
        return [Money(int(r.amount_minor), currency_of(r.currency)) for r in rows]

    async def totals(self, customer_id: int, kind: EntryKind) -> list[Money]:
        c = t.ledger.c
        rows = await self._all(
            sa.select(c.currency, sa.func.sum(c.amount_minor).label("total"))
            .where(c.customer_id == customer_id, c.kind == kind.value)
            .group_by(c.currency)
            .order_by(c.currency)
        )
        return [Money(int(r.total), currency_of(r.currency)) for r in rows]

    async def has_key(self, idempotency_key: str) -> bool:
        stmt = sa.select(t.ledger.c.id).where(t.ledger.c.idempotency_key == idempotency_key)
        return await self._one(stmt) is not None

    async def mismatches(self) -> list[BalanceMismatch]:
        sums = (
            sa.select(
                t.ledger.c.customer_id,
                t.ledger.c.currency,
                sa.func.sum(t.ledger.c.amount_minor).label("total"),
            )
            .group_by(t.ledger.c.customer_id, t.ledger.c.currency)
            .subquery()
        )
        b = t.balances.c
        # A full outer join in two halves (SQLite before 3.39 has none).
        left = sa.select(
            b.customer_id,
            b.currency,
            b.amount_minor.label("stored"),
            sa.func.coalesce(sums.c.total, 0).label("summed"),
        ).select_from(
            t.balances.outerjoin(
                sums, sa.and_(sums.c.customer_id == b.customer_id, sums.c.currency == b.currency)
            )
        )
        right = (
            sa.select(
                sums.c.customer_id,
                sums.c.currency,
                sa.literal(0).label("stored"),
                sums.c.total.label("summed"),
            )
            .select_from(
                sums.outerjoin(
                    t.balances,
                    sa.and_(sums.c.customer_id == b.customer_id, sums.c.currency == b.currency),
                )
            )
            .where(b.customer_id.is_(None))
        )
        rows = await self._all(sa.union_all(left, right))
        return [
            BalanceMismatch(r.customer_id, r.currency, int(r.stored), int(r.summed))
            for r in rows
            if int(r.stored) != int(r.summed)
        ]


def _hold(r: Row) -> Hold:
    return Hold(
        id=r.id,
        customer_id=r.customer_id,
        amount=Money(r.amount_minor, currency_of(r.currency)),
        order_id=r.order_id,
        status=HoldStatus(r.status),
        created_at=r.created_at,
    )


class SqlHolds(_Repo):
    async def add(self, hold: Hold) -> None:
        await self._conn.execute(
            sa.insert(t.holds).values(
                id=hold.id,
                customer_id=hold.customer_id,
                amount_minor=hold.amount.minor,
                currency=hold.amount.currency.code,
                order_id=hold.order_id,
                status=hold.status.value,
                created_at=hold.created_at,
            )
        )

    async def get(self, hold_id: str) -> Hold | None:
        row = await self._one(sa.select(t.holds).where(t.holds.c.id == hold_id))
        return _hold(row) if row else None

    async def settle(self, hold_id: str, to: HoldStatus) -> Hold | None:
        if to is HoldStatus.HELD:
            return None
        row = await self._one(
            sa.update(t.holds)
            .where(t.holds.c.id == hold_id, t.holds.c.status == HoldStatus.HELD.value)
            .values(status=to.value)
            .returning(t.holds)
        )
        return _hold(row) if row else None
