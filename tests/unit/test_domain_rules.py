"""Rules of the domain: subscription extension, payment transitions, promos, referrals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpnshop.domain.errors import (
    PromoError,
    ReferralError,
    ValidationError,
)
from vpnshop.domain.money import RUB, XTR, Money
from vpnshop.domain.order import Order, OrderKind
from vpnshop.domain.payment import TRANSITIONS, PaymentStatus, can_transition, sources_of
from vpnshop.domain.plan import Plan
from vpnshop.domain.promo import PromoCode, PromoKind
from vpnshop.domain.referral import ReferralPolicy, check_referral
from vpnshop.domain.subscription import Subscription

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)


def sub(expires_at: datetime) -> Subscription:
    return Subscription(id=1, customer_id=1, plan_code="month", expires_at=expires_at)


@given(expiry=times, now=times, days=st.integers(min_value=1, max_value=3650))
def test_extension_never_loses_days(expiry: datetime, now: datetime, days: int) -> None:
    """Extending counts from max(now, expiry): early renewal keeps the remaining days."""
    extended = sub(expiry).extended(days, now)
    assert extended.expires_at == max(expiry, now) + timedelta(days=days)
    assert extended.expires_at - now >= timedelta(days=days)
    assert extended.expires_at >= expiry + timedelta(days=days) or expiry < now


@given(expiry=times, now=times, a=st.integers(1, 400), b=st.integers(1, 400))
def test_two_extensions_add_up(expiry: datetime, now: datetime, a: int, b: int) -> None:
    """Two extensions at the same moment equal one of their sum."""
    s = sub(expiry)
    assert s.extended(a, now).extended(b, now).expires_at == s.extended(a + b, now).expires_at


def test_extension_and_shortening_validate() -> None:
    """Zero or negative days are refused; shortening never goes before now."""
    with pytest.raises(ValidationError):
        sub(NOW).extended(0, NOW)
    with pytest.raises(ValidationError):
        sub(NOW).shortened(-1, NOW)
    assert sub(NOW + timedelta(days=2)).shortened(10, NOW).expires_at == NOW


@given(path=st.lists(st.sampled_from(list(PaymentStatus)), max_size=8))
def test_payment_transitions_follow_the_machine(path: list[PaymentStatus]) -> None:
    """Any sequence of requested transitions is accepted exactly when the machine allows
    it, by ``can_transition`` and by ``sources_of`` (the stores' conditional UPDATE) alike;
    final states stay final."""
    status = PaymentStatus.CREATED
    for dst in path:
        allowed = can_transition(status, dst)
        assert allowed == (dst in TRANSITIONS[status]) == (status in sources_of(dst))
        if allowed:
            status = dst
    if status.is_final:
        assert not TRANSITIONS[status]


def test_refund_only_after_success() -> None:
    """Succeeded may become refunded; pending may not, nor may anything return to pending."""
    assert can_transition(PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)
    assert not can_transition(PaymentStatus.PENDING, PaymentStatus.REFUNDED)
    assert not can_transition(PaymentStatus.SUCCEEDED, PaymentStatus.PENDING)
    assert sources_of(PaymentStatus.SUCCEEDED) == {PaymentStatus.CREATED, PaymentStatus.PENDING}


def test_plan_validation() -> None:
    """A plan needs a valid code, positive duration and positive prices keyed by currency."""
    ok = dict(
        code="month", names={"en": "Month"}, duration_days=30, prices={"RUB": Money(19900, RUB)}
    )
    assert Plan(**ok).price(RUB) == Money(19900, RUB)  # type: ignore[arg-type]
    for bad in (
        {"code": "Bad Code"},
        {"duration_days": 0},
        {"prices": {}},
        {"prices": {"USD": Money(1, RUB)}},
        {"prices": {"XTR": Money(0, XTR)}},
    ):
        with pytest.raises(ValidationError):
            Plan(**{**ok, **bad})  # type: ignore[arg-type]


def test_order_rules() -> None:
    """A plan order names a plan; a top-up does not; amounts are positive."""
    with pytest.raises(ValidationError):
        Order("o", 1, OrderKind.PLAN, Money(1, RUB), Money(1, RUB))
    with pytest.raises(ValidationError):
        Order("o", 1, OrderKind.TOPUP, Money(0, RUB), Money(0, RUB))
    assert Order("o", 1, OrderKind.TOPUP, Money(5, RUB), Money(5, RUB)).plan_code is None


def test_promo_rules() -> None:
    """A promo code reports why it cannot be used."""
    promo = PromoCode(
        code="sale10",
        kind=PromoKind.DISCOUNT,
        value=10,
        max_uses=1,
        uses=1,
        valid_until=NOW,
        min_amount=Money(10000, RUB),
        plan_codes=frozenset({"year"}),
    )
    assert promo.code == "SALE10"
    for check, reason in (
        (lambda: promo.check_usable(NOW - timedelta(1)), "exhausted"),
        (lambda: promo.check_order("month", Money(20000, RUB)), "wrong_plan"),
        (lambda: promo.check_order("year", Money(100, RUB)), "below_minimum"),
    ):
        with pytest.raises(PromoError) as e:
            check()
        assert e.value.reason == reason
    with pytest.raises(ValidationError):
        PromoCode(code="X1Y", kind=PromoKind.DISCOUNT, value=101)


def test_referral_cycles_refused() -> None:
    """Self-referral and referral cycles are refused; a plain chain is fine."""
    chain = {2: 3, 3: None}  # 2 was referred by 3
    check_referral(2, 1, chain.get)
    with pytest.raises(ReferralError):
        check_referral(1, 1, chain.get)
    with pytest.raises(ReferralError):
        check_referral(3, 2, {3: 2, 2: None}.get)
    assert ReferralPolicy(percent=10).reward(Money(999, RUB)) == Money(99, RUB)
