"""A throwaway Redis server for tests.

``RedisServer`` starts Debian's ``redis-server`` listening only on 127.0.0.1, on a free
port, with nothing persisted (no RDB snapshots, no append-only file), in a fresh temporary
directory; ``stop()`` shuts it down and deletes the directory.

    with RedisServer() as server:
        url = server.url          # redis://127.0.0.1:PORT/0

A server is never left behind: ``stop()`` is also registered with ``atexit``, and the
server gets a parent-death signal (``setpriv --pdeathsig``, where available), so it exits
even if this process is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["RedisServer", "RedisUnavailableError"]

HOST = "127.0.0.1"


class RedisUnavailableError(RuntimeError):
    """Redis cannot be run here: ``redis-server`` is not installed or would not start."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    """True when a Redis server answers PING on *port* (RESP, no client library needed)."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process for the duration of a test session."""

    def __init__(self, binary: str | None = None, start_timeout: float = 10.0) -> None:
        self._binary = binary or shutil.which("redis-server")
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, attempts: int = 3) -> Self:
        if self._binary is None:
            raise RedisUnavailableError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="vpnshop-redis-"))
        atexit.register(self.stop)
        problem = ""
        for _ in range(attempts):  # another process may take the free port first
            self.port = _free_port()
            problem = self._start_once()
            if not problem:
                return self
        self.stop()
        raise RedisUnavailableError(f"redis-server did not start: {problem}")

    def _start_once(self) -> str:
        assert self._binary is not None
        assert self._dir is not None
        command = [
            self._binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        log = self._dir / f"redis-{self.port}.log"
        with log.open("wb") as out:
            self._process = subprocess.Popen(  # noqa: S603 - our own fixed command line
                command, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return log.read_text(errors="replace").strip()[-500:] or "exited at once"
            if _ping(self.port):
                return ""
            time.sleep(0.05)
        self._process.kill()
        self._process.wait()
        return f"no answer to PING within {self._start_timeout:g} s"

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._dir)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
