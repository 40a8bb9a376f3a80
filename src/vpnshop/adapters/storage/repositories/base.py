"""Rows and the base of every repository over one connection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

Row = Any

# Statements built once at import, their values as named bind parameters (``prepared``).
PREPARED: dict[int, Any] = {}


def prepared(stmt: Any) -> Any:
    """Mark *stmt*, a statement built once (its values ``sa.bindparam``s), for the hot
    read paths: building a statement per call costs more than running it on SQLite, and
    the SQLite reader thread (``ThreadReader``) runs a marked one as plain pysqlite SQL
    compiled once. Holding it here keeps its ``id`` its own."""
    PREPARED[id(stmt)] = stmt
    return stmt


class _Prefixed:
    """Attribute access to the columns of a joined row that carry a label prefix."""

    def __init__(self, mapping: Mapping[Any, Any], prefix: str) -> None:
        self._m = mapping
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        return self._m[self._prefix + name]


class _Repo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._pg = conn.dialect.name == "postgresql"

    def _insert(self, table: sa.Table) -> Any:
        """A dialect insert, so ``on_conflict_do_nothing`` is available on both engines.
        Imported here: a process imports only its own database's dialect."""
        if self._pg:
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        return insert(table)

    async def _one(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Row | None:
        return (await self._conn.execute(stmt, params)).first()

    async def _all(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        return (await self._conn.execute(stmt, params)).all()
