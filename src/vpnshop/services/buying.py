"""Buy or extend, as the bot offers it: the plans with their prices, a quote priced on
the server (a kept discount applies), the ways to pay it, and paying it.

A button only names what to look up (plan, currency or provider, the subscription it
acts on) and carries a short *tag* of the quote the customer saw. Paying re-prices the
order; a tag that no longer matches (the price or discount changed, or the data was
forged) is refused with :class:`StaleQuoteError` and nothing is stored. A button that
names another customer's subscription raises :class:`ForeignObjectError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import ConflictError, DomainError, NotFoundError, ValidationError
from vpnshop.domain.money import Currency, Money, currency
from vpnshop.domain.payment import Payment
from vpnshop.domain.plan import Plan
from vpnshop.ports.payments import PaymentGateway
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.balance_payments import BALANCE, PayFromBalance
from vpnshop.services.checkout import CheckoutLink, StartCheckout
from vpnshop.services.customers import buyable_customer
from vpnshop.services.deps import Deps
from vpnshop.services.pricing import price_plan_order
from vpnshop.services.subscriptions import current_subscription


class StaleQuoteError(DomainError):
    """The screen the button was on is out of date: ``reason`` is ``price`` (the price
    or discount changed since the quote), ``subscription`` (it was for another state of
    the customer's subscription), ``plan`` (no such plan on sale) or ``method`` (that way
    of paying is not offered for this quote)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ForeignObjectError(DomainError):
    """The button names something (a subscription, a payment) of another customer."""


class AlreadyPaidError(DomainError):
    """This quote was paid already (a repeated tap on "pay from balance")."""


@attrs.frozen
class Method:
    """One way to pay a quote: a provider's name (or ``balance``) and the amount."""

    provider: str
    amount: Money


@attrs.frozen
class Quote:
    plan: Plan
    subscription_id: int  # the subscription the purchase extends; 0: a new one
    prices: tuple[Money, ...]  # in each currency someone can pay in, discount applied
    discount_percent: int
    methods: tuple[Method, ...]

    def method(self, provider: str, cur: str | None = None) -> Method | None:
        for m in self.methods:
            if m.provider == provider and (cur is None or m.amount.currency.code == cur):
                return m
        return None


def quote_tag(plan_code: str, amount: Money, discount_percent: int) -> str:
    """A short fingerprint of one price of a quote (not the price: 6 hex digits; it only
    tells a stale screen from the current one, the server re-prices every time)."""
    raw = f"{plan_code}|{amount.minor}|{amount.currency.code}|{discount_percent}"
    return hashlib.sha256(raw.encode()).hexdigest()[:6]


@attrs.frozen
class BuyPlans:
    """The plans on sale and, per plan, the quote the customer would get now."""

    deps: Deps
    gateways: Mapping[str, PaymentGateway]

    def currencies(self) -> list[Currency]:
        """The currencies someone can pay in: each gateway's (the balance pays in the
        ones it holds, which only a gateway's top-up or an admin put there)."""
        return sorted({g.currency for g in self.gateways.values()}, key=lambda c: c.code)

    async def plans(self) -> list[Plan]:
        async with self.deps.uow() as uow:
            return await uow.plans.list(active_only=True)

    async def quote(self, customer_id: int, plan_code: str, subscription_id: int) -> Quote:
        """The quote for *plan_code*, extending *subscription_id* (0: the customer has
        none): prices on the server, each method that can take it."""
        async with self.deps.uow() as uow:
            return await self._quote(uow, customer_id, plan_code, subscription_id)

    async def _quote(
        self, uow: UnitOfWork, customer_id: int, plan_code: str, subscription_id: int
    ) -> Quote:
        await buyable_customer(uow, customer_id)
        await check_subscription(uow, customer_id, subscription_id)
        plan = await uow.plans.get(plan_code)
        if plan is None or not plan.active:
            raise StaleQuoteError("plan", f"plan {plan_code[:40]!r} is not on sale")
        curs = {c.code: c for c in self.currencies()}
        balances = {m.currency.code: m for m in await uow.ledger.balances(customer_id)}
        prices: list[Money] = []
        methods: list[Method] = []
        discount = 0
        for code in sorted(plan.prices):
            cur = currency(code)
            if code not in curs and code not in balances:
                continue
            order = await price_plan_order(
                uow, self.deps, customer_id=customer_id, plan_code=plan.code, cur=cur
            )
            prices.append(order.amount)
            discount = order.discount_percent
            for name in sorted(self.gateways):
                gateway = self.gateways[name]
                if gateway.currency == cur and _fits(gateway, order.amount):
                    methods.append(Method(name, order.amount))
            held = balances.get(code)
            if held is not None and held >= order.amount:
                methods.append(Method(BALANCE, order.amount))
        return Quote(plan, subscription_id, tuple(prices), discount, tuple(methods))


def _fits(gateway: PaymentGateway, amount: Money) -> bool:
    low, high = gateway.min_amount, gateway.max_amount
    return not ((low is not None and amount < low) or (high is not None and amount > high))


async def check_subscription(uow: UnitOfWork, customer_id: int, subscription_id: int) -> None:
    """*subscription_id* must be the customer's current subscription (0: they have none);
    another customer's is :class:`ForeignObjectError`, an old state :class:`StaleQuoteError`."""
    current = await current_subscription(uow, customer_id)
    current_id = current.id if current is not None and current.id is not None else 0
    if subscription_id == current_id:
        return
    if subscription_id:
        other = await uow.subscriptions.get(subscription_id)
        if other is not None and other.customer_id != customer_id:
            raise ForeignObjectError(f"subscription {subscription_id} is not the customer's")
    raise StaleQuoteError("subscription", f"subscription {subscription_id} is not current")


@attrs.frozen
class PayQuote:
    """Pay a quote the customer saw: from the balance (once per *nonce*, however many
    taps arrive) or through a provider (a checkout URL or a Stars invoice)."""

    buy: BuyPlans
    pay_from_balance: PayFromBalance
    start_checkout: StartCheckout

    async def _checked(
        self,
        customer_id: int,
        plan_code: str,
        subscription_id: int,
        provider: str,
        cur: str | None,
        tag: str,
    ) -> tuple[Quote, Method]:
        quote = await self.buy.quote(customer_id, plan_code, subscription_id)
        method = quote.method(provider, cur)
        if method is None:
            raise StaleQuoteError("method", f"{provider} does not take this quote")
        if quote_tag(plan_code, method.amount, quote.discount_percent) != tag:
            raise StaleQuoteError("price", f"the price of {plan_code} changed since the quote")
        return quote, method

    async def with_balance(
        self,
        customer_id: int,
        *,
        plan_code: str,
        subscription_id: int,
        cur: str,
        tag: str,
        nonce: str,
        actor: Actor,
    ) -> Payment:
        if not nonce.isalnum() or len(nonce) > 16:
            raise ValidationError("a malformed confirmation")
        order_id = f"bq{customer_id}-{nonce}"
        async with self.buy.deps.uow() as uow:  # a repeated tap, after the first one paid
            if await uow.orders.get(order_id) is not None:
                raise AlreadyPaidError(f"order {order_id} exists")
        _, method = await self._checked(customer_id, plan_code, subscription_id, BALANCE, cur, tag)
        try:
            return await self.pay_from_balance(
                customer_id, plan_code, method.amount.currency, actor=actor, order_id=order_id
            )
        except ConflictError as e:  # a concurrent tap stored this order first
            raise AlreadyPaidError(str(e)) from None
        except ValidationError as e:
            if "exists" in str(e):
                raise AlreadyPaidError(str(e)) from None
            raise

    async def with_provider(
        self,
        customer_id: int,
        *,
        plan_code: str,
        subscription_id: int,
        provider: str,
        tag: str,
    ) -> CheckoutLink:
        if provider == BALANCE:
            raise StaleQuoteError("method", "the balance is paid with a confirmation")
        await self._checked(customer_id, plan_code, subscription_id, provider, None, tag)
        return await self.start_checkout(customer_id, provider, plan_code=plan_code)


async def own_payment(uow: UnitOfWork, customer_id: int, payment_id: str) -> Payment:
    """The payment, if it is this customer's."""
    payment = await uow.payments.get(payment_id)
    if payment is None:
        raise NotFoundError(f"payment {payment_id[:40]!r}")
    if payment.customer_id != customer_id:
        raise ForeignObjectError(f"payment {payment_id} is not the customer's")
    return payment


@attrs.frozen
class GetOwnPayment:
    """A payment's state for the customer who made it ("I paid, check")."""

    deps: Deps

    async def __call__(self, customer_id: int, payment_id: str) -> Payment:
        async with self.deps.uow() as uow:
            return await own_payment(uow, customer_id, payment_id)


def methods_by_provider(methods: Sequence[Method]) -> list[Method]:
    """One entry per provider: the first currency it takes (each gateway has one)."""
    seen: set[str] = set()
    out: list[Method] = []
    for m in methods:
        key = m.provider if m.provider != BALANCE else f"{BALANCE}:{m.amount.currency.code}"
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out
