"""Money: integer minor units plus a currency. No floats anywhere.

Providers speak decimal strings ("100.00", "125.5"); :meth:`Money.parse` turns them into
minor units with :class:`decimal.Decimal` and refuses anything more precise than the
currency allows, so a rounding error can never become a price.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Final

import attrs

from vpnshop.domain.errors import CurrencyMismatchError, InvalidAmountError, UnknownCurrencyError


@attrs.frozen(order=False)
class Currency:
    """An ISO 4217 currency (or Telegram's ``XTR``) with its number of decimals."""

    code: str
    exponent: int

    @property
    def scale(self) -> int:
        return int(10**self.exponent)

    def __str__(self) -> str:
        return self.code


RUB: Final = Currency("RUB", 2)
USD: Final = Currency("USD", 2)
EUR: Final = Currency("EUR", 2)
XTR: Final = Currency("XTR", 0)

# Far above any price, far below a 64-bit column: a parsed amount beyond it is an attack
# or a bug, never money.
MAX_MINOR: Final = 10**15
MAX_DIGITS: Final = 18

CURRENCIES: Final[dict[str, Currency]] = {c.code: c for c in (RUB, USD, EUR, XTR)}


def currency(code: str) -> Currency:
    """Look up a currency by code, case-insensitively."""
    try:
        return CURRENCIES[code.strip().upper()]
    except KeyError:
        raise UnknownCurrencyError(f"unknown currency {code!r}") from None


def _check_minor(_: object, __: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmountError(f"minor units must be an int, got {type(value).__name__}")


@attrs.frozen(order=False)
class Money:
    """An amount in minor units (kopecks, cents, whole stars) of one currency."""

    minor: int = attrs.field(validator=_check_minor)
    currency: Currency

    # -- construction -----------------------------------------------------------------
    @classmethod
    def zero(cls, cur: Currency) -> Money:
        return cls(0, cur)

    @classmethod
    def parse(cls, value: str | int | Decimal, cur: Currency | str) -> Money:
        """Parse a provider's decimal amount exactly ("100.00" RUB -> 10000 minor).

        Raises InvalidAmountError for non-numbers, non-finite values and amounts with more
        decimals than the currency has ("1.005" RUB).
        """
        c = currency(cur) if isinstance(cur, str) else cur
        if isinstance(value, float):
            raise InvalidAmountError("floats are not money; pass a string or Decimal")
        try:
            d = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
        except InvalidOperation:
            raise InvalidAmountError(f"not an amount: {value!r}") from None
        if not d.is_finite():
            raise InvalidAmountError(f"not a finite amount: {value!r}")
        if d != 0 and d.adjusted() > MAX_DIGITS:  # before scaling: "1e400000" is no price
            raise InvalidAmountError(f"amount out of range: {value!r}")
        scaled = d * c.scale
        if scaled != scaled.to_integral_value():
            raise InvalidAmountError(f"{value!r} has more than {c.exponent} decimals for {c.code}")
        minor = int(scaled)
        if abs(minor) > MAX_MINOR:
            raise InvalidAmountError(f"amount out of range: {value!r}")
        return cls(minor, c)

    @classmethod
    def of(cls, value: str | int | Decimal, cur: Currency | str) -> Money:
        """Alias of :meth:`parse`, reads better in tests and plans: ``Money.of("99", RUB)``."""
        return cls.parse(value, cur)

    # -- presentation -------------------------------------------------------------------
    def to_decimal(self) -> Decimal:
        return Decimal(self.minor).scaleb(-self.currency.exponent)

    def format(self) -> str:
        """The amount as a plain decimal string with exactly the currency's decimals."""
        sign = "-" if self.minor < 0 else ""
        whole, frac = divmod(abs(self.minor), self.currency.scale)
        if self.currency.exponent == 0:
            return f"{sign}{whole}"
        return f"{sign}{whole}.{frac:0{self.currency.exponent}d}"

    def __str__(self) -> str:
        return f"{self.format()} {self.currency.code}"

    # -- arithmetic ---------------------------------------------------------------------
    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(
                f"cannot combine {self.currency.code} with {other.currency.code}"
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.minor), self.currency)

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            return NotImplemented
        return Money(self.minor * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    @property
    def is_zero(self) -> bool:
        return self.minor == 0

    @property
    def is_positive(self) -> bool:
        return self.minor > 0

    def percent(self, pct: int | Decimal) -> Money:
        """*pct* percent of this amount, rounded down to a whole minor unit.

        Rounding down means a discount or a reward never exceeds its stated percentage.
        """
        p = Decimal(pct)
        if p < 0:
            raise InvalidAmountError("a percentage cannot be negative")
        part = (Decimal(self.minor) * p / 100).to_integral_value(rounding=ROUND_FLOOR)
        return Money(int(part), self.currency)

    def discounted(self, pct: int) -> Money:
        """This amount less *pct* percent (the discount rounds down, the price up)."""
        if not 0 <= pct <= 100:
            raise InvalidAmountError("a discount is between 0 and 100 percent")
        return self - self.percent(pct)
