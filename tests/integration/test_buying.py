"""The money journeys' use cases on every backend (memory, SQLite, PostgreSQL): quotes
priced on the server, paying a quote once, stale and foreign buttons, the Stars
pre-checkout check and the top-up limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.integration.journeys import Journeys, make_journeys
from vpnshop.domain.actor import Actor
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.payment import PaymentStatus
from vpnshop.domain.promo import PromoKind
from vpnshop.ports.storage import UnitOfWork
from vpnshop.services.bot_payments import Refusal
from vpnshop.services.buying import (
    AlreadyPaidError,
    ForeignObjectError,
    StaleQuoteError,
    quote_tag,
)
from vpnshop.services.money_journeys import MoneyJourneys
from vpnshop.services.topup import AmountProblem, TopupAmountError

Factory = Callable[[], UnitOfWork]
MONTH = Money(19900, RUB)


@pytest.fixture
async def j(uow_factory: Factory) -> Journeys:
    return await make_journeys(uow_factory)


def money(j: Journeys) -> MoneyJourneys:
    assert j.shop.app.money is not None
    return j.shop.app.money


async def funded(j: Journeys, telegram_id: int, amount: Money) -> int:
    cid = await j.start(telegram_id)
    await j.shop.adjust(cid, amount, admin=Actor.admin(1), reason="test", key=f"t:{cid}")
    return cid


async def test_quote_offers_methods_that_fit_and_the_kept_discount(j: Journeys) -> None:
    """The quote prices on the server with the customer's kept discount, and offers the
    gateway whose limits fit and the balance only when it covers the price."""
    cid = await funded(j, 1001, Money(15000, RUB))
    quote = await money(j).buy.quote(cid, "month", 0)
    assert quote.prices == (MONTH,)
    assert [m.provider for m in quote.methods] == ["fake", "norefund"]
    await j.add_promo("SALE25", PromoKind.DISCOUNT, 25)
    await j.redeem(cid, "SALE25")
    quote = await money(j).buy.quote(cid, "month", 0)
    assert quote.discount_percent == 25
    assert quote.prices == (Money(14925, RUB),)
    assert [m.provider for m in quote.methods] == ["fake", "norefund", "balance"]


async def test_balance_quote_is_paid_once_per_confirmation(j: Journeys) -> None:
    """The same confirmation paid ten times at once makes one payment and one debit."""
    cid = await funded(j, 1001, Money(50000, RUB))
    pay = money(j).pay
    tag = quote_tag("month", MONTH, 0)

    async def once() -> object:
        try:
            return await pay.with_balance(
                cid,
                plan_code="month",
                subscription_id=0,
                cur="RUB",
                tag=tag,
                nonce="abc123",
                actor=Actor.customer(1001),
            )
        except AlreadyPaidError as e:
            return e

    results = await asyncio.gather(*(once() for _ in range(10)))
    paid = [r for r in results if not isinstance(r, AlreadyPaidError)]
    assert len(paid) == 1
    async with j.shop.uow() as uow:
        assert await uow.ledger.balance(cid, RUB) == Money(30100, RUB)
        payments = await uow.payments.recent(100, customer_id=cid)
    assert [p.status for p in payments] == [PaymentStatus.SUCCEEDED]
    assert await j.shop.verify() == []


async def test_stale_and_foreign_buttons_store_nothing(j: Journeys) -> None:
    """A wrong tag, an unknown plan, an old subscription state or another customer's
    subscription is refused before anything is stored; an uncovered price too."""
    bob = await funded(j, 2001, Money(50000, RUB))
    await j.shop.extend(bob, 30, actor=Actor.admin(1), reason="test")
    async with j.shop.uow() as uow:
        [bob_sub] = await uow.subscriptions.for_customer(bob)
    alice = await funded(j, 1001, Money(100, RUB))
    pay = money(j).pay
    good = quote_tag("month", MONTH, 0)
    with pytest.raises(StaleQuoteError) as stale:
        await pay.with_provider(
            alice, plan_code="month", subscription_id=0, provider="fake", tag="000000"
        )
    assert stale.value.reason == "price"
    with pytest.raises(StaleQuoteError):
        await money(j).buy.quote(alice, "nosuch", 0)
    with pytest.raises(ForeignObjectError):
        await money(j).buy.quote(alice, "month", bob_sub.id or 0)
    with pytest.raises(StaleQuoteError) as method:
        await pay.with_balance(
            alice,
            plan_code="month",
            subscription_id=0,
            cur="RUB",
            tag=good,
            nonce="n1",
            actor=Actor.customer(1001),
        )
    assert method.value.reason == "method"
    with pytest.raises(StaleQuoteError) as old:
        await money(j).buy.quote(bob, "month", 0)
    assert old.value.reason == "subscription"
    async with j.shop.uow() as uow:
        assert await uow.payments.recent(100, customer_id=alice) == []


async def test_pre_checkout_is_checked_against_the_stored_payment(j: Journeys) -> None:
    """Only this customer's open payment, with its exact amount and currency, passes."""
    cid = await j.start(1001)
    await j.start(2002)
    link = await j.shop.checkout(cid, "fake", plan_code="month")
    check = money(j).check_pre_checkout

    async def refusal(
        ref: str | None, cur: str = "RUB", total: int = 19900, tg: int = 1001
    ) -> Refusal | None:
        return await check(ref, provider="fake", currency_code=cur, total=total, telegram_id=tg)

    assert await refusal(link.payment_id) is None
    assert await refusal(link.payment_id, total=19899) is Refusal.AMOUNT
    assert await refusal(link.payment_id, cur="XTR") is Refusal.AMOUNT
    assert await refusal(link.payment_id, cur="???") is Refusal.AMOUNT
    assert await refusal(link.payment_id, tg=2002) is Refusal.FOREIGN
    assert await refusal("nope") is Refusal.UNKNOWN
    assert await refusal(None) is Refusal.UNKNOWN
    await j.shop.confirm(j.shop.gateway.event(payment_ref=link.payment_id, amount=MONTH))
    assert await refusal(link.payment_id) is Refusal.CLOSED


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("abc", AmountProblem.NOT_A_NUMBER),
        ("1e5", AmountProblem.NOT_A_NUMBER),
        ("-100", AmountProblem.NOT_A_NUMBER),
        ("10", AmountProblem.TOO_SMALL),
        ("50000.01", AmountProblem.TOO_LARGE),
    ],
)
async def test_typed_top_up_amounts_are_checked(
    j: Journeys, text: str, problem: AmountProblem
) -> None:
    """Each kind of bad typed amount is its own error; the bounds are named."""
    with pytest.raises(TopupAmountError) as e:
        money(j).topup.parse(text)
    assert e.value.problem is problem
    assert money(j).topup.parse(" 250,5 ") == Money(25050, RUB)
