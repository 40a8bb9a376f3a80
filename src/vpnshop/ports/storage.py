"""The storage port: a unit of work with one repository per aggregate.

Contract (the same for the in-memory fake, SQLite and PostgreSQL, proven by
``tests/contract/storage/``):

* ``async with uow_factory() as uow:`` opens one transaction. Nothing is kept unless
  ``await uow.commit()`` is called; leaving the block otherwise (or by an exception) rolls
  everything back.
* Methods documented as *atomic* are single conditional statements at the database, so
  that concurrent callers in any number of processes cannot both succeed: finalising a
  payment, posting a ledger entry, claiming a trial, redeeming a promo, claiming outbox
  jobs. They never read-then-write.
* Ids of customers and subscriptions are assigned by the store; ids of orders, payments
  and holds are chosen by the caller (``IdGenerator``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeVar, runtime_checkable

import attrs

from vpnshop.domain.audit import AuditEntry
from vpnshop.domain.customer import Customer
from vpnshop.domain.ledger import EntryKind, Hold, HoldStatus, LedgerEntry
from vpnshop.domain.money import Currency, Money
from vpnshop.domain.order import Order
from vpnshop.domain.outbox import OutboxJob
from vpnshop.domain.panel import PanelUserView
from vpnshop.domain.payment import Payment, PaymentStatus
from vpnshop.domain.plan import Plan
from vpnshop.domain.promo import PromoCode, PromoRedemption
from vpnshop.domain.referral import Referral
from vpnshop.domain.settlement import Effects
from vpnshop.domain.subscription import Subscription
from vpnshop.ports.storage_jobs import BroadcastRepository, CursorRepository, DueScanRepository


class StorageUnavailableError(Exception):
    """The database cannot be reached (the webhook server answers 503 so providers retry)."""


@attrs.frozen
class BalanceMismatch:
    """A customer whose stored balance differs from the sum of their ledger."""

    customer_id: int
    currency: str
    stored_minor: int
    ledger_minor: int


@attrs.frozen
class PaymentContext:
    """A payment with what confirming it needs: its order, the plan bought (if any) and
    the customer's referrer."""

    payment: Payment
    order: Order
    plan: Plan | None
    referrer_id: int | None


class CustomerRepository(Protocol):
    async def add(self, customer: Customer) -> Customer:
        """Store a new customer; returns it with its id. Raises ConflictError when the
        Telegram id is taken."""
        ...

    async def get_or_add(self, customer: Customer) -> tuple[Customer, bool]:
        """The customer with *customer*'s Telegram id, stored now if there was none; and
        whether this call stored it. Atomic: any number of concurrent callers for one
        Telegram id get the same customer and exactly one of them gets True (customers are
        never deleted, so ConflictError cannot happen)."""
        ...

    async def get(self, customer_id: int) -> Customer | None: ...

    async def by_telegram_id(self, telegram_id: int) -> Customer | None: ...

    async def lock(self, customer_id: int) -> None:
        """Hold this customer's row until the transaction ends, so that two transactions
        changing the same customer's subscription run one after the other (PostgreSQL:
        ``SELECT ... FOR UPDATE``; SQLite and memory serialise writers anyway)."""
        ...

    async def update(self, customer: Customer) -> None:
        """Raises ConflictError when the new Telegram id belongs to another customer."""
        ...

    async def count(self) -> int: ...

    async def by_referral_code(self, code: str) -> Customer | None:
        """The customer whose own referral code is *code* (exact match)."""
        ...

    async def set_referral_code(self, customer_id: int, code: str) -> str | None:
        """Atomic. Give the customer *code* unless they have one; returns the code they
        have now (theirs if they had one), None when there is no such customer. Raises
        ConflictError when another customer holds *code* (nothing changes)."""
        ...

    async def set_referrer(self, customer_id: int, referrer_id: int) -> bool:
        """Atomic. Record the referrer only if the customer has none; True if recorded."""
        ...

    async def set_campaign(self, customer_id: int, campaign: str) -> bool:
        """Atomic. Record the campaign tag only if the customer has none (first wins)."""
        ...

    async def set_language(self, customer_id: int, language: str) -> bool:
        """True when the stored language changed."""
        ...

    async def set_unreachable(self, customer_id: int, unreachable: bool) -> bool:
        """True when the stored flag changed."""
        ...

    async def set_discount_code(self, customer_id: int, code: str | None) -> bool:
        """Keep (or with None, forget) a discount code for the next purchase; True when
        the stored code changed."""
        ...


class PlanRepository(Protocol):
    async def get(self, code: str) -> Plan | None: ...

    async def list(self, *, active_only: bool = True) -> list[Plan]:
        """Plans by sort order, then code."""
        ...

    async def upsert(self, plan: Plan) -> bool:
        """Insert or replace the plan with this code; True when anything changed."""
        ...


class SubscriptionRepository(DueScanRepository, Protocol):
    async def add(self, subscription: Subscription) -> Subscription:
        """Store the customer's subscription (one per customer: buying extends it).
        Raises ConflictError when the customer has one already."""
        ...

    async def get(self, subscription_id: int, *, for_update: bool = False) -> Subscription | None:
        """With *for_update*, the row stays locked until the transaction ends (PostgreSQL);
        SQLite serialises writers anyway."""
        ...

    async def for_customer(self, customer_id: int) -> list[Subscription]:
        """Newest first."""
        ...

    async def update(self, subscription: Subscription) -> None: ...

    async def set_panel_link(
        self,
        subscription_id: int,
        *,
        panel_key: str,
        panel_username: str,
        subscription_url: str | None,
    ) -> None:
        """Record which panel user projects this subscription; touches only those fields,
        so it cannot overwrite a concurrent extension."""
        ...

    async def expiring_between(self, start: datetime, end: datetime) -> list[Subscription]: ...

    async def page(self, after_id: int = 0, limit: int = 500) -> list[Subscription]:
        """Subscriptions with an id above *after_id*, by id (keyset paging over all)."""
        ...

    async def set_auto_renew(self, subscription_id: int, auto_renew: bool) -> bool:
        """Touches only that flag (a concurrent extension keeps its days); True when it
        changed."""
        ...


class TrialRepository(Protocol):
    async def claim(self, customer_id: int, now: datetime) -> bool:
        """Atomic. True for the first claim of this customer, False for every later one."""
        ...

    async def reset(self, customer_id: int) -> None:
        """An admin gives the customer their trial back."""
        ...

    async def used(self, customer_id: int) -> bool:
        """Whether the customer has claimed their trial."""
        ...


class OrderRepository(Protocol):
    async def add(self, order: Order) -> None: ...

    async def get(self, order_id: str) -> Order | None: ...

    async def delete_abandoned(self, cutoff: datetime, limit: int = 1000) -> int:
        """Delete up to *limit* orders created before *cutoff* that nothing refers to (no
        payment, hold or promo redemption); returns how many."""
        ...


class PaymentRepository(Protocol):
    async def add(self, payment: Payment) -> None:
        """Raises ConflictError on a duplicate (provider, external_id)."""
        ...

    async def get(self, payment_id: str) -> Payment | None: ...

    async def context(
        self, payment_id: str | None, provider: str, external_id: str | None
    ) -> PaymentContext | None:
        """The payment found by our id, else by (provider, external id), with its context,
        in one read. None when neither finds one."""
        ...

    async def by_external_id(self, provider: str, external_id: str) -> Payment | None: ...

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
        """Atomic. Move the payment to *to* only if its current status allows it (one
        conditional UPDATE); returns the updated payment, or None when another caller got
        there first or the transition is not allowed. Optional fields are set alongside."""
        ...

    async def add_refund(self, payment_id: str, amount: Money, now: datetime) -> Payment | None:
        """Atomic. Add *amount* to the refunded total if it stays within the payment's
        amount and the payment is SUCCEEDED; when the whole amount is refunded the status
        becomes REFUNDED. None when refused."""
        ...

    async def open_older_than(self, cutoff: datetime, limit: int = 100) -> list[Payment]:
        """Created or pending payments created before *cutoff*, oldest first."""
        ...

    async def recent(self, limit: int = 20, customer_id: int | None = None) -> list[Payment]: ...


class LedgerRepository(Protocol):
    async def post(self, entry: LedgerEntry) -> bool:
        """Atomic. Append *entry* and apply it to the balance.

        Returns False (and changes nothing) when an entry with the same idempotency key
        exists. Raises InsufficientFundsError when it would make the balance negative; the
        caller must then let the unit of work roll back.
        """
        ...

    async def balance(self, customer_id: int, currency: Currency) -> Money: ...

    async def entries(
        self, customer_id: int, limit: int = 50, offset: int = 0
    ) -> list[LedgerEntry]:
        """Newest first (by id), skipping the *offset* newest."""
        ...

    async def balances(self, customer_id: int) -> list[Money]:
        """Every balance row of the customer (zero ones too), by currency code."""
        ...

    async def totals(self, customer_id: int, kind: EntryKind) -> list[Money]:
        """The sum of the customer's entries of *kind*, per currency, by currency code."""
        ...

    async def has_key(self, idempotency_key: str) -> bool: ...

    async def mismatches(self) -> list[BalanceMismatch]:
        """Every (customer, currency) whose stored balance differs from its ledger sum."""
        ...


class HoldRepository(Protocol):
    async def add(self, hold: Hold) -> None: ...

    async def get(self, hold_id: str) -> Hold | None: ...

    async def settle(self, hold_id: str, to: HoldStatus) -> Hold | None:
        """Atomic. HELD -> CAPTURED or RELEASED; None when the hold is not HELD."""
        ...


class PromoRepository(Protocol):
    async def add(self, promo: PromoCode) -> None:
        """Raises ConflictError when the code exists."""
        ...

    async def get(self, code: str) -> PromoCode | None: ...

    async def redeemed(self, code: str, customer_id: int) -> bool:
        """Whether this customer has redeemed this code before."""
        ...

    async def list(self, *, active_only: bool = False) -> list[PromoCode]:
        """By code."""
        ...

    async def update(self, promo: PromoCode) -> None: ...

    async def redeem(
        self, redemption: PromoRedemption, *, once_per_customer: bool, max_uses: int | None
    ) -> bool:
        """Atomic. Record the redemption and count one use; False when the customer has
        already redeemed a once-only code or the code has no uses left."""
        ...


class ReferralRepository(Protocol):
    async def add(self, referral: Referral) -> bool:
        """False when the referee already has a referrer."""
        ...

    async def referrer_of(self, customer_id: int) -> int | None: ...

    async def referees_of(self, customer_id: int) -> list[int]: ...

    async def claim_bonus(self, referee_id: int, now: datetime) -> int | None:
        """Atomic. Mark the referral's first-payment bonus as granted; the referrer's id
        for the one call that did, None for every other (or without a referral)."""
        ...


class AuditRepository(Protocol):
    async def add(self, entry: AuditEntry) -> None: ...

    async def recent(self, limit: int = 50, subject: str | None = None) -> list[AuditEntry]: ...


class OutboxRepository(Protocol):
    async def add(self, job: OutboxJob) -> bool:
        """Enqueue; False when a job with the same dedupe key exists (nothing changes)."""
        ...

    async def add_many(self, jobs: Sequence[OutboxJob]) -> int:
        """Enqueue *jobs* in one statement (a due-scan's page), each exactly as ``add``
        would: a job whose dedupe key exists is skipped. Returns how many were added."""
        ...

    async def claim(
        self,
        now: datetime,
        lease_until: datetime,
        limit: int = 10,
        kinds: Sequence[str] | None = None,
    ) -> list[OutboxJob]:
        """Atomic. Lease up to *limit* due pending jobs; two workers never get the same
        job while its lease lasts (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""
        ...

    async def complete(self, job_id: int) -> None: ...

    async def complete_many(self, job_ids: Sequence[int]) -> None:
        """Mark all of *job_ids* done (one statement where the store allows it)."""
        ...

    async def retry(self, job_id: int, due_at: datetime, error: str) -> None: ...

    async def park(self, job_id: int, error: str) -> None: ...

    async def get(self, job_id: int) -> OutboxJob | None: ...

    async def pending_count(self) -> int: ...

    async def parked(self, limit: int = 50) -> list[OutboxJob]: ...

    async def renew(self, job_ids: Sequence[int], lease_until: datetime) -> None:
        """Extend the lease of pending jobs this worker still runs (a crashed worker's
        leases lapse within one short lease; a live one's never do)."""
        ...

    async def listing(
        self, status: str | None = None, limit: int = 50, kind: str | None = None
    ) -> list[OutboxJob]:
        """The newest jobs, optionally only those with *status* and of *kind*."""
        ...

    async def requeue(self, job_id: int, now: datetime) -> bool:
        """Make a parked job due now with a fresh count of attempts; False if the job
        does not exist or is not parked."""
        ...

    async def requeue_parked(self, now: datetime) -> int:
        """Requeue every parked job; returns how many."""
        ...


class LeaseRepository(Protocol):
    """Lease rows: one per singleton periodic job, so that one replica at a time runs
    it and its interval holds across replicas."""

    async def acquire(
        self, name: str, holder: str, now: datetime, until: datetime, ran_before: datetime
    ) -> bool:
        """Atomic. Take *name* for *holder* until *until* if nobody holds it (or the
        lease lapsed) and it last ran at or before *ran_before*."""
        ...

    async def renew(self, name: str, holder: str, until: datetime) -> bool:
        """Extend *holder*'s lease; False if it lost the lease meanwhile."""
        ...

    async def release(self, name: str, holder: str, ran_at: datetime | None) -> None:
        """Give the lease up, recording that the job ran at *ran_at* (None: did not)."""
        ...


class UnitOfWork(Protocol):
    @property
    def customers(self) -> CustomerRepository: ...

    @property
    def plans(self) -> PlanRepository: ...

    @property
    def subscriptions(self) -> SubscriptionRepository: ...

    @property
    def trials(self) -> TrialRepository: ...

    @property
    def orders(self) -> OrderRepository: ...

    @property
    def payments(self) -> PaymentRepository: ...

    @property
    def ledger(self) -> LedgerRepository: ...

    @property
    def holds(self) -> HoldRepository: ...

    @property
    def promos(self) -> PromoRepository: ...

    @property
    def referrals(self) -> ReferralRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def panel_users(self) -> PanelUserRepository: ...

    @property
    def cursors(self) -> CursorRepository: ...

    @property
    def broadcasts(self) -> BroadcastRepository: ...

    @property
    def leases(self) -> LeaseRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back whatever was not committed."""
        ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
_T = TypeVar("_T")


class ReadRunner(Protocol):
    """Runs ``fn(uow)`` in one read-only unit of work, wherever the store reads fastest
    (SQLite: on a thread of its own, in one hop). *fn* may use nothing but *uow*: it may
    run on another thread's event loop. Nothing may be written."""

    def __call__(self, fn: Callable[[UnitOfWork], Awaitable[_T]]) -> Awaitable[_T]: ...


@runtime_checkable
class AtomicSettlement(Protocol):
    """An optional capability of a unit of work: settle a payment and apply its effects
    in ONE database statement (PostgreSQL: data-modifying CTEs), with exactly the result
    of ``vpnshop.services.settlement.settle_stepwise``. Confirming a payment in one round
    trip instead of a dozen is what lets PostgreSQL confirm over a thousand a second."""

    def can_settle(self, effects: Effects) -> bool:
        """Whether :meth:`settle` supports this shape of effects."""
        ...

    async def settle(
        self,
        payment_id: str,
        to: PaymentStatus,
        now: datetime,
        *,
        external_id: str | None,
        saved_method_id: str | None,
        effects: Effects,
    ) -> Payment | None:
        """Atomic: transition the payment (as ``payments.transition``) and, only if that
        happened, apply *effects*; None and no change otherwise."""
        ...


class PanelUserRepository(Protocol):
    """The cached view of panel users (``panel_users``), one row per subscription."""

    async def upsert(self, view: PanelUserView) -> None:
        """Insert or replace the view of ``view.subscription_id`` (which must exist)."""
        ...

    async def get(self, subscription_id: int) -> PanelUserView | None: ...

    async def find_subscription(self, panel_key: str, panel_username: str) -> int | None:
        """The id of the subscription projected on this panel user: the one storing
        *panel_key*, else the one storing *panel_username*; None when the shop has none."""
        ...
