"""The shared parsing helpers every webhook parser uses (``adapters/payments/_input.py``)."""

from __future__ import annotations

import pytest

from vpnshop.adapters.payments._input import (
    MAX_DEPTH,
    int_field,
    load_json,
    parse_utc,
    telegram_id_field,
    text_field,
)
from vpnshop.ports.payments import WebhookMalformedError


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 990 + b"]" * 990,
        b"[" * 100_000,
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b'{"a": "\\u0000"}',
        b'{"\\u0000": 1}',
        b'{"a": "\\ud800"}',
        b"NaN",
        b"[Infinity]",
        b"1e400",
        b"9223372036854775808",
        b"\xff\xfe",
        b"1" * 5000,
    ],
)
def test_load_json_refuses_what_a_database_or_the_stack_cannot_take(body: bytes) -> None:
    """Deep nesting, NUL, unpaired surrogates, non-finite and over-wide numbers and
    undecodable bytes are one WebhookMalformedError, never another exception."""
    with pytest.raises(WebhookMalformedError):
        load_json(body)


def test_load_json_accepts_plain_documents_at_the_depth_limit() -> None:
    """A document exactly MAX_DEPTH deep, with ordinary text and numbers, is accepted."""
    body = (
        b"[" * (MAX_DEPTH - 1)
        + b'{"a": "\\u00e9", "n": -9223372036854775807}'
        + b"]" * (MAX_DEPTH - 1)
    )
    assert load_json(body)


@pytest.mark.parametrize("raw", [-5, 0, "-5", " 5", "5 ", "+5", "5.0", 5.0, True, "٥", 2**63])
def test_telegram_ids_are_positive_bigints(raw: object) -> None:
    """A Telegram id is a positive integer (or ASCII digits) that fits BIGINT."""
    with pytest.raises(WebhookMalformedError):
        telegram_id_field(raw)


def test_int_field_accepts_digits_and_ints_in_range() -> None:
    """ASCII digit strings and ints inside the range pass unchanged in value."""
    assert int_field("42", "x") == 42
    assert int_field(2**63 - 1, "x") == 2**63 - 1
    assert int_field(0, "x", low=0) == 0


@pytest.mark.parametrize("raw", ["", "a\x00", "\ud800", "x" * 129, 5, None])
def test_text_field_refuses_what_a_column_cannot_hold(raw: object) -> None:
    """Empty, NUL, surrogate, over-long and non-string values are refused."""
    with pytest.raises(WebhookMalformedError):
        text_field(raw, "ref")


@pytest.mark.parametrize(
    "raw", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "nope", 5, None]
)
def test_parse_utc_gives_none_for_what_is_not_a_time(raw: object) -> None:
    """Unparseable times and times that overflow when shifted to UTC are None."""
    assert parse_utc(raw) is None
