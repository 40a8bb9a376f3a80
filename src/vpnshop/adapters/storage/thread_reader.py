"""Reads on SQLite in one trip to a thread (the ``ReadRunner`` port).

Through aiosqlite every statement is several hops between the event loop and the
connection's thread (cursor, execute, fetch, close), and so are BEGIN and ROLLBACK: a
screen of four reads made ~25 hops, and under load each hop waits for the loop. Here the
whole read (the use case's function over a unit of work) runs on a thread of its own
over synchronous pysqlite connections, like ``settle_sqlite`` runs a batch:
one hop there, one back. The function must touch nothing but the unit of work (no
panel, no objects of the caller's loop); the repositories are the usual ones, over a
connection whose ``execute`` runs at once on that thread, so the function's coroutine
completes in one step there, without an event loop."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from vpnshop.adapters.storage.engine import create_sync_reader_engine
from vpnshop.adapters.storage.repositories.base import PREPARED
from vpnshop.adapters.storage.uow import SqlAlchemyUnitOfWork
from vpnshop.ports.storage import UnitOfWork

T = TypeVar("T")


class _Immediate:
    """What the repositories use of an AsyncConnection, over a synchronous one. A
    statement marked ``prepared`` runs as plain pysqlite SQL (``_Compiled``)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Any:
        if params is not None and id(stmt) in PREPARED:
            compiled = _COMPILED.get(id(stmt))
            if compiled is None:
                compiled = _COMPILED[id(stmt)] = _Compiled(stmt, self.dialect)
            return compiled.run(self._conn, params)
        return self._conn.execute(stmt, params)


class _Rows:
    """The part of a SQLAlchemy result the repositories use."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows


class _Compiled:
    """A prepared statement compiled once for this dialect: its SQL, the order and
    converters of its parameters, and a row type converting each column as SQLAlchemy
    would (dates, JSON, booleans). SQLAlchemy builds, keys and wraps a statement per
    call, which on the hot screens cost several times the query itself."""

    def __init__(self, stmt: Any, dialect: sa.Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError("a prepared statement needs a positional paramstyle")
        self.sql = str(compiled)
        self.binds = [
            (name, compiled.binds[name].type._cached_bind_processor(dialect))
            for name in compiled.positiontup
        ]
        columns = compiled._result_columns
        self.processors = [c[3]._cached_result_processor(dialect, None) for c in columns]
        row: Any = namedtuple("Row", [c[0] for c in columns], rename=True)  # type: ignore[misc]
        self.make: Callable[[list[Any]], Any] = row._make

    def run(self, conn: sa.Connection, params: Mapping[str, Any]) -> _Rows:
        args = [params[n] if p is None else p(params[n]) for n, p in self.binds]
        cursor = conn.connection.driver_connection.execute(self.sql, args)  # type: ignore[union-attr]
        try:
            raw = cursor.fetchall()
        finally:
            cursor.close()
        procs, make = self.processors, self.make
        return _Rows(
            [make([v if p is None else p(v) for p, v in zip(procs, r, strict=True)]) for r in raw]
        )


_COMPILED: dict[int, _Compiled] = {}  # id of a prepared statement -> it, compiled


class _ReadUnitOfWork(SqlAlchemyUnitOfWork):
    def __init__(self, conn: sa.Connection) -> None:
        self._bind(cast(AsyncConnection, _Immediate(conn)))

    async def commit(self) -> None:
        raise RuntimeError("a read-only unit of work cannot commit")


class ThreadReader:
    """``await reader(fn)``: ``fn(uow)`` in one read-only transaction (a WAL snapshot,
    no write lock) on the reader thread; its result or its exception comes back.

    Reads asked for while the thread is busy go together in its next trip (one hop for
    the batch, each read still in its own transaction). *fn*'s coroutine is driven to
    its end in one step: a read that waits on anything (the panel, a sleep) is our bug
    and fails with RuntimeError."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._engine: sa.Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._pending: list[tuple[Callable[[UnitOfWork], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._busy = False

    async def __call__(self, fn: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._engine = create_sync_reader_engine(self._url)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="vpnshop-sqlite-reader")
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    outcomes = await loop.run_in_executor(
                        self._thread, self._run_batch, [fn for fn, _ in batch]
                    )
                except Exception as e:  # the connection could not be had: all fail alike
                    outcomes = [(False, e)] * len(batch)
                except BaseException:  # cancelled (shutting down): so are the callers
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue  # its caller was cancelled
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._busy = False

    def _run_batch(
        self, fns: list[Callable[[UnitOfWork], Awaitable[Any]]]
    ) -> list[tuple[bool, Any]]:
        assert self._engine is not None
        outcomes: list[tuple[bool, Any]] = []
        with self._engine.connect() as conn:
            # One snapshot for the batch: taken after each of its reads was asked for, so
            # as fresh as a transaction of its own; a failed read gets the next one a new.
            for fn in fns:
                try:
                    if not conn.in_transaction():
                        conn.begin()
                    outcomes.append((True, _drive(fn(_ReadUnitOfWork(conn)))))
                except Exception as e:
                    outcomes.append((False, e))
                    if conn.in_transaction():
                        conn.rollback()
        return outcomes

    async def aclose(self) -> None:
        """Close the connections and stop the thread (a reader never used has none)."""
        thread, engine = self._thread, self._engine
        self._thread = self._engine = None
        if thread is None or engine is None:
            return
        await asyncio.get_running_loop().run_in_executor(thread, engine.dispose)
        thread.shutdown(wait=False)


def _drive(awaitable: Awaitable[T]) -> T:
    """Run a coroutine that never suspends (its statements run at once) to its end."""
    coro = cast(Coroutine[Any, Any, T], awaitable)
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("a read on the reader thread may only wait on its unit of work")
