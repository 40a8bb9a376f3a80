"""Engines for the two supported databases, tuned for how vpnshop uses them.

SQLite (embedded default): one writer connection, WAL, ``BEGIN IMMEDIATE`` so that a
transaction takes the write lock up front and concurrent writers queue instead of
deadlocking on a lock upgrade. Measured here: 16 pooled writers waiting on busy_timeout
gave 0.8-1.3 s tails; one connection gives none.

PostgreSQL: asyncpg with a modest pool; correctness comes from conditional UPDATEs and
row locks, not from the isolation level.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from vpnshop.ports.storage import StorageUnavailableError


def normalise_url(url: str) -> str:
    """Accept plain ``sqlite:///x.db`` / ``postgresql://...`` and pick our async drivers."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    url = normalise_url(url)
    engine = _create(url, pool_size=pool_size, echo=echo)
    _report_unavailable(engine)
    return engine


def _report_unavailable(engine: AsyncEngine | sa.Engine) -> None:
    """A lost or refused connection, at any statement, surfaces as the port's
    StorageUnavailableError, so shells answer "try again later" (HTTP 503) for it alone."""

    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "handle_error")
    def _translate(ctx: ExceptionContext) -> None:
        original = ctx.original_exception
        if not isinstance(original, Exception):
            # Cancellation (or KeyboardInterrupt) mid-statement: SQLAlchemy invalidates the
            # connection as if it were lost, but the caller must see the cancellation.
            return
        if ctx.is_disconnect or isinstance(original, (ConnectionError, TimeoutError)):
            raise StorageUnavailableError(f"database unavailable: {original}") from original
        # The database itself is unwell (SQLite busy or its file unreadable, PostgreSQL
        # refusing connections or shutting down): the caller should try again later.
        if isinstance(ctx.sqlalchemy_exception, (OperationalError, InterfaceError)):
            raise StorageUnavailableError(f"database unavailable: {original}") from original


def _create(url: str, *, pool_size: int, echo: bool) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            connect_args={"timeout": 30},
        )
        _tune_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per transaction; a connection that died is
        # reported as StorageUnavailableError and the pool replaces it.
        pool_recycle=1800,
    )


def create_reader_engine(url: str, *, pool_size: int = 4) -> AsyncEngine | None:
    """For SQLite, an engine for read-only units of work: a few connections that begin
    deferred (a reader in WAL mode neither takes nor waits for the write lock), so the
    bot's screens do not queue behind the one writer connection. None for PostgreSQL,
    whose pool already reads concurrently."""
    url = normalise_url(url)
    if not is_sqlite(url):
        return None
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=60, connect_args={"timeout": 30}
    )
    _read_only(engine.sync_engine)
    _report_unavailable(engine)
    return engine


def create_sync_reader_engine(url: str) -> sa.Engine:
    """The same read-only SQLite connections as ``create_reader_engine``'s, driven
    synchronously (pysqlite) by a thread of their own (``ThreadReader``). One connection
    normally; more only if reads on that thread ever overlap."""
    u = make_url(normalise_url(url)).set(drivername="sqlite+pysqlite")
    engine = sa.create_engine(
        u,
        pool_size=1,
        max_overflow=8,
        pool_timeout=60,
        connect_args={"timeout": 30, "check_same_thread": False},
    )
    _read_only(engine)
    _report_unavailable(engine)
    return engine


def _read_only(sync_engine: sa.Engine) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (*SQLITE_PRAGMAS, "PRAGMA query_only=ON"):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")  # deferred: a snapshot, no write lock


# What every SQLite connection to a shop's file runs first: the engine's and the payment
# settler's (settle_sqlite) alike.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)


def _tune_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own transaction
        # handling would BEGIN DEFERRED lazily, and a later write would need an upgrade).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
