"""Failures an operator can cause, said in one line that names the thing and the cause.

The database is the usual one: a SQLite path in a missing or read-only directory, or a
PostgreSQL server that is down or refuses us. The drivers say "unable to open database
file" or "Connection refused" without saying which file or server; this module adds it.
Anything it does not recognise is left alone: a traceback is for our bugs.
"""

from __future__ import annotations

import os
import sqlite3
import traceback
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, DBAPIError, InterfaceError, OperationalError

from vpnshop.adapters.storage.engine import is_sqlite, normalise_url
from vpnshop.ports.storage import StorageUnavailableError

DATABASE_VARIABLE = "VPNSHOP_DATABASE_URL"


def sqlite_path(url: str) -> Path | None:
    """The SQLite file *url* names (absolute), or None for PostgreSQL or in-memory."""
    u = make_url(normalise_url(url))
    if not is_sqlite(str(u)) or u.database in (None, "", ":memory:"):
        return None
    return Path(os.path.abspath(u.database))


def database_place(url: str) -> str:
    """``SQLite file /srv/shop/vpnshop.db`` or ``PostgreSQL at db.internal:5432/shop``."""
    path = sqlite_path(url)
    if path is not None:
        return f"SQLite file {path}"
    u = make_url(normalise_url(url))
    if is_sqlite(str(u)):
        return "in-memory SQLite"
    return f"PostgreSQL at {u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"


def sqlite_file_problem(path: Path) -> str | None:
    """Why SQLite could not create or open *path*, judged from the file system."""
    if path.is_dir():
        return "the path is a directory"
    parent = path.parent
    if not parent.exists():
        return f"the directory {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    # SQLite in WAL mode writes -wal and -shm files next to the database.
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the directory {parent} is not writable"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "the file is not readable and writable by this user"
    return None


def sqlite_preflight(url: str) -> str | None:
    """Open (creating if needed) the SQLite file *url* names, synchronously, before any
    event loop runs; a line naming the file and the cause if that fails, else None.

    Failing here rather than in the async driver keeps the message to one line: when
    aiosqlite fails to open a file its worker thread can outlive the event loop and
    print a traceback of its own."""
    path = sqlite_path(url)
    if path is None:
        return None
    problem = sqlite_file_problem(path)
    if problem is None:
        try:
            with sqlite3.connect(path) as db:
                db.execute("PRAGMA schema_version")  # reads the header: is it a database?
            db.close()
        except sqlite3.Error as e:
            problem = str(e)
    if problem is None:
        return None
    return f"cannot use the database ({DATABASE_VARIABLE}), {database_place(url)}: {problem}"


def _from_database_driver(exc: BaseException) -> bool:
    drivers = ("asyncpg", "aiosqlite", "sqlalchemy")
    frames = traceback.extract_tb(exc.__traceback__)
    return any(part in frame.filename for frame in frames for part in drivers)


def _is_database_failure(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError, StorageUnavailableError)):
        return True
    # The bare classes: "file is not a database", "database "x" does not exist" while
    # connecting. Their subclasses (IntegrityError, ProgrammingError...) are our bugs.
    if type(exc) in (DatabaseError, DBAPIError):
        return True
    if type(exc).__module__.startswith("asyncpg") and "Error" in type(exc).__name__:
        return True  # refused password, unknown database: raised while connecting
    return isinstance(exc, OSError) and _from_database_driver(exc)


def _cause(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    inner = orig if orig is not None else exc
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    text = str(inner).strip().splitlines()
    return text[0] if text else type(inner).__name__


def database_failure(url: str, exc: BaseException) -> str | None:
    """One line naming the database and the cause, if *exc* is the database failing to
    open or answer; None for anything else (our bugs keep their traceback)."""
    if not _is_database_failure(exc):
        return None
    path = sqlite_path(url)
    cause = (sqlite_file_problem(path) if path is not None else None) or _cause(exc)
    return f"cannot use the database ({DATABASE_VARIABLE}), {database_place(url)}: {cause}"
