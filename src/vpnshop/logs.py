"""Logging for every vpnshop process: text for a terminal, JSON lines for a collector,
and Sentry when a DSN is configured. Secrets never reach a log line: settings hold them
as ``Secret`` values, which print as asterisks.

A log must stay readable while strangers send us rubbish, so:

* every message is one line of at most :data:`MAX_MESSAGE` characters (line breaks are
  escaped, the rest cut), and every line of a traceback is cut the same way;
* the same message template from the same logger is let through :data:`BURST` times per
  :data:`WINDOW` seconds; the next one that passes says how many were dropped;
* aiohttp's reports of a client's own mistakes (malformed HTTP, a connection dropped
  mid-request) become one line at WARNING or INFO without a traceback
  (:func:`quiet_client_errors`). Tracebacks are for our bugs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from vpnshop.config import ConfigError, Settings

_STANDARD = set(vars(logging.makeLogRecord({})))

MAX_MESSAGE: Final = 2000  # characters of one message (and of one traceback line)
WINDOW: Final = 10.0  # seconds
BURST: Final = 5  # records per message template and logger in each window
_MAX_KEYS: Final = 1024  # templates remembered by the rate limit


def cut(text: str, limit: int = MAX_MESSAGE) -> str:
    """*text* on one line of at most about *limit* characters."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters cut]"


class BoundedLines(logging.Filter):
    """Renders each record's message once, as one bounded line, and cuts each line of its
    traceback; formatters downstream then only add a prefix."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        super().__init__()
        self._limit = limit
        self._plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad format string must not cost the line
            message = f"{record.msg!r} (unformattable: {type(exc).__name__})"
        record.msg, record.args = cut(message, self._limit), None
        if record.exc_info and not record.exc_text:
            text = self._plain.formatException(record.exc_info)
            record.exc_text = "\n".join(cut(line, self._limit) for line in text.splitlines())
        return True


class RateLimit(logging.Filter):
    """At most *burst* records per (logger, level, message template) in each *window*
    seconds; the first record let through after some were dropped carries their count."""

    def __init__(
        self,
        window: float = WINDOW,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._window = window
        self._burst = burst
        self._clock = clock
        # key -> [window start, records let through, records dropped]
        self._seen: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = self._clock()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self._window:
            dropped = int(state[2]) if state is not None else 0
            self._seen[key] = [now, 1, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > _MAX_KEYS:
                self._seen.popitem(last=False)
            if dropped:
                record.msg = f"{record.getMessage()} [{dropped} similar messages dropped]"
                record.args = None
            return True
        if state[1] < self._burst:
            state[1] += 1
            return True
        state[2] += 1
        return False


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_text:
            entry["traceback"] = record.exc_text
        elif record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _client_caused(exc: BaseException) -> str | None:
    """The log level name for an exception a client caused, or None for anything else."""
    # Imported here: only the processes that run an aiohttp server get these records.
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    if isinstance(exc, HttpProcessingError):
        return "WARNING"  # malformed HTTP: worth seeing, not worth a traceback
    if isinstance(exc, ConnectionError | RequestPayloadError | asyncio.CancelledError):
        return "INFO"  # the client went away or broke off the body
    return None


class ClientErrorsInOneLine(logging.Filter):
    """For aiohttp's server logger: a client's mistake is one line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        level = _client_caused(exc) if exc is not None else None
        if exc is None or level is None:
            return True
        levelno = logging.getLevelName(level)
        if not logging.getLogger(record.name).isEnabledFor(levelno):
            return False
        detail = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        # The template stays a template, so that the rate limit groups these lines.
        if isinstance(record.args, tuple):
            template, args = str(record.msg), record.args
        else:
            template, args = record.getMessage().replace("%", "%%"), ()
        record.msg = f"{template} (%s: %s)"
        record.args = (*args, type(exc).__name__, detail[:300])
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = levelno, level
        return True


_QUIET: Final = ClientErrorsInOneLine()


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorsInOneLine` on aiohttp's server logger (idempotent)."""
    logger = logging.getLogger("aiohttp.server")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)


def bounded_handler(handler: logging.Handler) -> logging.Handler:
    """*handler* with the rate limit and the line bound in front of its formatter."""
    handler.addFilter(RateLimit())
    handler.addFilter(BoundedLines())
    return handler


def setup_logging(settings: Settings) -> None:
    handler = bounded_handler(logging.StreamHandler(sys.stderr))
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    if settings.log_level != "debug":  # Alembic narrates every plugin at INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)
    quiet_client_errors()
    if settings.sentry_dsn is not None:
        setup_sentry(settings)


def setup_sentry(settings: Settings) -> None:
    try:
        import sentry_sdk
    except ImportError:
        raise ConfigError(
            [
                (
                    "VPNSHOP_SENTRY_DSN",
                    "is set but sentry-sdk is not installed: pip install 'vpnshop[sentry]'",
                )
            ]
        ) from None
    assert settings.sentry_dsn is not None
    sentry_sdk.init(dsn=settings.sentry_dsn.get(), send_default_pii=False)
