"""The store's payment-confirmation fast path for an engine, as bootstrap wires it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:  # each is imported when its database is used (asyncpg is not cheap)
    from vpnshop.adapters.storage.settle_pg_batch import PgPaymentSettler
    from vpnshop.adapters.storage.settle_sqlite import SqlitePaymentSettler


def payment_settler(engine: AsyncEngine) -> PgPaymentSettler | SqlitePaymentSettler | None:
    """PostgreSQL's or SQLite's group-committing settler; None for an in-memory SQLite
    database (the settler's own connection could not see it): the general path then
    confirms every payment. Close it (``aclose``) before disposing of the engine."""
    if engine.dialect.name == "postgresql":
        from vpnshop.adapters.storage.settle_pg_batch import PgPaymentSettler

        return PgPaymentSettler(engine)
    if engine.dialect.name == "sqlite":
        from vpnshop.adapters.storage.settle_sqlite import SqlitePaymentSettler, sqlite_path

        if sqlite_path(engine) is not None:
            return SqlitePaymentSettler(engine)
    return None
