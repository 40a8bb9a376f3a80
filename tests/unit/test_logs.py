"""Log lines stay bounded and repeated warnings are rate-limited (issue 9, class 7)."""

from __future__ import annotations

import io
import logging

from vpnshop.logs import MAX_MESSAGE, BoundedLines, RateLimit, bounded_handler


def test_log_lines_are_bounded_and_one_line() -> None:
    """A 113 KB message (and one with line breaks) comes out as one line of bounded length."""
    stream = io.StringIO()
    handler = bounded_handler(logging.StreamHandler(stream))
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("vpnshop.test.bounded")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("refused: %s", "x" * 113_000)
        logger.warning("forged\nINFO vpnshop: all good")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert all(len(line) < MAX_MESSAGE + 200 for line in lines)


def test_repeated_warnings_are_rate_limited_with_a_count() -> None:
    """The same warning from one logger is let through a few times per window; the first
    one after the window says how many were dropped."""
    now = [0.0]
    limit = RateLimit(window=10.0, burst=3, clock=lambda: now[0])

    def record(n: int) -> logging.LogRecord:
        return logging.makeLogRecord(
            {"name": "vpnshop_webhooks.app", "levelno": 30, "msg": "refused %s", "args": (n,)}
        )

    passed = [limit.filter(record(n)) for n in range(100)]
    assert sum(passed) == 3
    now[0] = 11.0
    late = record(100)
    assert limit.filter(late)
    BoundedLines().filter(late)
    assert late.getMessage() == "refused 100 [97 similar messages dropped]"
