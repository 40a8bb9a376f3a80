"""Logging for every vpnshop process: text for a terminal, JSON lines for a collector,
and Sentry when a DSN is configured. Secrets never reach a log line: settings hold them
as ``Secret`` values, which print as asterisks."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from vpnshop.config import ConfigError, Settings

_STANDARD = set(vars(logging.makeLogRecord({})))


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
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    if settings.log_level != "debug":  # Alembic narrates every plugin at INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)
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
