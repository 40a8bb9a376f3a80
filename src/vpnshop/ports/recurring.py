"""An optional capability of a payment gateway: charging a payment method the customer
saved with an earlier payment (YooKassa), for auto-renewal without the customer."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from vpnshop.ports.payments import CheckoutRequest, ProviderPayment


@runtime_checkable
class SavedMethodCharger(Protocol):
    @property
    def name(self) -> str: ...

    async def charge_saved_method(
        self, request: CheckoutRequest, saved_method_id: str
    ) -> ProviderPayment:
        """Create a payment on the saved method (no confirmation, no customer action) under
        ``request.idempotency_key``, so a retry after a crash charges once; returns the
        provider's view of it right after the call. Raises ProviderRejectedError (the
        method cannot be charged) or ProviderUnavailableError (retry later)."""
        ...
