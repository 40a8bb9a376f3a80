"""Top-up of the balance from the bot: the preset amounts, a typed amount checked with a
precise reason, and the checkout through a provider (never the balance itself)."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence

import attrs

from vpnshop.domain.errors import DomainError
from vpnshop.domain.money import Currency, Money
from vpnshop.ports.payments import PaymentGateway
from vpnshop.services.buying import StaleQuoteError
from vpnshop.services.checkout import CheckoutLink, StartCheckout

_TYPED = re.compile(r"\d{1,9}(?:[.,]\d{1,2})?")


class AmountProblem(enum.StrEnum):
    NOT_A_NUMBER = "nan"
    TOO_SMALL = "small"
    TOO_LARGE = "large"


class TopupAmountError(DomainError):
    """A typed amount the shop does not take; ``problem`` says why, ``limit`` the bound
    it broke (for the message)."""

    def __init__(self, problem: AmountProblem, limit: Money | None = None) -> None:
        super().__init__(f"top-up amount: {problem.value}")
        self.problem = problem
        self.limit = limit


@attrs.frozen
class TopupLimits:
    """In minor units of ``currency``: the presets offered and the typed range."""

    currency: Currency
    presets: tuple[int, ...]
    minimum: int
    maximum: int


@attrs.frozen
class TopUp:
    start_checkout: StartCheckout
    gateways: Mapping[str, PaymentGateway]
    limits: TopupLimits

    def presets(self) -> list[Money]:
        return [Money(m, self.limits.currency) for m in self.limits.presets]

    def parse(self, text: str) -> Money:
        """The typed *text* as an amount within the limits, else TopupAmountError."""
        cleaned = text.strip().replace(" ", "")
        if not _TYPED.fullmatch(cleaned):
            raise TopupAmountError(AmountProblem.NOT_A_NUMBER)
        amount = Money.parse(cleaned.replace(",", "."), self.limits.currency)
        low = Money(self.limits.minimum, self.limits.currency)
        high = Money(self.limits.maximum, self.limits.currency)
        if amount < low:
            raise TopupAmountError(AmountProblem.TOO_SMALL, low)
        if amount > high:
            raise TopupAmountError(AmountProblem.TOO_LARGE, high)
        return amount

    def methods(self, amount: Money) -> Sequence[str]:
        """The providers that take *amount* (currency and their min/max)."""
        out = []
        for name in sorted(self.gateways):
            g = self.gateways[name]
            if g.currency != amount.currency:
                continue
            if g.min_amount is not None and amount < g.min_amount:
                continue
            if g.max_amount is not None and amount > g.max_amount:
                continue
            out.append(name)
        return out

    async def start(self, customer_id: int, provider: str, minor: int) -> CheckoutLink:
        """Start a top-up of *minor* units (a preset's or a typed amount, checked again
        here: the callback only names it)."""
        amount = Money(minor, self.limits.currency)
        if minor < self.limits.minimum:
            raise TopupAmountError(
                AmountProblem.TOO_SMALL, Money(self.limits.minimum, amount.currency)
            )
        if minor > self.limits.maximum:
            raise TopupAmountError(
                AmountProblem.TOO_LARGE, Money(self.limits.maximum, amount.currency)
            )
        if provider not in self.methods(amount):
            raise StaleQuoteError("method", f"{provider} does not take {amount}")
        return await self.start_checkout(customer_id, provider, topup=amount)
