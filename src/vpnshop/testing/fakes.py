"""In-memory fakes of every port, for unit tests of the core and for shell tests.

Each fake satisfies its ``typing.Protocol`` structurally (the ``TYPE_CHECKING`` block at
the end makes mypy catch drift) and records what happened so tests assert on outcomes,
not on calls to mocks. The storage fake lives in :mod:`vpnshop.testing.memory` and is
re-exported here.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from vpnshop.domain.errors import DomainError
from vpnshop.domain.money import RUB, Currency, Money
from vpnshop.domain.panel import (
    PanelAccess,
    PanelDevice,
    PanelInfo,
    PanelStats,
    PanelStatus,
    PanelUser,
    Squad,
)
from vpnshop.ports.clock import Clock, IdGenerator
from vpnshop.ports.notifier import Message, Notifier, RecipientUnreachableError, RetryLaterError
from vpnshop.ports.panel import (
    PanelNotFoundError,
    PanelNotOwnedError,
    PanelUnavailableError,
    VpnPanel,
)
from vpnshop.ports.payments import (
    Checkout,
    CheckoutRequest,
    EventKind,
    PaymentEvent,
    PaymentGateway,
    ProviderPayment,
    ProviderRejectedError,
    ProviderStatus,
    ProviderUnavailableError,
    RefundResult,
    WebhookAuthError,
    WebhookMalformedError,
    WebhookReply,
    WebhookRequest,
)
from vpnshop.ports.ratelimit import RateLimiter
from vpnshop.testing.memory import MemoryStore, MemoryUnitOfWork, memory_uow_factory

__all__ = [
    "FakeClock",
    "FakeGateway",
    "FakeNotifier",
    "FakePanel",
    "FakeRateLimiter",
    "MemoryStore",
    "MemoryUnitOfWork",
    "SentMessage",
    "SequentialIds",
    "memory_uow_factory",
]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


# -- time and ids -----------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told to. Always timezone-aware UTC."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = _utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = _utc(when)

    def advance(self, delta: timedelta | float = 0.0, /, **kwargs: float) -> datetime:
        """Move forward by *delta* (a timedelta or seconds) and/or ``timedelta`` keyword
        arguments (``advance(days=3)``); returns the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        self._now += step + timedelta(**kwargs)
        return self._now


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("FakeClock takes timezone-aware datetimes only")
    return when.astimezone(UTC)


class SequentialIds:
    """Deterministic ids ``p000001``, ``p000002``... (sortable) and tokens ``tok000001``..."""

    def __init__(
        self,
        prefix: str = "p",
        token_prefix: str = "tok",  # noqa: S107 - a prefix, not a secret
        width: int = 6,
    ) -> None:
        self.prefix = prefix
        self.token_prefix = token_prefix
        self.width = width
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self.issued: list[str] = []

    def new_id(self) -> str:
        value = f"{self.prefix}{next(self._ids):0{self.width}d}"
        self.issued.append(value)
        return value

    def token(self, nbytes: int = 16) -> str:
        return f"{self.token_prefix}{next(self._tokens):0{self.width}d}"


# -- notifier ---------------------------------------------------------------------------


@attrs.frozen
class SentMessage:
    chat_id: int
    message: Message


class FakeNotifier:
    """Records delivered messages per chat.

    ``block(chat_id)`` makes sends to that chat raise RecipientUnreachableError (the user
    blocked the bot); ``rate_limit_once(retry_after)`` makes the next send (to *chat_id*,
    or to anyone) raise RetryLaterError once. Refused sends are not recorded as sent.
    """

    def __init__(self) -> None:
        self.sent: list[SentMessage] = []
        self.attempts = 0
        self.blocked: set[int] = set()
        self._retry_once: dict[int | None, float] = {}

    async def send(self, chat_id: int, message: Message) -> None:
        self.attempts += 1
        if chat_id in self.blocked:
            raise RecipientUnreachableError(f"chat {chat_id} blocked the bot")
        for key in (chat_id, None):
            if key in self._retry_once:
                raise RetryLaterError(self._retry_once.pop(key))
        self.sent.append(SentMessage(chat_id, message))

    def block(self, chat_id: int) -> None:
        self.blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self.blocked.discard(chat_id)

    def rate_limit_once(self, retry_after: float = 1.0, chat_id: int | None = None) -> None:
        self._retry_once[chat_id] = retry_after

    def messages(self, chat_id: int) -> list[Message]:
        return [s.message for s in self.sent if s.chat_id == chat_id]

    def texts(self, chat_id: int) -> list[str]:
        return [m.text for m in self.messages(chat_id)]


# -- rate limiter -----------------------------------------------------------------------


class FakeRateLimiter:
    """A sliding-window limiter in memory, driven by *clock*: at most *limit* grants per
    key in any window of *per_seconds*. Records every call and its answer."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._grants: dict[str, deque[datetime]] = {}
        self.calls: list[tuple[str, float]] = []

    async def acquire(self, key: str, limit: int, per_seconds: float) -> float:
        now = self._clock.now()
        window = timedelta(seconds=per_seconds)
        grants = self._grants.setdefault(key, deque())
        while grants and grants[0] <= now - window:
            grants.popleft()
        if len(grants) < limit:
            grants.append(now)
            wait = 0.0
        elif limit <= 0:
            wait = per_seconds
        else:
            # The slot frees when the oldest grant still counted leaves the window.
            wait = max((grants[len(grants) - limit] + window - now).total_seconds(), 0.0)
        self.calls.append((key, wait))
        return wait


# -- panel ------------------------------------------------------------------------------


class FakePanel:
    """A Remnawave-like panel in memory.

    The shop owns users carrying its *tag* (those it created, or linked with ``link``);
    ``add_foreign_user`` makes users the shop does not own. Set ``down = True`` to make
    every call raise PanelUnavailableError. ``calls`` records (method, key) pairs.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        tag: str = "VPNSHOP",
        version: str = "2.1.0",
        api_line: str = "2",
        sub_base_url: str = "https://panel.example/sub/",
        squads: tuple[Squad, ...] = (Squad("sq-default", "Default"),),
    ) -> None:
        self._clock = clock or FakeClock()
        self.tag = tag
        self.version = version
        self.api_line = api_line
        self.sub_base_url = sub_base_url
        self._squads = list(squads)
        self.users: dict[str, PanelUser] = {}
        self.device_lists: dict[str, list[PanelDevice]] = {}
        self.calls: list[tuple[str, str | None]] = []
        self.down = False
        self._seq = itertools.count(1)

    # -- test helpers ---------------------------------------------------------------
    def add_foreign_user(self, username: str, *, telegram_id: int | None = None,
                         expires_at: datetime | None = None, tag: str | None = None) -> PanelUser:
        """A user created outside the shop (not owned unless *tag* is the shop's)."""
        user = self._new_user(username, expires_at or self._clock.now(), tag=tag,
                              telegram_id=telegram_id)
        self.users[user.key] = user
        return user

    def add_device(self, key: str, device: PanelDevice) -> None:
        self.device_lists.setdefault(key, []).append(device)

    def is_owned(self, key: str) -> bool:
        user = self.users.get(key)
        return user is not None and user.tag == self.tag

    # -- the port -------------------------------------------------------------------
    async def info(self) -> PanelInfo:
        self._call("info")
        return PanelInfo(version=self.version, api_line=self.api_line)

    async def apply(self, access: PanelAccess) -> PanelUser:
        self._call("apply", access.key)
        now = self._clock.now()
        existing: PanelUser | None
        if access.key is not None:
            existing = self._owned(access.key)
        else:
            # Retrying a create whose answer was lost must not make a second user.
            existing = next((u for u in self.users.values() if u.username == access.username),
                            None)
            if existing is not None and existing.tag != self.tag:
                raise PanelNotOwnedError(f"username {access.username} belongs to someone else")
        expired = access.expires_at <= now
        if expired:
            # The shop never sends an expiry in the past; the user is disabled instead.
            expires_at = existing.expires_at if existing is not None else now
        else:
            expires_at = access.expires_at
        status = PanelStatus.ACTIVE if access.enabled and not expired else PanelStatus.DISABLED
        base = existing or self._new_user(access.username, expires_at, tag=self.tag)
        user = attrs.evolve(
            base,
            username=access.username,
            status=status,
            expires_at=expires_at,
            traffic_limit_bytes=access.traffic_limit_bytes,
            traffic_reset=access.traffic_reset,
            device_limit=access.device_limit,
            internal_squads=access.internal_squads,
            external_squad=access.external_squad,
            description=access.description,
            tag=self.tag,
            telegram_id=access.telegram_id,
            email=access.email,
        )
        self.users[user.key] = user
        return user

    async def link(self, key: str) -> PanelUser:
        self._call("link", key)
        user = self._existing(key)
        linked = attrs.evolve(user, tag=self.tag)
        self.users[key] = linked
        return linked

    async def get(self, key: str) -> PanelUser | None:
        self._call("get", key)
        return self.users.get(key)

    async def find_by_telegram_id(self, telegram_id: int) -> list[PanelUser]:
        self._call("find_by_telegram_id", str(telegram_id))
        return [u for u in self.users.values() if u.telegram_id == telegram_id]

    async def enable(self, key: str) -> PanelUser:
        self._call("enable", key)
        return self._store(attrs.evolve(self._owned(key), status=PanelStatus.ACTIVE))

    async def disable(self, key: str) -> PanelUser:
        self._call("disable", key)
        return self._store(attrs.evolve(self._owned(key), status=PanelStatus.DISABLED))

    async def reset_traffic(self, key: str) -> PanelUser:
        self._call("reset_traffic", key)
        user = self._owned(key)
        status = PanelStatus.ACTIVE if user.status is PanelStatus.LIMITED else user.status
        return self._store(attrs.evolve(user, used_traffic_bytes=0, status=status))

    async def revoke(self, key: str) -> PanelUser:
        self._call("revoke", key)
        user = self._owned(key)
        short = f"s{next(self._seq):08d}"
        return self._store(attrs.evolve(user, short_uuid=short,
                                        subscription_url=self.sub_base_url + short))

    async def delete(self, key: str) -> None:
        self._call("delete", key)
        if key not in self.users:
            return
        self._owned(key)
        del self.users[key]
        self.device_lists.pop(key, None)

    async def devices(self, key: str) -> list[PanelDevice]:
        self._call("devices", key)
        self._owned(key)
        return list(self.device_lists.get(key, []))

    async def remove_device(self, key: str, hwid: str) -> list[PanelDevice]:
        self._call("remove_device", key)
        self._owned(key)
        remaining = [d for d in self.device_lists.get(key, []) if d.hwid != hwid]
        self.device_lists[key] = remaining
        return list(remaining)

    async def squads(self) -> list[Squad]:
        self._call("squads")
        return [attrs.evolve(s, members=sum(1 for u in self.users.values()
                                            if s.uuid in u.internal_squads))
                for s in self._squads]

    async def stats(self) -> PanelStats:
        self._call("stats")
        by_status: dict[str, int] = {}
        for user in self.users.values():
            by_status[user.status.value] = by_status.get(user.status.value, 0) + 1
        return PanelStats(users_total=len(self.users), users_by_status=by_status)

    async def health(self) -> bool:
        self.calls.append(("health", None))
        return not self.down

    # -- internals ------------------------------------------------------------------
    def _call(self, method: str, key: str | None = None) -> None:
        self.calls.append((method, key))
        if self.down:
            raise PanelUnavailableError("the fake panel is down", status=503)

    def _new_user(self, username: str, expires_at: datetime, *, tag: str | None,
                  telegram_id: int | None = None) -> PanelUser:
        n = next(self._seq)
        short = f"s{n:08d}"
        return PanelUser(
            key=f"u{n:06d}",
            username=username,
            short_uuid=short,
            status=PanelStatus.ACTIVE,
            expires_at=expires_at,
            subscription_url=self.sub_base_url + short,
            tag=tag,
            telegram_id=telegram_id,
            created_at=self._clock.now(),
        )

    def _existing(self, key: str) -> PanelUser:
        user = self.users.get(key)
        if user is None:
            raise PanelNotFoundError(f"no panel user {key}", status=404)
        return user

    def _owned(self, key: str) -> PanelUser:
        user = self._existing(key)
        if user.tag != self.tag:
            raise PanelNotOwnedError(f"panel user {key} is not the shop's")
        return user

    def _store(self, user: PanelUser) -> PanelUser:
        self.users[user.key] = user
        return user


# -- payment gateway --------------------------------------------------------------------

SIGNATURE_HEADER = "X-Fake-Signature"


@attrs.define
class _FakeProviderPayment:
    request: CheckoutRequest
    checkout: Checkout
    status: ProviderStatus = ProviderStatus.PENDING
    refunded: int = 0


class FakeGateway:
    """A payment provider in memory.

    ``create_payment`` records the request and returns a checkout URL with an external id
    (idempotent on the request's idempotency key). ``event(...)`` builds PaymentEvents;
    ``webhook_request(event)`` turns one into a signed WebhookRequest that
    ``parse_webhook`` accepts (HMAC-SHA256 of the raw body with *secret* in the
    ``X-Fake-Signature`` header), for shell tests. Set ``unavailable = True`` to make calls
    raise ProviderUnavailableError.
    """

    def __init__(
        self,
        name: str = "fake",
        currency: Currency = RUB,
        *,
        secret: str = "fake-secret",  # noqa: S107 - a test double's key
        min_amount: Money | None = None,
        max_amount: Money | None = None,
        supports_refund: bool = True,
    ) -> None:
        self._name = name
        self._currency = currency
        self._secret = secret.encode()
        self._min_amount = min_amount
        self._max_amount = max_amount
        self._supports_refund = supports_refund
        self.requests: list[CheckoutRequest] = []
        self.refunds: list[tuple[str, Money, str]] = []
        self.payments: dict[str, _FakeProviderPayment] = {}  # by external id
        self._by_key: dict[str, str] = {}
        self._seq = itertools.count(1)
        self.unavailable = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def currency(self) -> Currency:
        return self._currency

    @property
    def min_amount(self) -> Money | None:
        return self._min_amount

    @property
    def max_amount(self) -> Money | None:
        return self._max_amount

    @property
    def supports_refund(self) -> bool:
        return self._supports_refund

    @property
    def webhook_reply(self) -> WebhookReply:
        return WebhookReply(status=200, body="OK")

    async def create_payment(self, request: CheckoutRequest) -> Checkout:
        self._check_up()
        self.requests.append(request)
        known = self._by_key.get(request.idempotency_key)
        if known is not None:
            return self.payments[known].checkout
        external_id = f"{self._name}-{next(self._seq):06d}"
        checkout = Checkout(external_id=external_id,
                            url=f"https://pay.example/{self._name}/{external_id}")
        self.payments[external_id] = _FakeProviderPayment(request, checkout)
        self._by_key[request.idempotency_key] = external_id
        return checkout

    async def fetch_payment(
        self, payment_ref: str, external_id: str | None
    ) -> ProviderPayment | None:
        self._check_up()
        found = self.payments.get(external_id) if external_id else None
        if found is None:
            found = next((p for p in self.payments.values()
                          if p.request.payment_id == payment_ref), None)
        if found is None or found.checkout.external_id is None:
            return None
        return ProviderPayment(external_id=found.checkout.external_id, status=found.status,
                               amount=found.request.amount, payment_ref=found.request.payment_id)

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        given = next((v for k, v in request.headers.items()
                      if k.lower() == SIGNATURE_HEADER.lower()), None)
        if not given or not hmac.compare_digest(given, self.sign(request.body)):
            raise WebhookAuthError("bad or missing signature")
        try:
            data = json.loads(request.body)
            return _event_from_json(data)
        except (ValueError, KeyError, TypeError, DomainError) as exc:
            raise WebhookMalformedError(f"cannot parse the notification: {exc}") from exc

    async def refund(self, external_id: str, amount: Money, idempotency_key: str) -> RefundResult:
        self._check_up()
        if not self._supports_refund:
            raise ProviderRejectedError(f"{self._name} does not refund")
        found = self.payments.get(external_id)
        if found is None or found.status is not ProviderStatus.SUCCEEDED:
            raise ProviderRejectedError(f"payment {external_id} cannot be refunded")
        self.refunds.append((external_id, amount, idempotency_key))
        found.refunded += amount.minor
        if found.refunded >= found.request.amount.minor:
            found.status = ProviderStatus.REFUNDED
        return RefundResult(external_id=external_id, succeeded=True)

    # -- test helpers ---------------------------------------------------------------
    def set_status(self, external_id: str, status: ProviderStatus) -> None:
        """Act as the payer/provider: what ``fetch_payment`` reports from now on."""
        self.payments[external_id].status = status

    def event(
        self,
        kind: EventKind = EventKind.PAYMENT_SUCCEEDED,
        *,
        payment_ref: str | None = None,
        external_id: str | None = None,
        amount: Money | None = None,
        dedupe_key: str | None = None,
        **extra: Any,
    ) -> PaymentEvent:
        """A PaymentEvent from this provider. With only *payment_ref* or *external_id* of a
        created payment, the other one and the amount are filled in from it."""
        found = self.payments.get(external_id) if external_id else None
        if found is None and payment_ref is not None:
            found = next((p for p in self.payments.values()
                          if p.request.payment_id == payment_ref), None)
        if found is not None:
            payment_ref = payment_ref or found.request.payment_id
            external_id = external_id or found.checkout.external_id
            amount = amount or found.request.amount
        return PaymentEvent(
            provider=self._name,
            kind=kind,
            dedupe_key=dedupe_key or f"{kind.value}:{external_id or payment_ref}",
            external_id=external_id,
            payment_ref=payment_ref,
            amount=amount,
            **extra,
        )

    def sign(self, body: bytes) -> str:
        return hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    def webhook_request(self, event: PaymentEvent, *, remote_ip: str = "127.0.0.1",
                        signature: str | None = None) -> WebhookRequest:
        """The signed HTTP notification for *event* (or with a forged *signature*)."""
        body = json.dumps(_event_to_json(event), sort_keys=True).encode()
        sig = self.sign(body) if signature is None else signature
        return WebhookRequest(body=body, headers={SIGNATURE_HEADER: sig}, remote_ip=remote_ip,
                              content_type="application/json")

    def _check_up(self) -> None:
        if self.unavailable:
            raise ProviderUnavailableError(f"{self._name} is unavailable")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _event_to_json(event: PaymentEvent) -> dict[str, object]:
    return {
        "provider": event.provider,
        "kind": event.kind.value,
        "dedupe_key": event.dedupe_key,
        "external_id": event.external_id,
        "payment_ref": event.payment_ref,
        "amount": None if event.amount is None else event.amount.format(),
        "currency": None if event.amount is None else event.amount.currency.code,
        "telegram_id": event.telegram_id,
        "product": event.product,
        "expires_at": _iso(event.expires_at),
        "saved_method_id": event.saved_method_id,
        "occurred_at": _iso(event.occurred_at),
    }


def _event_from_json(data: Mapping[str, Any]) -> PaymentEvent:
    def when(key: str) -> datetime | None:
        value = data.get(key)
        return None if value is None else datetime.fromisoformat(value)

    amount = None
    if data.get("amount") is not None:
        amount = Money.parse(str(data["amount"]), str(data["currency"]))
    return PaymentEvent(
        provider=str(data["provider"]),
        kind=EventKind(data["kind"]),
        dedupe_key=str(data["dedupe_key"]),
        external_id=data.get("external_id"),
        payment_ref=data.get("payment_ref"),
        amount=amount,
        telegram_id=data.get("telegram_id"),
        product=data.get("product"),
        expires_at=when("expires_at"),
        saved_method_id=data.get("saved_method_id"),
        occurred_at=when("occurred_at"),
    )


if TYPE_CHECKING:
    _clock: Clock = FakeClock()
    _ids: IdGenerator = SequentialIds()
    _notifier: Notifier = FakeNotifier()
    _limiter: RateLimiter = FakeRateLimiter(FakeClock())
    _panel: VpnPanel = FakePanel()
    _gateway: PaymentGateway = FakeGateway()
