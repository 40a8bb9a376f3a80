"""The SQLAlchemy unit of work: one connection, one transaction, explicit commit."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Self

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vpnshop.adapters.storage import settle_pg
from vpnshop.adapters.storage.repositories import (
    SqlAudit,
    SqlBroadcasts,
    SqlCursors,
    SqlCustomers,
    SqlHolds,
    SqlLeases,
    SqlLedger,
    SqlOrders,
    SqlOutbox,
    SqlPanelUsers,
    SqlPayments,
    SqlPlans,
    SqlPromos,
    SqlReferrals,
    SqlSubscriptions,
    SqlTrials,
)
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.domain.settlement import Effects
from vpnshop.ports.storage import StorageUnavailableError

if TYPE_CHECKING:
    from vpnshop.ports.storage import AtomicSettlement, UnitOfWork


class SqlAlchemyUnitOfWork:
    """``async with SqlAlchemyUnitOfWork(engine) as uow: ...; await uow.commit()``.

    A block left without commit rolls back. A connection failure surfaces as
    StorageUnavailableError so that shells can answer "try again later".
    """

    customers: SqlCustomers
    plans: SqlPlans
    subscriptions: SqlSubscriptions
    trials: SqlTrials
    orders: SqlOrders
    payments: SqlPayments
    ledger: SqlLedger
    holds: SqlHolds
    promos: SqlPromos
    referrals: SqlReferrals
    audit: SqlAudit
    outbox: SqlOutbox
    panel_users: SqlPanelUsers
    cursors: SqlCursors
    broadcasts: SqlBroadcasts
    leases: SqlLeases

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        try:
            conn = await self._engine.connect()
            await conn.begin()
        except (OperationalError, OSError, DBAPIError) as e:
            raise StorageUnavailableError(str(e)) from e
        self._conn = conn
        self._bind(conn)
        return self

    def _bind(self, conn: AsyncConnection) -> None:
        self.customers = SqlCustomers(conn)
        self.plans = SqlPlans(conn)
        self.subscriptions = SqlSubscriptions(conn)
        self.trials = SqlTrials(conn)
        self.orders = SqlOrders(conn)
        self.payments = SqlPayments(conn)
        self.ledger = SqlLedger(conn)
        self.holds = SqlHolds(conn)
        self.promos = SqlPromos(conn)
        self.referrals = SqlReferrals(conn)
        self.audit = SqlAudit(conn)
        self.outbox = SqlOutbox(conn)
        self.panel_users = SqlPanelUsers(conn)
        self.cursors = SqlCursors(conn)
        self.broadcasts = SqlBroadcasts(conn)
        self.leases = SqlLeases(conn)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction():
                await conn.rollback()
        finally:
            await conn.close()

    def can_settle(self, effects: Effects) -> bool:
        return self._engine.dialect.name == "postgresql" and settle_pg.supports(effects)

    async def settle(
        self,
        payment_id: str,
        to: PaymentStatus,
        now: datetime,
        *,
        external_id: str | None,
        saved_method_id: str | None,
        effects: Effects,
    ) -> Payment | None:
        assert self._conn is not None, "settle outside the unit of work"
        return await settle_pg.settle(
            self._conn,
            payment_id,
            to,
            now,
            external_id=external_id,
            saved_method_id=saved_method_id,
            effects=effects,
        )

    async def commit(self) -> None:
        assert self._conn is not None, "commit outside the unit of work"
        try:
            await self._conn.commit()
        except (OperationalError, OSError) as e:
            raise StorageUnavailableError(str(e)) from e

    async def rollback(self) -> None:
        assert self._conn is not None, "rollback outside the unit of work"
        await self._conn.rollback()


def sqlalchemy_uow_factory(engine: AsyncEngine) -> Callable[[], SqlAlchemyUnitOfWork]:
    def factory() -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(engine)

    return factory


if TYPE_CHECKING:
    from collections.abc import Callable

    def _check(engine: AsyncEngine) -> UnitOfWork:
        return SqlAlchemyUnitOfWork(engine)

    def _check_settle(engine: AsyncEngine) -> AtomicSettlement:
        return SqlAlchemyUnitOfWork(engine)
