"""Small tests of the non-storage fakes in ``vpnshop.testing.fakes`` and of the production
clock and id generator in ``vpnshop.adapters.clock``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vpnshop.adapters.clock import CROCKFORD, SystemClock, UlidIds
from vpnshop.domain.actor import Actor
from vpnshop.domain.ledger import EntryKind, LedgerEntry
from vpnshop.domain.money import RUB, Money
from vpnshop.domain.panel import PanelAccess, PanelDevice, PanelStatus
from vpnshop.ports.notifier import Message, RecipientUnreachableError, RetryLaterError
from vpnshop.ports.panel import PanelNotFoundError, PanelNotOwnedError, PanelUnavailableError
from vpnshop.ports.payments import (
    CheckoutRequest,
    EventKind,
    ProviderStatus,
    WebhookAuthError,
    WebhookMalformedError,
    WebhookRequest,
)
from vpnshop.ports.storage import BalanceMismatch
from vpnshop.testing.fakes import (
    FakeClock,
    FakeGateway,
    FakeNotifier,
    FakePanel,
    FakeRateLimiter,
    MemoryStore,
    SequentialIds,
    memory_uow_factory,
)
from vpnshop.testing.memory import NestedUnitOfWorkError

T0 = datetime(2026, 5, 1, tzinfo=UTC)


# -- clock and ids ----------------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    """FakeClock stands still, advances by seconds or keywords, and stays aware UTC."""
    clock = FakeClock(T0)
    assert clock.now() == T0
    assert clock.advance(90) == T0 + timedelta(seconds=90)
    clock.advance(timedelta(hours=1), days=1)
    assert clock.now() == T0 + timedelta(days=1, hours=1, seconds=90)
    clock.set(T0)
    assert clock.now() == T0
    assert clock.now().tzinfo is UTC


def test_fake_clock_refuses_naive_times() -> None:
    """A naive datetime is refused, so tests cannot smuggle one into the core."""
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2026, 1, 1))  # deliberately naive


def test_sequential_ids_are_deterministic_and_sortable() -> None:
    """SequentialIds counts p000001, p000002... and tokens separately."""
    ids = SequentialIds()
    made = [ids.new_id() for _ in range(12)]
    assert made[:2] == ["p000001", "p000002"]
    assert made == sorted(made)
    assert ids.token() == "tok000001"
    assert ids.issued == made


def test_system_clock_is_aware_utc() -> None:
    """SystemClock returns the current time in UTC."""
    now = SystemClock().now()
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_ulids_are_26_crockford_chars_sorted_by_time() -> None:
    """ULIDs are 26 Crockford characters and sort by creation, within a millisecond too."""
    clock = FakeClock(T0)
    ids = UlidIds(clock)
    same_ms = [ids.new_id() for _ in range(200)]
    clock.advance(0.001)
    later = ids.new_id()
    for value in [*same_ms, later]:
        assert len(value) == 26
        assert set(value) <= set(CROCKFORD)
    assert same_ms == sorted(same_ms)
    assert len(set(same_ms)) == 200
    assert later > same_ms[-1]
    assert later[:10] != same_ms[0][:10]


def test_ulids_never_go_backwards_when_the_clock_does() -> None:
    """An id made after the clock stepped back still sorts after the earlier ones."""
    clock = FakeClock(T0)
    ids = UlidIds(clock)
    first = ids.new_id()
    clock.advance(-10)
    assert ids.new_id() > first


def test_ulid_tokens_are_random_and_url_safe() -> None:
    """UlidIds.token() gives distinct URL-safe strings."""
    ids = UlidIds()
    tokens = {ids.token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(t.replace("-", "").replace("_", "").isalnum() for t in tokens)


# -- notifier ---------------------------------------------------------------------------


async def test_notifier_records_messages_per_chat() -> None:
    """Sent messages are recorded in order, per chat."""
    notifier = FakeNotifier()
    await notifier.send(1, Message("hello"))
    await notifier.send(2, Message("other"))
    await notifier.send(1, Message("again"))
    assert notifier.texts(1) == ["hello", "again"]
    assert notifier.messages(2) == [Message("other")]


async def test_notifier_blocked_chat_is_unreachable() -> None:
    """A blocked chat raises RecipientUnreachableError and records nothing."""
    notifier = FakeNotifier()
    notifier.block(5)
    with pytest.raises(RecipientUnreachableError):
        await notifier.send(5, Message("hi"))
    assert notifier.texts(5) == []
    notifier.unblock(5)
    await notifier.send(5, Message("hi"))
    assert notifier.texts(5) == ["hi"]


async def test_notifier_rate_limits_once() -> None:
    """rate_limit_once() makes exactly the next send raise RetryLaterError."""
    notifier = FakeNotifier()
    notifier.rate_limit_once(3.5)
    with pytest.raises(RetryLaterError) as caught:
        await notifier.send(9, Message("x"))
    assert caught.value.retry_after == 3.5
    await notifier.send(9, Message("x"))
    assert notifier.texts(9) == ["x"]
    assert notifier.attempts == 2


# -- rate limiter -----------------------------------------------------------------------


async def test_rate_limiter_window_follows_the_clock() -> None:
    """limit grants per window; the refusal says how long until the oldest grant leaves."""
    clock = FakeClock(T0)
    limiter = FakeRateLimiter(clock)
    assert [await limiter.acquire("k", 2, 10) for _ in range(2)] == [0.0, 0.0]
    clock.advance(4)
    assert await limiter.acquire("k", 2, 10) == pytest.approx(6.0)
    assert await limiter.acquire("other", 2, 10) == 0.0
    clock.advance(6)  # both grants of T0 have left the window; the refusal took nothing
    assert [await limiter.acquire("k", 2, 10) for _ in range(2)] == [0.0, 0.0]
    assert await limiter.acquire("k", 2, 10) == pytest.approx(10.0)


# -- panel ------------------------------------------------------------------------------


async def test_panel_apply_creates_then_is_idempotent() -> None:
    """apply() creates an owned user once; applying the same access again changes nothing."""
    clock = FakeClock(T0)
    panel = FakePanel(clock)
    access = PanelAccess(
        username="vpn_1",
        expires_at=T0 + timedelta(days=30),
        telegram_id=42,
        internal_squads=("sq-default",),
    )
    user = await panel.apply(access)
    assert user.status is PanelStatus.ACTIVE
    assert user.tag == panel.tag
    assert await panel.apply(access) == user
    assert (
        await panel.apply(
            PanelAccess(
                username="vpn_1",
                expires_at=access.expires_at,
                key=user.key,
                telegram_id=42,
                internal_squads=("sq-default",),
            )
        )
        == user
    )
    assert len(panel.users) == 1
    assert await panel.find_by_telegram_id(42) == [user]
    assert (await panel.squads())[0].members == 1


async def test_panel_past_expiry_is_applied_as_disabled() -> None:
    """An access that has expired disables the user and keeps its stored expiry."""
    clock = FakeClock(T0)
    panel = FakePanel(clock)
    user = await panel.apply(PanelAccess(username="u", expires_at=T0 + timedelta(days=1)))
    clock.advance(days=2)
    again = await panel.apply(
        PanelAccess(username="u", key=user.key, expires_at=T0 + timedelta(days=1))
    )
    assert again.status is PanelStatus.DISABLED
    assert again.expires_at == user.expires_at


async def test_panel_refuses_users_it_does_not_own_until_linked() -> None:
    """Foreign users raise PanelNotOwnedError until link() takes them over."""
    panel = FakePanel(FakeClock(T0))
    foreign = panel.add_foreign_user("someone", telegram_id=7)
    with pytest.raises(PanelNotOwnedError):
        await panel.disable(foreign.key)
    with pytest.raises(PanelNotOwnedError):
        await panel.apply(PanelAccess(username="someone", expires_at=T0 + timedelta(days=1)))
    await panel.link(foreign.key)
    disabled = await panel.disable(foreign.key)
    assert disabled.status is PanelStatus.DISABLED
    assert (await panel.enable(foreign.key)).status is PanelStatus.ACTIVE


async def test_panel_revoke_devices_delete() -> None:
    """revoke() changes the link, devices can be removed, delete() is idempotent."""
    panel = FakePanel(FakeClock(T0))
    user = await panel.apply(PanelAccess(username="u", expires_at=T0 + timedelta(days=1)))
    revoked = await panel.revoke(user.key)
    assert revoked.subscription_url != user.subscription_url
    panel.add_device(user.key, PanelDevice("hw-1"))
    panel.add_device(user.key, PanelDevice("hw-2"))
    assert await panel.remove_device(user.key, "hw-1") == [PanelDevice("hw-2")]
    await panel.delete(user.key)
    await panel.delete(user.key)
    assert await panel.get(user.key) is None
    with pytest.raises(PanelNotFoundError):
        await panel.enable(user.key)
    assert (await panel.stats()).users_total == 0


async def test_panel_down_raises_unavailable() -> None:
    """With down set, calls raise PanelUnavailableError and health() is False."""
    panel = FakePanel(FakeClock(T0))
    panel.down = True
    with pytest.raises(PanelUnavailableError):
        await panel.info()
    assert await panel.health() is False
    panel.down = False
    assert (await panel.info()).api_line == "2"


# -- gateway ----------------------------------------------------------------------------


def _request(payment_id: str = "p000001", key: str = "idem-1") -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=payment_id,
        order_id="o000001",
        amount=Money.of("199.00", RUB),
        description="Month",
        idempotency_key=key,
        customer_telegram_id=42,
    )


async def test_gateway_create_is_idempotent_and_recorded() -> None:
    """create_payment() returns a URL and external id, the same one for the same key."""
    gateway = FakeGateway()
    first = await gateway.create_payment(_request())
    again = await gateway.create_payment(_request())
    other = await gateway.create_payment(_request("p000002", "idem-2"))
    assert first == again
    assert first.url
    assert first.external_id
    assert other.external_id != first.external_id
    assert len(gateway.requests) == 3


async def test_gateway_event_fills_in_from_the_payment() -> None:
    """event() with only our payment id carries the external id and the amount."""
    gateway = FakeGateway()
    checkout = await gateway.create_payment(_request())
    event = gateway.event(payment_ref="p000001")
    assert event.provider == "fake"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.external_id == checkout.external_id
    assert event.amount == Money.of("199.00", RUB)
    assert event.dedupe_key


async def test_gateway_webhook_round_trip_and_forgery() -> None:
    """A signed request parses back to the event; a forged signature or bad body is refused."""
    gateway = FakeGateway(secret="s3")
    await gateway.create_payment(_request())
    event = gateway.event(payment_ref="p000001", occurred_at=T0)
    assert await gateway.parse_webhook(gateway.webhook_request(event)) == event
    with pytest.raises(WebhookAuthError):
        await gateway.parse_webhook(gateway.webhook_request(event, signature="0" * 64))
    with pytest.raises(WebhookAuthError):
        await FakeGateway(secret="other").parse_webhook(gateway.webhook_request(event))
    body = b"{not json"
    bad = WebhookRequest(
        body=body, headers={"x-fake-signature": gateway.sign(body)}, remote_ip="127.0.0.1"
    )
    with pytest.raises(WebhookMalformedError):
        await gateway.parse_webhook(bad)


async def test_gateway_fetch_and_refund() -> None:
    """fetch_payment() reports the status set by the test; a full refund marks it refunded."""
    gateway = FakeGateway()
    checkout = await gateway.create_payment(_request())
    assert checkout.external_id is not None
    fetched = await gateway.fetch_payment("p000001", None)
    assert fetched is not None
    assert fetched.status is ProviderStatus.PENDING
    gateway.set_status(checkout.external_id, ProviderStatus.SUCCEEDED)
    result = await gateway.refund(checkout.external_id, Money.of("199.00", RUB), "r1")
    assert result.succeeded
    fetched = await gateway.fetch_payment("p000001", checkout.external_id)
    assert fetched is not None
    assert fetched.status is ProviderStatus.REFUNDED
    assert await gateway.fetch_payment("nope", None) is None


# -- the memory store's test hooks ------------------------------------------------------


async def test_memory_store_mismatch_is_reported() -> None:
    """A balance changed behind the ledger's back shows up in mismatches()."""
    store = MemoryStore()
    factory = memory_uow_factory(store)
    async with factory() as uow:
        await uow.ledger.post(
            LedgerEntry(
                customer_id=1,
                amount=Money(500, RUB),
                kind=EntryKind.TOPUP,
                idempotency_key="k1",
                actor=Actor.system(),
                created_at=T0,
            )
        )
        await uow.commit()
    store.set_balance_for_tests(1, Money(700, RUB))
    async with factory() as uow:
        assert await uow.ledger.mismatches() == [BalanceMismatch(1, "RUB", 700, 500)]
    assert store.commits == 1
    assert store.rollbacks == 1


async def test_memory_store_refuses_a_nested_unit_of_work() -> None:
    """Opening a second unit of work inside the first in one task fails fast, not hangs."""
    factory = memory_uow_factory(MemoryStore())
    async with factory():
        with pytest.raises(NestedUnitOfWorkError):
            async with factory():
                pass
    async with factory() as uow:  # the lock was released properly
        assert await uow.customers.count() == 0
