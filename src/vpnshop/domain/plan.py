"""Plans: what a customer can buy."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

import attrs

from vpnshop.domain.errors import ValidationError
from vpnshop.domain.money import Currency, Money

GIB = 1024**3
_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class TrafficReset(enum.StrEnum):
    """How the panel resets a user's traffic counter (Remnawave's strategies)."""

    NO_RESET = "NO_RESET"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    MONTH_ROLLING = "MONTH_ROLLING"


@attrs.frozen(eq=True, hash=False)
class Plan:
    """A product: duration, limits, squads and a price in each accepted currency."""

    code: str
    names: Mapping[str, str]
    duration_days: int
    prices: Mapping[str, Money]
    traffic_limit_bytes: int = 0  # 0 = unlimited
    traffic_reset: TrafficReset = TrafficReset.NO_RESET
    device_limit: int | None = None  # None = the panel's default
    squads: tuple[str, ...] = ()
    active: bool = True
    sort_order: int = 0

    def __attrs_post_init__(self) -> None:
        if not _CODE.match(self.code):
            raise ValidationError(f"plan code {self.code!r} must be 1-32 of a-z, 0-9, '_' or '-'")
        if self.duration_days <= 0:
            raise ValidationError(f"plan {self.code}: duration_days must be positive")
        if self.traffic_limit_bytes < 0:
            raise ValidationError(f"plan {self.code}: traffic limit cannot be negative")
        if self.device_limit is not None and self.device_limit < 0:
            raise ValidationError(f"plan {self.code}: device limit cannot be negative")
        if not self.prices:
            raise ValidationError(f"plan {self.code}: needs at least one price")
        for code, money in self.prices.items():
            if money.currency.code != code:
                raise ValidationError(f"plan {self.code}: price key {code} != {money.currency}")
            if not money.is_positive:
                raise ValidationError(f"plan {self.code}: price {money} must be positive")
        if not self.names:
            raise ValidationError(f"plan {self.code}: needs a name")

    def name(self, language: str) -> str:
        return self.names.get(language) or self.names.get("en") or next(iter(self.names.values()))

    def price(self, cur: Currency) -> Money | None:
        return self.prices.get(cur.code)
