# ruff: noqa: S608
# (every value is a bind parameter; only fixed SQL is formatted in)
"""Settling payments on SQLite: every confirmation waiting, in one transaction, in one
trip to a thread.

Through SQLAlchemy and aiosqlite, each statement of a confirmation is a hand-off to the
driver's thread and back, and a confirmation is a dozen statements: the event loop spent
about 12 ms of CPU per payment (bench/bench_webhooks.py). Here a :class:`GroupCommit`
collects the confirmations that arrive together, and one function runs them all on a
connection of its own, in its own thread, in one ``BEGIN IMMEDIATE`` transaction with a
savepoint per confirmation, so one that breaks a constraint is rolled back alone.

SQLite has one writer at a time. While the batch runs, the settler holds the engine's
only pooled connection (``create_engine`` gives SQLite a pool of one), so no write of
this process waits on SQLite's busy timeout; another process (the CLI) still does.

The effects, their keys and their payloads are the settlement rules of
``vpnshop.domain.settlement``, filled in with the values read in the transaction: the
same rules ``settle_pg_batch.CONFIRM_BATCH_SQL`` and
``vpnshop.services.settlement.settle_stepwise`` render
(tests/integration/test_settlement_backends.py compares them). The statements write
values as SQLAlchemy's column types do: datetimes as naive UTC
``YYYY-MM-DD HH:MM:SS.ffffff`` text, JSON as ``json.dumps`` text, booleans as 0 and 1.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from vpnshop.adapters.storage.engine import SQLITE_PRAGMAS
from vpnshop.adapters.storage.group_commit import GroupCommit
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.money import Money
from vpnshop.domain.money import currency as currency_of
from vpnshop.domain.order import OrderKind
from vpnshop.domain.payment import Payment, PaymentStatus, sources_of
from vpnshop.domain.settlement import (
    APPLY,
    AUDIT_SUBJECT,
    PAID_NOTICE,
    PURCHASE_REASON,
    REFERRAL_ACTOR,
    REFERRAL_CREDIT,
    REFERRAL_NOTICE,
    SUCCEEDED_ACTION,
    TOPUP_CREDIT,
    CreditRule,
    Ref,
)
from vpnshop.ports.settlement import Confirmation
from vpnshop.ports.storage import StorageUnavailableError

_OPEN = tuple(sorted(s.value for s in sources_of(PaymentStatus.SUCCEEDED)))
_IN_OPEN = "(" + ", ".join("?" for _ in _OPEN) + ")"

_FIND = (
    "SELECT payments.*, o.kind AS o_kind, o.days AS o_days, o.plan_code AS o_plan_code, "
    "o.promo_code AS o_promo_code FROM payments JOIN orders o ON o.id = payments.order_id "
)
_FIND_BY_ID = _FIND + "WHERE payments.id = ?"
_FIND_BY_EXTERNAL_ID = _FIND + "WHERE payments.provider = ? AND payments.external_id = ?"
_SUCCEED = (
    "UPDATE payments SET status = 'succeeded', updated_at = ?, "
    "external_id = COALESCE(?, external_id), saved_method_id = COALESCE(?, saved_method_id) "
    f"WHERE id = ? AND status IN {_IN_OPEN} RETURNING *"
)
_LEDGER = (
    "INSERT INTO ledger (customer_id, amount_minor, currency, kind, idempotency_key, actor, "
    "reference, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (idempotency_key) DO NOTHING"
)
_BALANCE = (
    "INSERT INTO balances (customer_id, currency, amount_minor) VALUES (?, ?, ?) "
    "ON CONFLICT (customer_id, currency) "
    "DO UPDATE SET amount_minor = balances.amount_minor + excluded.amount_minor"
)
_PLAN = (
    "SELECT code, traffic_limit_bytes, traffic_reset, device_limit, squads FROM plans "
    "WHERE code = ?"
)
_SUBSCRIPTION = "SELECT id, expires_at FROM subscriptions WHERE customer_id = ?"
_EXTEND = (
    "UPDATE subscriptions SET expires_at = ?, plan_code = ?, traffic_limit_bytes = ?, "
    "traffic_reset = ?, device_limit = ?, squads = ?, is_trial = 0, enabled = 1, "
    "updated_at = ? WHERE id = ?"
)
_START = (
    "INSERT INTO subscriptions (customer_id, plan_code, expires_at, traffic_limit_bytes, "
    "traffic_reset, device_limit, squads, is_trial, enabled, auto_renew, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 1, 0, ?, ?) RETURNING id"
)
_JOB = (
    "INSERT INTO outbox (kind, payload, dedupe_key, status, attempts, due_at, created_at) "
    "VALUES (?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING"
)
_AUDIT = "INSERT INTO audit_log (actor, action, subject, details, at) VALUES (?, ?, ?, ?, ?)"
_REFERRER = "SELECT referrer_id FROM referrals WHERE referee_id = ?"


def _text(at: datetime) -> str:
    """A datetime as SQLAlchemy's UtcDateTime stores it on SQLite."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _time(stored: str) -> datetime:
    return datetime.fromisoformat(stored).replace(tzinfo=UTC)


@attrs.frozen
class _Item:
    confirmation: Confirmation
    now: datetime


def sqlite_path(engine: AsyncEngine) -> str | None:
    """The database file of a SQLite engine; None for an in-memory database, which a
    second connection cannot see."""
    database = engine.url.database
    if not database or database == ":memory:" or engine.url.query.get("mode") == "memory":
        return None
    return database


class SqlitePaymentSettler:
    """The PaymentSettler fast path on SQLite (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 64) -> None:
        path = sqlite_path(engine) if engine.dialect.name == "sqlite" else None
        if path is None:
            raise ValueError("SqlitePaymentSettler needs a SQLite database file")
        self._engine = engine
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="vpnshop-settle-sqlite")
        self._connection: sqlite3.Connection | None = None  # used in self._thread only
        self._closed = False
        self.group: GroupCommit[_Item, Payment | None] = GroupCommit(
            self._execute,
            fatal=(StorageUnavailableError,),
            max_batch=max_batch,
            max_inflight=1,  # one writer
            name="vpnshop-settle-sqlite",
        )

    async def aclose(self) -> None:
        """Wait for the batch under way, then close the connection and the thread."""
        await self.group.aclose()
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    async def confirm(self, confirmation: Confirmation, now: datetime) -> Payment | None:
        c = confirmation
        if c.payment_id is None and c.external_id is None:
            return None
        return await self.group.submit(_Item(c, now))

    async def _execute(self, batch: list[_Item]) -> list[Payment | Exception | None]:
        loop = asyncio.get_running_loop()
        # Holding the engine's one connection keeps this process's other writes out.
        held = self._engine.connect()
        try:
            await held.start()
        except (OperationalError, OSError) as e:
            raise StorageUnavailableError(f"database unavailable: {e}") from e
        try:
            return await loop.run_in_executor(self._thread, self._settle_all, batch)
        finally:
            await held.close()

    # Everything below runs in self._thread.

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            try:
                con = sqlite3.connect(self._path, isolation_level=None)
                con.row_factory = sqlite3.Row
                for pragma in SQLITE_PRAGMAS:
                    con.execute(pragma)
            except sqlite3.Error as e:
                raise StorageUnavailableError(f"database unavailable: {e}") from e
            self._connection = con
        return self._connection

    def _close(self) -> None:
        con, self._connection = self._connection, None
        if con is not None:
            con.close()

    def _settle_all(self, batch: list[_Item]) -> list[Payment | Exception | None]:
        con = self._open()
        results: list[Payment | Exception | None] = []
        try:
            con.execute("BEGIN IMMEDIATE")
            for item in batch:
                con.execute("SAVEPOINT confirmation")
                try:
                    results.append(self._settle(con, item))
                except sqlite3.IntegrityError as e:
                    con.execute("ROLLBACK TO confirmation")
                    c = item.confirmation
                    ref = c.payment_id or f"{c.provider}:{c.external_id}"
                    results.append(ConflictError(f"confirming payment {ref} conflicts: {e}"))
                con.execute("RELEASE confirmation")
            con.execute("COMMIT")
        except sqlite3.OperationalError as e:  # locked past the timeout, disk full, I/O
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise StorageUnavailableError(f"database unavailable: {e}") from e
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return results

    def _settle(self, con: sqlite3.Connection, item: _Item) -> Payment | None:
        c, now = item.confirmation, _text(item.now)
        if c.payment_id is not None:
            found = con.execute(_FIND_BY_ID, (c.payment_id,)).fetchone()
        else:
            found = con.execute(_FIND_BY_EXTERNAL_ID, (c.provider, c.external_id)).fetchone()
        if found is None or not _matches(found, c):
            return None
        row = con.execute(
            _SUCCEED, (now, c.external_id, c.saved_method_id, found["id"], *_OPEN)
        ).fetchone()
        if row is None:
            return None
        pid, customer, currency = row["id"], row["customer_id"], row["currency"]
        refs: dict[Ref, Any] = {Ref.PAYMENT: pid, Ref.CUSTOMER: customer}
        jobs = [PAID_NOTICE.job(refs, item.now)]
        if found["o_kind"] == OrderKind.TOPUP:
            self._credit(
                con, TOPUP_CREDIT, customer, row["amount_minor"], currency, str(c.actor), pid, now
            )
        reward = c.amount.percent(c.referral_reward_percent)
        if reward.minor > 0:
            referral = con.execute(_REFERRER, (customer,)).fetchone()
            if referral is not None:
                referrer = referral["referrer_id"]
                self._credit(
                    con,
                    REFERRAL_CREDIT,
                    referrer,
                    reward.minor,
                    currency,
                    str(REFERRAL_ACTOR),
                    pid,
                    now,
                )
                notice = {**refs, Ref.REFERRER: referrer, Ref.REWARD: str(reward)}
                jobs.append(REFERRAL_NOTICE.job(notice, item.now))
        if found["o_kind"] == OrderKind.PLAN:
            subscription = self._extend(con, customer, found, item.now)
            if subscription is not None:
                reason = PURCHASE_REASON(payment=pid)
                applied = {**refs, Ref.SUBSCRIPTION: subscription, Ref.REASON: reason}
                jobs.insert(1, APPLY.job(applied, item.now))
        for job in jobs:
            con.execute(_JOB, (job.kind, json.dumps(dict(job.payload)), job.dedupe_key, now, now))
        con.execute(
            _AUDIT,
            (
                str(c.actor),
                SUCCEEDED_ACTION,
                AUDIT_SUBJECT(payment=pid),
                json.dumps(c.audit_details),
                now,
            ),
        )
        return _payment(row)

    @staticmethod
    def _credit(
        con: sqlite3.Connection,
        rule: CreditRule,
        customer: int,
        minor: int,
        currency: str,
        actor: str,
        payment_id: str,
        now: str,
    ) -> None:
        key = rule.key(payment=payment_id)
        inserted = con.execute(
            _LEDGER, (customer, minor, currency, rule.kind, key, actor, payment_id, now)
        ).rowcount
        if inserted:
            con.execute(_BALANCE, (customer, currency, minor))

    @staticmethod
    def _extend(
        con: sqlite3.Connection, customer: int, found: sqlite3.Row, at: datetime
    ) -> int | None:
        plan = con.execute(_PLAN, (found["o_plan_code"],)).fetchone()
        if plan is None:
            return None
        days = timedelta(days=found["o_days"])
        limits = (
            plan["code"],
            plan["traffic_limit_bytes"],
            plan["traffic_reset"],
            plan["device_limit"],
            plan["squads"],
        )
        current = con.execute(_SUBSCRIPTION, (customer,)).fetchone()
        if current is None:
            started = con.execute(
                _START, (customer, limits[0], _text(at + days), *limits[1:], _text(at), _text(at))
            ).fetchone()
            return int(started["id"])
        expires = max(_time(current["expires_at"]), at) + days
        con.execute(_EXTEND, (_text(expires), *limits, _text(at), current["id"]))
        return int(current["id"])


def _matches(found: sqlite3.Row, c: Confirmation) -> bool:
    """The conditions of settle_pg_batch's conditional UPDATE."""
    return (
        found["status"] in _OPEN
        and found["provider"] == c.provider
        and found["amount_minor"] == c.amount.minor
        and found["currency"] == c.amount.currency.code
        and (c.external_id is None or found["external_id"] in (None, c.external_id))
        and found["o_promo_code"] is None
    )


def _payment(row: sqlite3.Row) -> Payment:
    cur = currency_of(row["currency"])
    return Payment(
        id=row["id"],
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        provider=row["provider"],
        amount=Money(row["amount_minor"], cur),
        status=PaymentStatus(row["status"]),
        external_id=row["external_id"],
        confirmation_url=row["confirmation_url"],
        refunded=Money(row["refunded_minor"], cur) if row["refunded_minor"] else None,
        saved_method_id=row["saved_method_id"],
        created_at=_time(row["created_at"]),
        updated_at=_time(row["updated_at"]),
    )


if TYPE_CHECKING:
    from vpnshop.ports.settlement import PaymentSettler

    def _check(engine: AsyncEngine) -> PaymentSettler:
        return SqlitePaymentSettler(engine)
