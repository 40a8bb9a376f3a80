"""The store's payment-confirmation fast path for an engine, as bootstrap wires it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from vpnshop.adapters.storage.settle_pg_batch import PgPaymentSettler
from vpnshop.adapters.storage.settle_sqlite import SqlitePaymentSettler, sqlite_path


def payment_settler(engine: AsyncEngine) -> PgPaymentSettler | SqlitePaymentSettler | None:
    """PostgreSQL's or SQLite's group-committing settler; None for an in-memory SQLite
    database (the settler's own connection could not see it): the general path then
    confirms every payment. Close it (``aclose``) before disposing of the engine."""
    if engine.dialect.name == "postgresql":
        return PgPaymentSettler(engine)
    if engine.dialect.name == "sqlite" and sqlite_path(engine) is not None:
        return SqlitePaymentSettler(engine)
    return None
