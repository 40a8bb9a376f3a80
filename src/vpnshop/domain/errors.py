"""The one family of errors the core raises.

Shells map these to a message in the user's language or to an HTTP status; every error
carries a stable ``code`` so that mapping never parses prose.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the core raises on purpose."""

    code = "domain_error"


class CurrencyMismatchError(DomainError):
    """Two amounts of different currencies were combined."""

    code = "currency_mismatch"


class InvalidAmountError(DomainError):
    """An amount is malformed, negative where it may not be, or too precise."""

    code = "invalid_amount"


class UnknownCurrencyError(DomainError):
    """A currency code that vpnshop does not know."""

    code = "unknown_currency"


class InsufficientFundsError(DomainError):
    """A debit would drive a balance below zero."""

    code = "insufficient_funds"


class NotFoundError(DomainError):
    """The thing asked for does not exist."""

    code = "not_found"


class ConflictError(DomainError):
    """The change conflicts with what is stored (a duplicate, a stale state)."""

    code = "conflict"


class TrialAlreadyUsedError(DomainError):
    """The customer has had their free trial."""

    code = "trial_used"


class CustomerBannedError(DomainError):
    """The customer is banned and may not do this."""

    code = "banned"


class PromoError(DomainError):
    """A promo code cannot be used here; ``reason`` says why."""

    code = "promo_invalid"

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class PromoUnknownError(PromoError):
    """No such promo code, or it has been switched off (the customer cannot tell which)."""

    code = "promo_unknown"

    def __init__(self, message: str = "") -> None:
        super().__init__("unknown", message)


class PromoExpiredError(PromoError):
    """The promo code was valid until a time that has passed."""

    code = "promo_expired"

    def __init__(self, message: str = "") -> None:
        super().__init__("expired", message)


class PromoUsedError(PromoError):
    """This customer has already redeemed this once-per-customer code."""

    code = "promo_used"

    def __init__(self, message: str = "") -> None:
        super().__init__("already_used", message)


class PromoExhaustedError(PromoError):
    """The code has reached its total number of uses."""

    code = "promo_exhausted"

    def __init__(self, message: str = "") -> None:
        super().__init__("exhausted", message)


class PromoNotApplicableError(PromoError):
    """The code exists and is usable, but not by this customer now (a trial extension
    without a running trial, a discount for another plan); ``reason`` says which."""

    code = "promo_not_applicable"


class ReferralError(DomainError):
    """A referral link that would refer a customer to themselves or make a cycle."""

    code = "referral_invalid"


class SubscriptionNotFoundError(NotFoundError):
    """No such subscription for this customer: unknown, or another customer's (which is
    never revealed)."""

    code = "subscription_not_found"


class SubscriptionNotReadyError(DomainError):
    """The subscription has no panel user yet (the outbox is creating it; its link follows)."""

    code = "subscription_not_ready"


class AmountMismatchError(DomainError):
    """A provider confirmed an amount or currency other than the order's."""

    code = "amount_mismatch"


class ValidationError(DomainError):
    """Input that breaks a rule of the domain (a plan without a price, a bad code)."""

    code = "invalid"
