"""Reads on SQLite in one trip to a thread (the ``ReadRunner`` port).

Through aiosqlite every statement is several hops between the event loop and the
connection's thread (cursor, execute, fetch, close), and so are BEGIN and ROLLBACK: a
screen of four reads made ~25 hops, and under load each hop waits for the loop. Here the
whole read (the use case's function over a unit of work) runs on a thread with its own
event loop over synchronous pysqlite connections, like ``settle_sqlite`` runs a batch:
one hop there, one back. The function must touch nothing but the unit of work (no
panel, no objects of the caller's loop); the repositories are the usual ones, over a
connection whose ``execute`` runs at once on that thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from vpnshop.adapters.storage.engine import create_sync_reader_engine
from vpnshop.adapters.storage.uow import SqlAlchemyUnitOfWork
from vpnshop.ports.storage import UnitOfWork

T = TypeVar("T")


class _Immediate:
    """What the repositories use of an AsyncConnection, over a synchronous one."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Any:
        return self._conn.execute(stmt, params)


class _ReadUnitOfWork(SqlAlchemyUnitOfWork):
    def __init__(self, conn: sa.Connection) -> None:
        self._bind(cast(AsyncConnection, _Immediate(conn)))

    async def commit(self) -> None:
        raise RuntimeError("a read-only unit of work cannot commit")


class ThreadReader:
    """``await reader(fn)``: ``fn(uow)`` in one read-only transaction (a WAL snapshot,
    no write lock) on the reader thread; its result or its exception comes back."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._engine: sa.Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def __call__(self, fn: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        loop = self._loop or self._start()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._read(fn), loop))

    async def _read(self, fn: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        assert self._engine is not None
        with self._engine.connect() as conn:  # rolls back on the way out
            conn.begin()
            return await fn(_ReadUnitOfWork(conn))

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._engine = create_sync_reader_engine(self._url)
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="vpnshop-sqlite-reader", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    async def aclose(self) -> None:
        """Close the connections and stop the thread (a reader never used has none)."""
        loop, thread, engine = self._loop, self._thread, self._engine
        if loop is None or thread is None or engine is None:
            return
        self._loop = None

        async def dispose() -> None:
            engine.dispose()

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(dispose(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        loop.close()
