"""Start a checkout: price the order on the server, store the payment, then create it at
the provider, within the provider's limits."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import ValidationError
from vpnshop.domain.money import Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.ports.payments import AmountOutOfRangeError, CheckoutRequest, PaymentGateway
from vpnshop.services.customers import buyable_customer
from vpnshop.services.deps import Deps, record
from vpnshop.services.pricing import price_plan_order, topup_order


@attrs.frozen
class CheckoutLink:
    payment_id: str
    order: Order
    url: str | None
    invoice_payload: str | None


@attrs.frozen
class StartCheckout:
    """Price an order on the server, store the payment, then create it at the provider.

    The payment is stored before the provider is called, and the provider is given an
    idempotency key derived from it, so a retry never creates a second charge.
    """

    deps: Deps
    gateways: Mapping[str, PaymentGateway]

    async def __call__(
        self,
        customer_id: int,
        provider: str,
        *,
        plan_code: str | None = None,
        topup: Money | None = None,
        promo_code: str | None = None,
        return_url: str | None = None,
        email: str | None = None,
    ) -> CheckoutLink:
        gateway = self.gateways.get(provider)
        if gateway is None:
            raise ValidationError(f"payment method {provider!r} is not available")
        now = self.deps.now()
        async with self.deps.uow() as uow:
            customer = await buyable_customer(uow, customer_id)
            if plan_code is not None:
                order = await price_plan_order(
                    uow,
                    self.deps,
                    customer_id=customer_id,
                    plan_code=plan_code,
                    cur=gateway.currency,
                    promo_code=promo_code,
                )
            elif topup is not None:
                if topup.currency != gateway.currency:
                    raise ValidationError(f"{provider} takes {gateway.currency.code}")
                order = topup_order(self.deps, customer_id=customer_id, amount=topup)
            else:
                raise ValidationError("a checkout buys a plan or tops up the balance")
            check_limits(gateway, order.amount)
            payment = Payment(
                id=self.deps.ids.new_id(),
                order_id=order.id,
                customer_id=customer_id,
                provider=provider,
                amount=order.amount,
                created_at=now,
                updated_at=now,
            )
            await uow.orders.add(order)
            await uow.payments.add(payment)
            await record(
                uow,
                now,
                Actor.customer(customer.telegram_id),
                "checkout.start",
                f"payment:{payment.id}",
                provider=provider,
                amount=str(order.amount),
            )
            await uow.commit()
        checkout = await gateway.create_payment(
            CheckoutRequest(
                payment_id=payment.id,
                order_id=order.id,
                amount=order.amount,
                description=_describe(order),
                idempotency_key=f"pay:{payment.id}",
                customer_telegram_id=customer.telegram_id,
                return_url=return_url,
                email=email,
                plan_code=order.plan_code,
            )
        )
        async with self.deps.uow() as uow:
            await uow.payments.transition(
                payment.id,
                PaymentStatus.PENDING,
                self.deps.now(),
                external_id=checkout.external_id,
                confirmation_url=checkout.url,
            )
            await uow.commit()
        return CheckoutLink(payment.id, order, checkout.url, checkout.invoice_payload)


def check_limits(gateway: PaymentGateway, amount: Money) -> None:
    low, high = gateway.min_amount, gateway.max_amount
    if low is not None and amount < low:
        raise AmountOutOfRangeError(f"{gateway.name}: the minimum is {low}")
    if high is not None and amount > high:
        raise AmountOutOfRangeError(f"{gateway.name}: the maximum is {high}")


def _describe(order: Order) -> str:
    if order.kind is OrderKind.TOPUP:
        return f"Balance top-up {order.amount}"
    return f"VPN {order.plan_code}, {order.days} days"
