"""Money: integer minor units plus a currency, parsed exactly, never mixed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpnshop.domain.errors import CurrencyMismatchError, InvalidAmountError, UnknownCurrencyError
from vpnshop.domain.money import RUB, USD, XTR, Money, currency

currencies = st.sampled_from([RUB, USD, XTR])
minor = st.integers(min_value=-(10**15), max_value=10**15)


def test_exponents() -> None:
    """RUB and USD have two decimals, Telegram Stars none."""
    assert (RUB.exponent, USD.exponent, XTR.exponent) == (2, 2, 0)


@pytest.mark.parametrize(
    ("text", "cur", "expected"),
    [
        ("100.00", RUB, 10000),
        ("100", RUB, 10000),
        ("125.5", RUB, 12550),
        ("0.01", USD, 1),
        ("150", XTR, 150),
        (" 7.10 ", RUB, 710),
        ("-3.25", RUB, -325),
    ],
)
def test_parse_provider_strings(text: str, cur: object, expected: int) -> None:
    """Provider decimal strings become exact minor units."""
    assert Money.parse(text, cur).minor == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["1.005", "abc", "", "NaN", "Infinity", "1e400000"])
def test_parse_refuses_bad_or_too_precise(text: str) -> None:
    """Anything more precise than the currency allows, or not a number, is refused."""
    with pytest.raises(InvalidAmountError):
        Money.parse(text, RUB)


def test_parse_refuses_fractional_stars_and_floats() -> None:
    """Stars are whole; floats are never money."""
    with pytest.raises(InvalidAmountError):
        Money.parse("1.5", XTR)
    with pytest.raises(InvalidAmountError):
        Money.parse(1.5, RUB)  # type: ignore[arg-type]


def test_minor_must_be_int() -> None:
    """Money cannot be built from a float or a bool."""
    with pytest.raises(InvalidAmountError):
        Money(1.0, RUB)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmountError):
        Money(True, RUB)


def test_unknown_currency() -> None:
    """An unknown currency code is a clear error; codes are case-insensitive."""
    assert currency("rub") is RUB
    with pytest.raises(UnknownCurrencyError):
        currency("DOGE")


def test_mixed_currencies_refused() -> None:
    """Adding, subtracting or comparing different currencies raises."""
    with pytest.raises(CurrencyMismatchError):
        _ = Money(1, RUB) + Money(1, USD)
    with pytest.raises(CurrencyMismatchError):
        _ = Money(1, RUB) - Money(1, XTR)
    with pytest.raises(CurrencyMismatchError):
        _ = Money(1, RUB) < Money(1, USD)


def test_format() -> None:
    """Formatting gives exactly the currency's decimals."""
    assert Money(10000, RUB).format() == "100.00"
    assert Money(5, RUB).format() == "0.05"
    assert Money(-5, RUB).format() == "-0.05"
    assert Money(150, XTR).format() == "150"
    assert str(Money(19900, RUB)) == "199.00 RUB"


def test_percent_rounds_down() -> None:
    """A percentage never exceeds its stated share (rounded down to a minor unit)."""
    assert Money(999, RUB).percent(10).minor == 99
    assert Money(19900, RUB).discounted(15).minor == 16915


@given(a=minor, b=minor, cur=currencies)
def test_addition_is_exact_and_commutative(a: int, b: int, cur: object) -> None:
    """Arithmetic on minor units is exact integer arithmetic."""
    x, y = Money(a, cur), Money(b, cur)  # type: ignore[arg-type]
    assert (x + y).minor == a + b
    assert x + y == y + x
    assert (x + y) - y == x
    assert -(x * -1) == x


@given(a=minor, cur=currencies)
def test_format_parse_round_trip(a: int, cur: object) -> None:
    """Formatting then parsing gives the same amount back."""
    m = Money(a, cur)  # type: ignore[arg-type]
    assert Money.parse(m.format(), m.currency) == m
    assert m.to_decimal() == Decimal(m.format())


@given(a=st.integers(min_value=0, max_value=10**12), pct=st.integers(min_value=0, max_value=100))
def test_discount_bounds(a: int, pct: int) -> None:
    """A discounted price lies between zero and the list price, and parts add up."""
    price = Money(a, RUB)
    discounted = price.discounted(pct)
    assert Money(0, RUB) <= discounted <= price
    assert discounted + price.percent(pct) == price
