"""An in-memory implementation of the storage port (``vpnshop.ports.storage``).

It keeps exactly the documented semantics, proven by ``tests/contract/storage/``
against it and the real databases:

* A unit of work takes the store's lock in ``__aenter__`` and keeps it until
  ``__aexit__``, like SQLite's single writer, so transactions are serialised and every
  "atomic" method is trivially atomic. Consequence: never open a second unit of work
  inside the first one in the same task; it would wait for itself.
* The transaction works on a copy of the state; only ``commit()`` publishes it. Leaving the
  block without committing (or by an exception) throws the copy away.

Stored records are frozen attrs values, so copying the containers (not the records) is
enough; mutable mappings inside records (outbox payloads, audit details) are copied on
the way in so that a caller cannot change stored state behind the store's back.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import attrs

from vpnshop.domain.audit import AuditEntry
from vpnshop.domain.broadcast import Broadcast
from vpnshop.domain.customer import Customer
from vpnshop.domain.errors import ConflictError, InsufficientFundsError
from vpnshop.domain.ledger import EntryKind, Hold, HoldStatus, LedgerEntry
from vpnshop.domain.money import Currency, Money, currency
from vpnshop.domain.order import Order
from vpnshop.domain.outbox import JobStatus, OutboxJob
from vpnshop.domain.panel import PanelUserView
from vpnshop.domain.payment import OPEN_STATUSES, Payment, PaymentStatus, can_transition
from vpnshop.domain.plan import Plan
from vpnshop.domain.promo import PromoCode, PromoRedemption
from vpnshop.domain.referral import Referral
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.storage import (
    AuditRepository,
    BalanceMismatch,
    CustomerRepository,
    HoldRepository,
    LeaseRepository,
    LedgerRepository,
    OrderRepository,
    OutboxRepository,
    PanelUserRepository,
    PaymentContext,
    PaymentRepository,
    PlanRepository,
    PromoRepository,
    ReferralRepository,
    SubscriptionRepository,
    TrialRepository,
    UnitOfWork,
)
from vpnshop.ports.storage_jobs import (
    BroadcastRepository,
    CursorRepository,
    DueSubscription,
    ScanCursor,
)
from vpnshop.testing.memory_jobs import MemoryBroadcasts, MemoryCursors, due_scan

__all__ = [
    "MemoryStore",
    "MemoryUnitOfWork",
    "NestedUnitOfWorkError",
    "NoTransactionError",
    "memory_uow_factory",
]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NoTransactionError(RuntimeError):
    """A repository of a memory unit of work was used outside ``async with``."""


class NestedUnitOfWorkError(RuntimeError):
    """A task opened a unit of work while its own earlier one is still open (it would wait
    for itself forever; on SQLite it would wait for ``busy_timeout``)."""


@dataclass
class _State:
    """Everything the store holds. Values are immutable records; containers are copied."""

    customers: dict[int, Customer] = field(default_factory=dict)
    customer_by_tg: dict[int, int] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    trials: dict[int, datetime] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    payment_by_ext: dict[tuple[str, str], str] = field(default_factory=dict)
    ledger: list[LedgerEntry] = field(default_factory=list)
    ledger_keys: set[str] = field(default_factory=set)
    balances: dict[tuple[int, str], int] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    promos: dict[str, PromoCode] = field(default_factory=dict)
    redemptions: list[PromoRedemption] = field(default_factory=list)
    referrals: dict[int, Referral] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    outbox: dict[int, OutboxJob] = field(default_factory=dict)
    outbox_keys: dict[str, int] = field(default_factory=dict)
    panel_users: dict[int, PanelUserView] = field(default_factory=dict)
    cursors: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    broadcasts: dict[int, Broadcast] = field(default_factory=dict)
    # (broadcast, customer) -> (telegram id, status, error)
    recipients: dict[tuple[int, int], tuple[int, str, str | None]] = field(default_factory=dict)
    # name -> (holder, locked_until, last_run_at): the scheduler's lease rows
    leases: dict[str, tuple[str | None, datetime | None, datetime | None]] = field(
        default_factory=dict
    )
    # Sequences, like SERIAL columns (here they roll back with the transaction; a database
    # may skip numbers instead, which no caller may rely on either way).
    next_ids: dict[str, int] = field(default_factory=dict)

    def clone(self) -> _State:
        return _State(
            customers=dict(self.customers),
            customer_by_tg=dict(self.customer_by_tg),
            plans=dict(self.plans),
            subscriptions=dict(self.subscriptions),
            trials=dict(self.trials),
            orders=dict(self.orders),
            payments=dict(self.payments),
            payment_by_ext=dict(self.payment_by_ext),
            ledger=list(self.ledger),
            ledger_keys=set(self.ledger_keys),
            balances=dict(self.balances),
            holds=dict(self.holds),
            promos=dict(self.promos),
            redemptions=list(self.redemptions),
            referrals=dict(self.referrals),
            audit=list(self.audit),
            outbox=dict(self.outbox),
            outbox_keys=dict(self.outbox_keys),
            panel_users=dict(self.panel_users),
            cursors=dict(self.cursors),
            broadcasts=dict(self.broadcasts),
            recipients=dict(self.recipients),
            leases=dict(self.leases),
            next_ids=dict(self.next_ids),
        )

    def next_id(self, sequence: str) -> int:
        value = self.next_ids.get(sequence, 0) + 1
        self.next_ids[sequence] = value
        return value


class MemoryStore:
    """The committed state shared by every :class:`MemoryUnitOfWork` made for it.

    ``commits`` and ``rollbacks`` count finished transactions, for tests that assert a use
    case committed (or did not).
    """

    def __init__(self) -> None:
        self._state = _State()
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self.commits = 0
        self.rollbacks = 0

    def uow(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self)

    def set_balance_for_tests(self, customer_id: int, amount: Money) -> None:
        """Overwrite a stored balance without a ledger entry, to test mismatch checks.

        Deliberately bypasses the transaction lock: call it only while no unit of work is
        open.
        """
        self._state.balances[(customer_id, amount.currency.code)] = amount.minor


def memory_uow_factory(store: MemoryStore) -> Callable[[], MemoryUnitOfWork]:
    """A zero-argument factory of units of work on *store* (a ``UnitOfWorkFactory``)."""

    def factory() -> MemoryUnitOfWork:
        return MemoryUnitOfWork(store)

    return factory


class MemoryUnitOfWork:
    """One transaction on a :class:`MemoryStore`. Single use: one ``async with`` each."""

    customers: CustomerRepository
    plans: PlanRepository
    subscriptions: SubscriptionRepository
    trials: TrialRepository
    orders: OrderRepository
    payments: PaymentRepository
    ledger: LedgerRepository
    holds: HoldRepository
    promos: PromoRepository
    referrals: ReferralRepository
    audit: AuditRepository
    outbox: OutboxRepository
    panel_users: PanelUserRepository
    cursors: CursorRepository
    broadcasts: BroadcastRepository
    leases: LeaseRepository

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._work: _State | None = None
        self._used = False
        self._committed = False
        self.customers = _Customers(self)
        self.plans = _Plans(self)
        self.subscriptions = _Subscriptions(self)
        self.trials = _Trials(self)
        self.orders = _Orders(self)
        self.payments = _Payments(self)
        self.ledger = _Ledger(self)
        self.holds = _Holds(self)
        self.promos = _Promos(self)
        self.referrals = _Referrals(self)
        self.audit = _Audit(self)
        self.outbox = _Outbox(self)
        self.panel_users = _PanelUsers(self)
        self.cursors = MemoryCursors(self)
        self.broadcasts = MemoryBroadcasts(self)
        self.leases = _Leases(self)

    @property
    def state(self) -> _State:
        if self._work is None:
            raise NoTransactionError("use the unit of work inside 'async with'")
        return self._work

    async def __aenter__(self) -> Self:
        if self._used:
            raise RuntimeError("a MemoryUnitOfWork is single use; make a new one")
        self._used = True
        task = asyncio.current_task()
        if task is not None and self._store._owner is task:
            # Waiting would never end: the lock is held by this very task.
            raise NestedUnitOfWorkError("a unit of work is already open in this task")
        await self._store._lock.acquire()
        self._store._owner = task
        self._work = self._store._state.clone()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                self._store.rollbacks += 1
        finally:
            self._work = None
            self._store._owner = None
            self._store._lock.release()

    async def commit(self) -> None:
        work = self.state
        self._store._state = work
        self._store.commits += 1
        self._committed = True
        # Keep working on a fresh copy so that the published state is never touched again.
        self._work = work.clone()

    async def rollback(self) -> None:
        self.state  # noqa: B018 - raises outside a transaction
        self._work = self._store._state.clone()


class _Repo:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    @property
    def _s(self) -> _State:
        return self._uow.state


class _Customers(_Repo):
    async def add(self, customer: Customer) -> Customer:
        s = self._s
        if customer.telegram_id in s.customer_by_tg:
            raise ConflictError(f"telegram id {customer.telegram_id} is taken")
        stored = attrs.evolve(customer, id=s.next_id("customers"))
        assert stored.id is not None
        s.customers[stored.id] = stored
        s.customer_by_tg[stored.telegram_id] = stored.id
        return stored

    async def get_or_add(self, customer: Customer) -> tuple[Customer, bool]:
        existing = await self.by_telegram_id(customer.telegram_id)
        if existing is not None:
            return existing, False
        return await self.add(customer), True

    async def get(self, customer_id: int) -> Customer | None:
        return self._s.customers.get(customer_id)

    async def by_telegram_id(self, telegram_id: int) -> Customer | None:
        customer_id = self._s.customer_by_tg.get(telegram_id)
        return None if customer_id is None else self._s.customers[customer_id]

    async def lock(self, customer_id: int) -> None:
        self._s  # noqa: B018 - the store lock already serialises every transaction

    async def update(self, customer: Customer) -> None:
        s = self._s
        if customer.id is None or customer.id not in s.customers:
            return  # like an UPDATE that matches no row
        holder = s.customer_by_tg.get(customer.telegram_id)
        if holder is not None and holder != customer.id:
            raise ConflictError(f"telegram id {customer.telegram_id} is taken")
        old = s.customers[customer.id]
        del s.customer_by_tg[old.telegram_id]
        # These move only through their own methods (as in the SQL store).
        s.customers[customer.id] = attrs.evolve(
            customer,
            referral_code=old.referral_code,
            unreachable=old.unreachable,
            discount_code=old.discount_code,
        )
        s.customer_by_tg[customer.telegram_id] = customer.id

    async def count(self) -> int:
        return len(self._s.customers)

    async def by_referral_code(self, code: str) -> Customer | None:
        found = [c for c in self._s.customers.values() if c.referral_code == code]
        return found[0] if found else None

    async def set_referral_code(self, customer_id: int, code: str) -> str | None:
        s = self._s
        customer = s.customers.get(customer_id)
        if customer is None:
            return None
        if customer.referral_code is not None:
            return customer.referral_code
        if any(c.referral_code == code for c in s.customers.values()):
            raise ConflictError(f"referral code {code!r} is taken")
        s.customers[customer_id] = attrs.evolve(customer, referral_code=code)
        return code

    def _set(self, customer_id: int, only_if_unset: bool, **change: Any) -> bool:
        s = self._s
        customer = s.customers.get(customer_id)
        if customer is None:
            return False
        [(name, value)] = change.items()
        current = getattr(customer, name)
        if current == value or (only_if_unset and current is not None):
            return False
        s.customers[customer_id] = attrs.evolve(customer, **change)
        return True

    async def set_referrer(self, customer_id: int, referrer_id: int) -> bool:
        return self._set(customer_id, True, referrer_id=referrer_id)

    async def set_campaign(self, customer_id: int, campaign: str) -> bool:
        return self._set(customer_id, True, campaign=campaign)

    async def set_language(self, customer_id: int, language: str) -> bool:
        return self._set(customer_id, False, language=language)

    async def set_unreachable(self, customer_id: int, unreachable: bool) -> bool:
        return self._set(customer_id, False, unreachable=unreachable)

    async def set_discount_code(self, customer_id: int, code: str | None) -> bool:
        return self._set(customer_id, False, discount_code=code)


class _Plans(_Repo):
    async def get(self, code: str) -> Plan | None:
        return self._s.plans.get(code)

    async def upsert(self, plan: Plan) -> bool:
        s = self._s
        if s.plans.get(plan.code) == plan:
            return False
        s.plans[plan.code] = plan
        return True

    async def list(self, *, active_only: bool = True) -> builtins.list[Plan]:
        plans = [p for p in self._s.plans.values() if p.active or not active_only]
        return sorted(plans, key=lambda p: (p.sort_order, p.code))


class _Subscriptions(_Repo):
    async def add(self, subscription: Subscription) -> Subscription:
        s = self._s
        if any(x.customer_id == subscription.customer_id for x in s.subscriptions.values()):
            raise ConflictError(f"customer {subscription.customer_id} has a subscription")
        stored = attrs.evolve(subscription, id=s.next_id("subscriptions"))
        assert stored.id is not None
        s.subscriptions[stored.id] = stored
        return stored

    async def get(self, subscription_id: int, *, for_update: bool = False) -> Subscription | None:
        return self._s.subscriptions.get(subscription_id)  # the store lock already serialises

    async def for_customer(self, customer_id: int) -> list[Subscription]:
        subs = [x for x in self._s.subscriptions.values() if x.customer_id == customer_id]
        return sorted(subs, key=lambda x: x.id or 0, reverse=True)

    async def page(self, after_id: int = 0, limit: int = 500) -> list[Subscription]:
        found = sorted(
            (x for x in self._s.subscriptions.values() if (x.id or 0) > after_id),
            key=lambda x: x.id or 0,
        )
        return found[:limit]

    async def update(self, subscription: Subscription) -> None:
        s = self._s
        if subscription.id is not None and subscription.id in s.subscriptions:
            s.subscriptions[subscription.id] = subscription

    async def set_panel_link(
        self,
        subscription_id: int,
        *,
        panel_key: str,
        panel_username: str,
        subscription_url: str | None,
    ) -> None:
        s = self._s
        sub = s.subscriptions.get(subscription_id)
        if sub is not None:
            s.subscriptions[subscription_id] = attrs.evolve(
                sub,
                panel_key=panel_key,
                panel_username=panel_username,
                subscription_url=subscription_url,
            )

    async def due(
        self,
        after: ScanCursor,
        until: datetime,
        *,
        limit: int,
        auto_renew_only: bool = False,
    ) -> list[DueSubscription]:
        return due_scan(self._s, after, until, limit, auto_renew_only)

    async def expiring_between(self, start: datetime, end: datetime) -> list[Subscription]:
        subs = [x for x in self._s.subscriptions.values() if start <= x.expires_at < end]
        return sorted(subs, key=lambda x: (x.expires_at, x.id or 0))

    async def set_auto_renew(self, subscription_id: int, auto_renew: bool) -> bool:
        s = self._s
        sub = s.subscriptions.get(subscription_id)
        if sub is None or sub.auto_renew == auto_renew:
            return False
        s.subscriptions[subscription_id] = attrs.evolve(sub, auto_renew=auto_renew)
        return True


class _Trials(_Repo):
    async def claim(self, customer_id: int, now: datetime) -> bool:
        s = self._s
        if customer_id in s.trials:
            return False
        s.trials[customer_id] = now
        return True

    async def reset(self, customer_id: int) -> None:
        self._s.trials.pop(customer_id, None)

    async def used(self, customer_id: int) -> bool:
        return customer_id in self._s.trials


class _Orders(_Repo):
    async def add(self, order: Order) -> None:
        s = self._s
        if order.id in s.orders:
            raise ConflictError(f"order {order.id} exists")
        s.orders[order.id] = order

    async def get(self, order_id: str) -> Order | None:
        return self._s.orders.get(order_id)

    async def delete_abandoned(self, cutoff: datetime, limit: int = 1000) -> int:
        s = self._s
        used = {p.order_id for p in s.payments.values()} | {h.order_id for h in s.holds.values()}
        used |= {r.order_id for r in s.redemptions if r.order_id}
        gone = [
            o.id
            for o in s.orders.values()
            if o.id not in used and o.created_at is not None and o.created_at < cutoff
        ][:limit]
        for order_id in gone:
            del s.orders[order_id]
        return len(gone)


class _Payments(_Repo):
    async def add(self, payment: Payment) -> None:
        s = self._s
        if payment.id in s.payments:
            raise ConflictError(f"payment {payment.id} exists")
        if payment.external_id is not None:
            ext = (payment.provider, payment.external_id)
            if ext in s.payment_by_ext:
                raise ConflictError(f"payment {ext} exists")
            s.payment_by_ext[ext] = payment.id
        s.payments[payment.id] = payment

    async def get(self, payment_id: str) -> Payment | None:
        return self._s.payments.get(payment_id)

    async def context(
        self, payment_id: str | None, provider: str, external_id: str | None
    ) -> PaymentContext | None:
        s = self._s
        payment = s.payments.get(payment_id) if payment_id is not None else None
        if payment is None and external_id is not None:
            payment = await self.by_external_id(provider, external_id)
        if payment is None:
            return None
        order = s.orders[payment.order_id]
        referral = s.referrals.get(payment.customer_id)  # keyed by referee
        return PaymentContext(
            payment=payment,
            order=order,
            plan=s.plans.get(order.plan_code) if order.plan_code else None,
            referrer_id=referral.referrer_id if referral else None,
        )

    async def by_external_id(self, provider: str, external_id: str) -> Payment | None:
        payment_id = self._s.payment_by_ext.get((provider, external_id))
        return None if payment_id is None else self._s.payments[payment_id]

    def _replace(self, old: Payment, new: Payment) -> None:
        s = self._s
        if new.external_id != old.external_id and new.external_id is not None:
            ext = (new.provider, new.external_id)
            if ext in s.payment_by_ext:
                raise ConflictError(f"payment {ext} exists")
            if old.external_id is not None:
                del s.payment_by_ext[(old.provider, old.external_id)]
            s.payment_by_ext[ext] = new.id
        s.payments[new.id] = new

    async def transition(
        self,
        payment_id: str,
        to: PaymentStatus,
        now: datetime,
        *,
        external_id: str | None = None,
        confirmation_url: str | None = None,
        saved_method_id: str | None = None,
    ) -> Payment | None:
        old = self._s.payments.get(payment_id)
        if old is None or not can_transition(old.status, to):
            return None
        new = attrs.evolve(
            old,
            status=to,
            updated_at=now,
            external_id=old.external_id if external_id is None else external_id,
            confirmation_url=(
                old.confirmation_url if confirmation_url is None else confirmation_url
            ),
            saved_method_id=old.saved_method_id if saved_method_id is None else saved_method_id,
        )
        self._replace(old, new)
        return new

    async def add_refund(self, payment_id: str, amount: Money, now: datetime) -> Payment | None:
        old = self._s.payments.get(payment_id)
        if old is None or old.status is not PaymentStatus.SUCCEEDED:
            return None
        if amount.currency != old.amount.currency or not amount.is_positive:
            return None
        refunded = (old.refunded or Money.zero(old.amount.currency)) + amount
        if refunded > old.amount:
            return None
        status = PaymentStatus.REFUNDED if refunded == old.amount else old.status
        new = attrs.evolve(old, refunded=refunded, status=status, updated_at=now)
        self._s.payments[payment_id] = new
        return new

    async def open_older_than(self, cutoff: datetime, limit: int = 100) -> list[Payment]:
        found = [
            p
            for p in self._s.payments.values()
            if p.status in OPEN_STATUSES and p.created_at is not None and p.created_at < cutoff
        ]
        found.sort(key=lambda p: (p.created_at, p.id))
        return found[:limit]

    async def recent(self, limit: int = 20, customer_id: int | None = None) -> list[Payment]:
        found = [
            p
            for p in self._s.payments.values()
            if customer_id is None or p.customer_id == customer_id
        ]
        found.sort(key=lambda p: (p.created_at or _EPOCH, p.id), reverse=True)
        return found[:limit]


class _Ledger(_Repo):
    async def post(self, entry: LedgerEntry) -> bool:
        s = self._s
        if entry.idempotency_key in s.ledger_keys:
            return False
        key = (entry.customer_id, entry.amount.currency.code)
        balance = s.balances.get(key, 0) + entry.amount.minor
        if balance < 0:
            raise InsufficientFundsError(
                f"customer {entry.customer_id}: {entry.amount} would leave "
                f"{Money(balance, entry.amount.currency)}"
            )
        s.ledger.append(attrs.evolve(entry, id=s.next_id("ledger")))
        s.ledger_keys.add(entry.idempotency_key)
        s.balances[key] = balance
        return True

    async def balance(self, customer_id: int, currency: Currency) -> Money:
        return Money(self._s.balances.get((customer_id, currency.code), 0), currency)

    async def entries(
        self, customer_id: int, limit: int = 50, offset: int = 0
    ) -> list[LedgerEntry]:
        mine = [e for e in reversed(self._s.ledger) if e.customer_id == customer_id]
        return mine[offset : offset + limit]

    async def balances(self, customer_id: int) -> list[Money]:
        found = [(c, minor) for (cid, c), minor in self._s.balances.items() if cid == customer_id]
        return [Money(minor, currency(cur)) for cur, minor in sorted(found)]

    async def totals(self, customer_id: int, kind: EntryKind) -> list[Money]:
        sums: dict[str, int] = {}
        for e in self._s.ledger:
            if e.customer_id == customer_id and e.kind is kind:
                code = e.amount.currency.code
                sums[code] = sums.get(code, 0) + e.amount.minor
        return [Money(minor, currency(cur)) for cur, minor in sorted(sums.items())]

    async def has_key(self, idempotency_key: str) -> bool:
        return idempotency_key in self._s.ledger_keys

    async def mismatches(self) -> list[BalanceMismatch]:
        s = self._s
        sums: dict[tuple[int, str], int] = {}
        for e in s.ledger:
            key = (e.customer_id, e.amount.currency.code)
            sums[key] = sums.get(key, 0) + e.amount.minor
        found = []
        for key in sorted(set(sums) | set(s.balances)):
            stored, summed = s.balances.get(key, 0), sums.get(key, 0)
            if stored != summed:
                found.append(BalanceMismatch(key[0], currency(key[1]).code, stored, summed))
        return found


class _Holds(_Repo):
    async def add(self, hold: Hold) -> None:
        s = self._s
        if hold.id in s.holds:
            raise ConflictError(f"hold {hold.id} exists")
        s.holds[hold.id] = hold

    async def get(self, hold_id: str) -> Hold | None:
        return self._s.holds.get(hold_id)

    async def settle(self, hold_id: str, to: HoldStatus) -> Hold | None:
        s = self._s
        old = s.holds.get(hold_id)
        if old is None or old.status is not HoldStatus.HELD or to is HoldStatus.HELD:
            return None
        new = attrs.evolve(old, status=to)
        s.holds[hold_id] = new
        return new


class _Promos(_Repo):
    async def add(self, promo: PromoCode) -> None:
        s = self._s
        if promo.code in s.promos:
            raise ConflictError(f"promo code {promo.code} exists")
        s.promos[promo.code] = promo

    async def get(self, code: str) -> PromoCode | None:
        return self._s.promos.get(code)

    async def update(self, promo: PromoCode) -> None:
        s = self._s
        if promo.code in s.promos:
            s.promos[promo.code] = promo

    async def redeem(
        self, redemption: PromoRedemption, *, once_per_customer: bool, max_uses: int | None
    ) -> bool:
        s = self._s
        promo = s.promos.get(redemption.code)
        if promo is None:
            return False
        if max_uses is not None and promo.uses >= max_uses:
            return False
        if once_per_customer and any(
            r.code == redemption.code and r.customer_id == redemption.customer_id
            for r in s.redemptions
        ):
            return False
        s.redemptions.append(redemption)
        s.promos[promo.code] = attrs.evolve(promo, uses=promo.uses + 1)
        return True

    async def redeemed(self, code: str, customer_id: int) -> bool:
        return any(r.code == code and r.customer_id == customer_id for r in self._s.redemptions)

    async def list(self, *, active_only: bool = False) -> builtins.list[PromoCode]:
        promos = [p for p in self._s.promos.values() if p.active or not active_only]
        return sorted(promos, key=lambda p: p.code)


class _Referrals(_Repo):
    async def add(self, referral: Referral) -> bool:
        s = self._s
        if referral.referee_id in s.referrals:
            return False
        s.referrals[referral.referee_id] = referral
        return True

    async def referrer_of(self, customer_id: int) -> int | None:
        referral = self._s.referrals.get(customer_id)
        return None if referral is None else referral.referrer_id

    async def referees_of(self, customer_id: int) -> list[int]:
        return sorted(
            r.referee_id for r in self._s.referrals.values() if r.referrer_id == customer_id
        )

    async def claim_bonus(self, referee_id: int, now: datetime) -> int | None:
        referral = self._s.referrals.get(referee_id)
        if referral is None or referral.bonus_granted_at is not None:
            return None
        self._s.referrals[referee_id] = attrs.evolve(referral, bonus_granted_at=now)
        return referral.referrer_id


class _Audit(_Repo):
    async def add(self, entry: AuditEntry) -> None:
        s = self._s
        s.audit.append(
            attrs.evolve(entry, id=s.next_id("audit"), details=copy.deepcopy(dict(entry.details)))
        )

    async def recent(self, limit: int = 50, subject: str | None = None) -> list[AuditEntry]:
        found = [e for e in reversed(self._s.audit) if subject is None or e.subject == subject]
        return found[:limit]


class _Outbox(_Repo):
    async def add(self, job: OutboxJob) -> bool:
        s = self._s
        if job.dedupe_key in s.outbox_keys:
            return False
        stored = attrs.evolve(job, id=s.next_id("outbox"), payload=copy.deepcopy(dict(job.payload)))
        assert stored.id is not None
        s.outbox[stored.id] = stored
        s.outbox_keys[stored.dedupe_key] = stored.id
        return True

    async def add_many(self, jobs: Sequence[OutboxJob]) -> int:
        return sum([await self.add(job) for job in jobs])

    async def claim(
        self,
        now: datetime,
        lease_until: datetime,
        limit: int = 10,
        kinds: Sequence[str] | None = None,
    ) -> list[OutboxJob]:
        s = self._s
        due = [
            j
            for j in s.outbox.values()
            if j.status is JobStatus.PENDING
            and j.due_at <= now
            and (j.locked_until is None or j.locked_until <= now)
            and (kinds is None or j.kind in kinds)
        ]
        due.sort(key=lambda j: (j.due_at, j.id or 0))
        claimed = []
        for job in due[: max(limit, 0)]:
            # Counting at claim time means a worker that dies mid-job still used an attempt,
            # so a job that kills its worker is parked eventually.
            leased = attrs.evolve(job, locked_until=lease_until, attempts=job.attempts + 1)
            assert leased.id is not None
            s.outbox[leased.id] = leased
            claimed.append(leased)
        return claimed

    def _set(
        self,
        job_id: int,
        status: JobStatus,
        error: str | None = None,
        due_at: datetime | None = None,
    ) -> None:
        s = self._s
        job = s.outbox.get(job_id)
        if job is not None:
            s.outbox[job_id] = attrs.evolve(
                job,
                status=status,
                locked_until=None,
                last_error=job.last_error if error is None else error,
                due_at=job.due_at if due_at is None else due_at,
            )

    async def complete(self, job_id: int) -> None:
        self._set(job_id, JobStatus.DONE)

    async def complete_many(self, job_ids: Sequence[int]) -> None:
        for job_id in job_ids:
            self._set(job_id, JobStatus.DONE)

    async def retry(self, job_id: int, due_at: datetime, error: str) -> None:
        self._set(job_id, JobStatus.PENDING, error, due_at)

    async def park(self, job_id: int, error: str) -> None:
        self._set(job_id, JobStatus.PARKED, error)

    async def get(self, job_id: int) -> OutboxJob | None:
        return self._s.outbox.get(job_id)

    async def pending_count(self) -> int:
        return sum(1 for j in self._s.outbox.values() if j.status is JobStatus.PENDING)

    async def parked(self, limit: int = 50) -> list[OutboxJob]:
        found = [j for j in self._s.outbox.values() if j.status is JobStatus.PARKED]
        found.sort(key=lambda j: j.id or 0, reverse=True)
        return found[:limit]

    async def renew(self, job_ids: Sequence[int], lease_until: datetime) -> None:
        s = self._s
        for job_id in job_ids:
            job = s.outbox.get(job_id)
            if job is not None and job.status is JobStatus.PENDING:
                s.outbox[job_id] = attrs.evolve(job, locked_until=lease_until)

    async def listing(
        self, status: str | None = None, limit: int = 50, kind: str | None = None
    ) -> list[OutboxJob]:
        found = [
            j
            for j in self._s.outbox.values()
            if (status is None or j.status == status) and (kind is None or j.kind == kind)
        ]
        found.sort(key=lambda j: j.id or 0, reverse=True)
        return found[:limit]

    async def requeue(self, job_id: int, now: datetime) -> bool:
        s = self._s
        job = s.outbox.get(job_id)
        if job is None or job.status is not JobStatus.PARKED:
            return False
        s.outbox[job_id] = attrs.evolve(
            job, status=JobStatus.PENDING, due_at=now, attempts=0, locked_until=None
        )
        return True

    async def requeue_parked(self, now: datetime) -> int:
        parked = [j.id for j in self._s.outbox.values() if j.status is JobStatus.PARKED]
        return sum([await self.requeue(i, now) for i in parked if i is not None])


class _Leases(_Repo):
    async def acquire(
        self, name: str, holder: str, now: datetime, until: datetime, ran_before: datetime
    ) -> bool:
        s = self._s
        _, locked, last = s.leases.get(name, (None, None, None))
        if (locked is not None and locked > now) or (last is not None and last > ran_before):
            return False
        s.leases[name] = (holder, until, last)
        return True

    async def renew(self, name: str, holder: str, until: datetime) -> bool:
        s = self._s
        who, _, last = s.leases.get(name, (None, None, None))
        if who != holder:
            return False
        s.leases[name] = (holder, until, last)
        return True

    async def release(self, name: str, holder: str, ran_at: datetime | None) -> None:
        s = self._s
        who, _, last = s.leases.get(name, (None, None, None))
        if who == holder:
            s.leases[name] = (None, None, ran_at if ran_at is not None else last)


class _PanelUsers(_Repo):
    async def upsert(self, view: PanelUserView) -> None:
        s = self._s
        if view.subscription_id not in s.subscriptions:  # the foreign key
            raise ConflictError(f"subscription {view.subscription_id} does not exist")
        s.panel_users[view.subscription_id] = view

    async def get(self, subscription_id: int) -> PanelUserView | None:
        return self._s.panel_users.get(subscription_id)

    async def find_subscription(self, panel_key: str, panel_username: str) -> int | None:
        subs = sorted(self._s.subscriptions.values(), key=lambda x: x.id or 0)
        by_key = [x.id for x in subs if x.panel_key == panel_key]
        by_name = [x.id for x in subs if x.panel_username == panel_username]
        return (by_key or by_name or [None])[0]


if TYPE_CHECKING:
    _: UnitOfWork = MemoryUnitOfWork(MemoryStore())
    _panel: UnitOfWork = MemoryUnitOfWork(MemoryStore())
