"""A throwaway PostgreSQL cluster for tests.

``PostgresCluster`` runs ``initdb`` into a fresh temporary directory and starts a server
that listens only on 127.0.0.1, on a free port, with durability turned off for speed.
``stop()`` shuts it down with ``pg_ctl stop -m immediate`` and deletes the directory.

    with PostgresCluster() as cluster:
        dsn = cluster.create_database("shop")   # postgresql://postgres@127.0.0.1:PORT/shop

PostgreSQL refuses to run as root. When this process is root, the server binaries run
as the ``postgres`` system user (created by the Debian ``postgresql`` package).

A server is never left behind: ``stop()`` is also registered with ``atexit``, and when
the cluster is started from the main thread the postmaster gets a parent-death signal
(``setpriv --pdeathsig``), so it shuts itself down even if this process is killed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import asyncpg

__all__ = [
    "PostgresBinaries",
    "PostgresCluster",
    "PostgresUnavailableError",
    "find_postgres_binaries",
]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")

# Settings for a disposable test server: nothing here needs to survive a crash.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    "timezone": "UTC",
}

# Longest path the kernel accepts for a unix socket (sun_path is 108 bytes with the NUL).
_MAX_SOCKET_PATH = 107
_PORT_IN_USE = re.compile(r"could not bind .*address already in use|could not create any tcp/ip")


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL cannot be run here: the server binaries or a user to run them are missing."""


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    """Absolute paths of the server programs of one PostgreSQL installation."""

    initdb: Path
    pg_ctl: Path
    postgres: Path


def find_postgres_binaries(bin_dir: str | os.PathLike[str] | None = None) -> PostgresBinaries:
    """Find ``initdb``, ``pg_ctl`` and ``postgres``.

    Looks in ``bin_dir`` when given; otherwise on ``PATH``, then in the newest
    ``/usr/lib/postgresql/*/bin``. Raises ``PostgresUnavailableError`` naming every
    place searched when none has all three programs.
    """
    if bin_dir is not None:
        found = _programs_in(Path(bin_dir))
        if found is None:
            raise PostgresUnavailableError(
                f"PostgreSQL server binaries {', '.join(_SERVER_PROGRAMS)} not all found "
                f"in {bin_dir}"
            )
        return found

    on_path = [shutil.which(name) for name in _SERVER_PROGRAMS]
    if all(on_path):
        initdb, pg_ctl, postgres = (Path(p).resolve() for p in on_path if p is not None)
        return PostgresBinaries(initdb=initdb, pg_ctl=pg_ctl, postgres=postgres)

    candidates = sorted(Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")), key=_version_key)
    for candidate in reversed(candidates):
        found = _programs_in(candidate)
        if found is not None:
            return found

    looked_in = ", ".join(str(c) for c in candidates) or "no such directory"
    raise PostgresUnavailableError(
        "PostgreSQL server binaries not found: looked for "
        f"{', '.join(_SERVER_PROGRAMS)} on PATH ({os.environ.get('PATH', '')}) and in "
        f"{DEBIAN_BIN_GLOB} ({looked_in}). Install them, e.g. "
        "`apt-get install postgresql` on Debian."
    )


def _programs_in(directory: Path) -> PostgresBinaries | None:
    paths = [directory / name for name in _SERVER_PROGRAMS]
    if not all(p.is_file() and os.access(p, os.X_OK) for p in paths):
        return None
    initdb, pg_ctl, postgres = (p.resolve() for p in paths)
    return PostgresBinaries(initdb=initdb, pg_ctl=pg_ctl, postgres=postgres)


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin, versions like "9.6", "15", "16"
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _traversable_by(directory: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` may enter ``directory`` and every directory above it."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for part in (directory, *directory.parents):
        st = part.stat()
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


def _quote_ident(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"invalid database name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


class PostgresCluster:
    """A private PostgreSQL server in a temporary directory, for tests.

    Use it as a context manager, or call ``start()`` and ``stop()``. The server listens
    only on 127.0.0.1; the superuser is ``postgres`` and authentication is ``trust``.

    ``settings`` are extra or overriding server settings (``name -> value``).
    ``run_as`` names the system user that runs the server when this process is root
    (default ``postgres``). ``base_dir`` is where the temporary directory is created.
    """

    def __init__(
        self,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        run_as: str | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        port_attempts: int = 5,
    ) -> None:
        self._bin_dir = bin_dir
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._run_as = run_as
        self._settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._startup_timeout = startup_timeout
        self._port_attempts = max(1, port_attempts)

        self._lock = threading.Lock()
        self._binaries: PostgresBinaries | None = None
        self._user: pwd.struct_passwd | None = None
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._owner_pid: int | None = None

    # -- public API -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None or self._proc is None:
            raise RuntimeError("the PostgreSQL cluster is not running")
        return self._port

    @property
    def user(self) -> str:
        return SUPERUSER

    @property
    def data_dir(self) -> Path:
        return self._require_tmp() / "data"

    @property
    def log_file(self) -> Path:
        """The server's log (deleted by ``stop()`` together with the data directory)."""
        return self._require_tmp() / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        """An asyncpg/libpq URL: ``postgresql://postgres@127.0.0.1:PORT/<database>``."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{quote(database, safe='')}"

    def sqlalchemy_url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for the asyncpg driver: ``postgresql+asyncpg://...``."""
        return f"postgresql+asyncpg://{SUPERUSER}@{HOST}:{self.port}/{quote(database, safe='')}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (optionally as a copy of ``template``); return its DSN."""
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {_quote_ident(template)}"
        self._admin_execute(sql)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        self._admin_execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def terminate_connections(self, database: str) -> None:
        """Cut off every session connected to ``database``, as a server restart or a
        network failure would, leaving the database itself in place."""
        self._admin_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )

    def start(self) -> Self:
        """Create the cluster and start the server; returns once it accepts connections."""
        with self._lock:
            if self._tmp is not None:
                raise RuntimeError("the PostgreSQL cluster is already started")
            self._binaries = find_postgres_binaries(self._bin_dir)
            self._user = self._resolve_user()
            parent = self._choose_parent_dir()
            self._owner_pid = os.getpid()
            atexit.register(self._stop_at_exit)
            try:
                self._tmp = Path(tempfile.mkdtemp(prefix="vpnshop-pg-", dir=parent))
                if self._user is not None:
                    os.chown(self._tmp, self._user.pw_uid, self._user.pw_gid)
                self._tmp.chmod(0o700)
                self._initdb()
                self._launch()
            except BaseException:
                self._shutdown()
                raise
        return self

    def stop(self) -> None:
        """Stop the server immediately and delete its directory. Safe to call twice."""
        if self._owner_pid is not None and self._owner_pid != os.getpid():
            return  # a forked child must not stop its parent's server
        with self._lock:
            self._shutdown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{HOST}:{self._port}" if self.running else "stopped"
        return f"<PostgresCluster {where}>"

    # -- starting -------------------------------------------------------------------

    def _resolve_user(self) -> pwd.struct_passwd | None:
        """The user to switch to for server programs, or None to run them as ourselves."""
        if os.geteuid() != 0:
            if self._run_as is not None and self._run_as != pwd.getpwuid(os.geteuid()).pw_name:
                raise PostgresUnavailableError(
                    f"run_as={self._run_as!r} needs root; this process runs as uid {os.geteuid()}"
                )
            return None
        name = self._run_as or "postgres"
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            raise PostgresUnavailableError(
                f"PostgreSQL refuses to run as root and there is no {name!r} user to run it "
                "as. Install the `postgresql` package (it creates the user), create an "
                "unprivileged user and pass run_as=..., or run the tests as a non-root user."
            ) from None
        if user.pw_uid == 0:
            raise PostgresUnavailableError(f"run_as={name!r} is root; PostgreSQL refuses that")
        if shutil.which("setpriv") is None and shutil.which("runuser") is None:
            raise PostgresUnavailableError(
                "running as root, but neither `setpriv` nor `runuser` (util-linux) was found "
                f"to start PostgreSQL as {name!r}"
            )
        return user

    def _choose_parent_dir(self) -> Path:
        """Where to create the temporary directory: reachable by the server's user, and
        short enough for the unix socket path."""
        explicit = self._base_dir is not None
        candidates = [self._base_dir] if self._base_dir is not None else []
        if not explicit:
            candidates = [Path(tempfile.gettempdir()), Path("/tmp")]  # noqa: S108
        problems: list[str] = []
        for candidate in candidates:
            parent = candidate.resolve()
            # mkdtemp adds "vpnshop-pg-" + 8 chars; the socket is ".s.PGSQL.<port>".
            if len(str(parent)) + len("/vpnshop-pg-XXXXXXXX/.s.PGSQL.65535") > _MAX_SOCKET_PATH:
                problems.append(f"{parent}: path too long for a unix socket")
                continue
            if self._user is not None and not _traversable_by(parent, self._user):
                problems.append(f"{parent}: not reachable by user {self._user.pw_name!r}")
                continue
            return parent
        raise PostgresUnavailableError(
            "no usable directory for the PostgreSQL cluster: " + "; ".join(problems)
        )

    def _initdb(self) -> None:
        binaries = self._require_binaries()
        argv = [
            str(binaries.initdb),
            "--pgdata",
            str(self.data_dir),
            "--auth=trust",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        result = subprocess.run(  # noqa: S603
            self._as_server_user(argv),
            capture_output=True,
            cwd=self._tmp,
            env=self._environment(),
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise RuntimeError(f"initdb failed with exit code {result.returncode}:\n{output}")

    def _launch(self) -> None:
        """Start the postmaster, choosing a new free port when the chosen one is taken."""
        attempts: list[int] = []
        for _ in range(self._port_attempts):
            port = _free_port()
            attempts.append(port)
            if self._start_postmaster(port):
                self._port = port
                return
        raise RuntimeError(
            f"PostgreSQL could not bind a port on {HOST}; tried {attempts}, all were taken"
        )

    def _start_postmaster(self, port: int) -> bool:
        """Start the server on ``port``. False if the port was taken, raises on other errors."""
        binaries = self._require_binaries()
        tmp = self._require_tmp()
        settings = {
            **self._settings,
            "port": str(port),
            "listen_addresses": HOST,
            "unix_socket_directories": str(tmp),
        }
        argv = [str(binaries.postgres), "-D", str(self.data_dir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        # The parent-death signal fires when the *thread* that started the child exits,
        # so it is only safe to ask for from the main thread.
        on_main_thread = threading.current_thread() is threading.main_thread()
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603
                self._as_server_user(argv, parent_death_signal=on_main_thread),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                env=self._environment(),
                start_new_session=True,  # a ^C meant for pytest does not hit the server
            )
        self._proc = proc

        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                log_text = self._read_log(log_offset)
                if _PORT_IN_USE.search(log_text.lower()):
                    with contextlib.suppress(FileNotFoundError):
                        pid_file.unlink()
                    return False
                raise RuntimeError(
                    f"PostgreSQL exited with code {proc.returncode} while starting:\n{log_text}"
                )
            if _postmaster_ready(pid_file):
                return True
            time.sleep(0.01)
        self._kill_server()
        raise RuntimeError(
            f"PostgreSQL did not become ready within {self._startup_timeout}s:\n"
            + self._read_log(log_offset)
        )

    # -- stopping -------------------------------------------------------------------

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def _shutdown(self) -> None:
        atexit.unregister(self._stop_at_exit)
        tmp, self._tmp = self._tmp, None
        try:
            if self._proc is not None and tmp is not None:
                self._stop_server(tmp)
        finally:
            self._proc = None
            self._port = None
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def _stop_server(self, tmp: Path) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        binaries = self._require_binaries()
        data_dir = tmp / "data"
        # -W: do not let pg_ctl poll (it sleeps 100 ms per check); we wait on the process.
        argv = [str(binaries.pg_ctl), "stop", "-D", str(data_dir), "-m", "immediate", "-W"]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(  # noqa: S603
                self._as_server_user(argv),
                capture_output=True,
                cwd=tmp,
                env=self._environment(),
                timeout=15,
                check=False,
            )
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._kill_server(data_dir)

    def _kill_server(self, data_dir: Path | None = None) -> None:
        """Last resort: SIGKILL the postmaster (and the process we started, if different)."""
        proc = self._proc
        pid_file = (data_dir or self.data_dir) / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int(pid_file.read_text().splitlines()[0])
            os.kill(postmaster, signal.SIGKILL)
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    # -- helpers --------------------------------------------------------------------

    def _as_server_user(self, argv: list[str], *, parent_death_signal: bool = False) -> list[str]:
        """Wrap ``argv`` so it runs as the server's user (and dies with us, if asked)."""
        setpriv = shutil.which("setpriv")
        prefix: list[str] = []
        if self._user is not None:
            if setpriv is not None:
                prefix = [
                    setpriv,
                    f"--reuid={self._user.pw_uid}",
                    f"--regid={self._user.pw_gid}",
                    "--init-groups",
                ]
            else:
                runuser = shutil.which("runuser")
                assert runuser is not None  # checked in _resolve_user
                return [runuser, "-u", self._user.pw_name, "--", *argv]
        elif parent_death_signal and setpriv is not None:
            prefix = [setpriv]
        if parent_death_signal and prefix:
            # SIGQUIT is PostgreSQL's "immediate shutdown": children exit, shared memory is freed.
            prefix.append("--pdeathsig=QUIT")
        return [*prefix, "--", *argv] if prefix else argv

    def _environment(self) -> dict[str, str]:
        # PG* variables (PGDATA, PGPORT, PGOPTIONS, ...) would leak a caller's setup into ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"  # English messages, which _PORT_IN_USE matches
        env.pop("LANGUAGE", None)
        if self._user is not None:
            env["HOME"] = self._user.pw_dir
            env["USER"] = env["LOGNAME"] = self._user.pw_name
        return env

    def _admin_execute(self, sql: str, *args: object) -> None:
        """Run one statement (with ``$n`` arguments) as the superuser, from any thread,
        inside or outside a loop."""
        dsn = self.dsn()

        async def execute() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(sql, *args)
            finally:
                await conn.close()

        # A thread of its own, so this works even when called from a running event loop.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgcluster") as pool:
            pool.submit(lambda: asyncio.run(execute())).result()

    def _read_log(self, offset: int = 0) -> str:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def _require_binaries(self) -> PostgresBinaries:
        if self._binaries is None:
            raise RuntimeError("the PostgreSQL cluster is not started")
        return self._binaries

    def _require_tmp(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("the PostgreSQL cluster is not started")
        return self._tmp


def _postmaster_ready(pid_file: Path) -> bool:
    """Whether postmaster.pid says the server accepts connections (as ``pg_ctl -w`` checks)."""
    try:
        lines = pid_file.read_text().splitlines()
    except (FileNotFoundError, PermissionError, UnicodeDecodeError):
        return False
    # Line 8 holds the status: "starting", "ready", "stopping" or "standby".
    return len(lines) >= 8 and lines[7].strip() == "ready"
