"""The one set of helpers every webhook parser uses to read what a stranger sent.

A value leaves a gateway's parser only when the databases will take it as it is: JSON no
deeper than :data:`MAX_DEPTH` and with finite numbers, text without NUL or unpaired
surrogates (PostgreSQL refuses the first, every driver the second), ids short enough for
their columns, integers inside BIGINT and Telegram ids positive. Anything else is a
``WebhookMalformedError`` (the server answers 400 and logs one line), never a 500 from
deep inside a driver.

Private to ``vpnshop.adapters`` (the import contract names its one user outside
``payments``). The Remnawave panel's parser reads its JSON with
:func:`load_json` too, passing its own error class, so that one definition of "what we
accept" serves every webhook the shop receives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from vpnshop.domain.money import MAX_MINOR, Money
from vpnshop.ports.payments import PaymentEvent, WebhookMalformedError

MAX_DEPTH: Final = 32  # every provider's notification is at most 6 levels deep
MAX_ID_LEN: Final = 128  # payments.external_id and saved_method_id are VARCHAR(128)
BIGINT_MAX: Final = 2**63 - 1
SHOWN: Final = 80  # characters of a hostile value quoted in an error message


def shown(value: object) -> str:
    """``repr(value)`` cut to a few dozen characters, for error messages and logs."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)} chars)"


def bad_text(text: str) -> str | None:
    """Why the databases would refuse *text* (None when they take it)."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate"
    return None


class _NonFiniteError(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFiniteError(name)


def load_json(
    body: bytes, what: str = "body", *, error: type[Exception] = WebhookMalformedError
) -> Any:
    """Parse *body* as JSON and vet the whole document (:func:`vet_json`).

    Raises *error* for anything that is not plain, finite, shallow JSON with text the
    databases accept.
    """
    try:
        doc = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    except _NonFiniteError as exc:
        raise error(f"{what}: JSON constant {exc} is not a number") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, over-long integer literals
        raise error(f"{what} is not JSON") from None
    vet_json(doc, what, error=error)
    return doc


def vet_json(
    doc: Any, what: str = "body", *, error: type[Exception] = WebhookMalformedError
) -> None:
    """Walk *doc* without recursion: depth at most :data:`MAX_DEPTH`, every string (key or
    value) acceptable to the databases, every number finite and inside BIGINT; otherwise
    raise *error*."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            why = bad_text(node)
            if why:
                raise error(f"{what}: a string {why}")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise error(f"{what}: a number is out of range")
        elif isinstance(node, int):
            if not -BIGINT_MAX <= node <= BIGINT_MAX:  # no column here is wider than BIGINT
                raise error(f"{what}: an integer is out of range")
        elif isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise error(f"{what} is nested deeper than {MAX_DEPTH}")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((value, depth + 1))


def load_object(body: bytes, what: str = "body") -> dict[str, Any]:
    """:func:`load_json`, which must give an object."""
    doc = load_json(body, what)
    if not isinstance(doc, dict):
        raise WebhookMalformedError(f"{what} is not a JSON object")
    return doc


def text_field(raw: object, field: str, *, max_len: int = MAX_ID_LEN) -> str:
    """A non-empty string the databases accept, at most *max_len* characters."""
    if not isinstance(raw, str) or not raw:
        raise WebhookMalformedError(f"{field} is missing or not a string")
    if len(raw) > max_len:
        raise WebhookMalformedError(f"{field} is longer than {max_len} characters")
    why = bad_text(raw)
    if why:
        raise WebhookMalformedError(f"{field} {why}")
    return raw


def int_field(raw: object, field: str, *, low: int = 1, high: int = BIGINT_MAX) -> int:
    """An integer in ``[low, high]`` (default: a positive BIGINT). A JSON number or a
    string of ASCII digits; never a bool, a float or ``"+1"``/``" 1"``/``"١"``."""
    if isinstance(raw, bool):
        raise WebhookMalformedError(f"{field} is not an integer")
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 20:
        raw = int(raw)
    if not isinstance(raw, int):
        raise WebhookMalformedError(f"{field} is not an integer")
    if not low <= raw <= high:
        raise WebhookMalformedError(f"{field} {shown(raw)} is outside {low}..{high}")
    return raw


def telegram_id_field(raw: object, field: str = "telegram_user_id") -> int:
    """A Telegram user id: a positive integer that fits BIGINT."""
    return int_field(raw, field, low=1)


def check_money(amount: Money, field: str = "amount") -> Money:
    """Refuse an amount whose minor units would not fit the ledger's columns."""
    if not -MAX_MINOR <= amount.minor <= MAX_MINOR:
        raise WebhookMalformedError(f"{field} {amount.minor} minor units is out of range")
    return amount


def parse_utc(raw: object) -> datetime | None:
    """An ISO 8601 time as aware UTC; None when *raw* is not one (a naive time is taken as
    UTC, which every provider here speaks). Years at the very edge of the calendar, which
    overflow when shifted to UTC, are not times either."""
    if not isinstance(raw, str) or not raw or len(raw) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def form_value(form: Mapping[str, list[str]], name: str) -> str | None:
    """The single value of form field *name* (None when absent); two values are refused,
    because which one was signed cannot be known."""
    values = form.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise WebhookMalformedError(f"field {name} is repeated")
    return values[0]


def vetted(event: PaymentEvent) -> PaymentEvent:
    """The last gate of every parser: every text of *event* fits its column and the
    databases take it, the Telegram id is positive, the amount fits. Returns *event*."""
    for field in ("dedupe_key", "external_id", "payment_ref", "product", "saved_method_id"):
        value = getattr(event, field)
        if value is not None:
            text_field(value, field, max_len=200 if field == "dedupe_key" else MAX_ID_LEN)
    if event.telegram_id is not None:
        telegram_id_field(event.telegram_id, "telegram id")
    if event.amount is not None:
        check_money(event.amount)
    return event
