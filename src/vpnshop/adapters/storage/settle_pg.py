# ruff: noqa: S608
# (every value is a bind parameter; only placeholders and fixed SQL are formatted in)
"""Settling a payment in one PostgreSQL statement.

Data-modifying CTEs chained on the payment's conditional UPDATE: every insert reads from
it, so when the UPDATE finds the payment already settled (a concurrent or repeated
delivery) nothing else happens either. The statement is the same, effect for effect, as
``vpnshop.services.settlement.settle_stepwise``, which the storage contract and service
tests check on PostgreSQL. One round trip instead of a dozen: this is what the payment
confirmation throughput on PostgreSQL rests on (see bench/).

Concurrency: the subscription is an upsert on its one-per-customer key, so ON CONFLICT
locks the existing row and computes GREATEST(expires_at, now) + days from its newest
version; balances are upserts that add to the stored amount. Neither reads-then-writes.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vpnshop.adapters.storage.repositories import _payment
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.payment import Payment, PaymentStatus, sources_of
from vpnshop.ports.settlement import Confirmation
from vpnshop.ports.storage import Effects, StorageUnavailableError


def supports(effects: Effects) -> bool:
    """Credits only (a debit needs its own "not below zero" answer), one extension per
    customer (an upsert touches a row once), and no promo redemption (rare; stepwise)."""
    customers = [e.customer_id for e in effects.extensions]
    return (
        all(e.amount.is_positive for e in effects.ledger)
        and len(customers) == len(set(customers))
        and effects.promo is None
        and effects.referral_bonus is None
    )


class _Params:
    """Positional ``$n`` parameters, as asyncpg takes them: the statement goes to the
    driver as it is (no SQL compilation per call; asyncpg caches the prepared statement
    per statement shape)."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any, sql_type: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{sql_type}"


def _values(rows: list[list[str]], columns: str) -> str:
    return "(VALUES " + ", ".join("(" + ", ".join(r) + ")" for r in rows) + f") AS {columns}"


def statement(
    payment_id: str,
    to: PaymentStatus,
    now: datetime,
    *,
    external_id: str | None,
    saved_method_id: str | None,
    effects: Effects,
) -> tuple[str, list[Any]] | None:
    """The settling statement and its parameters; None when nothing can reach *to*."""
    sources = sorted(s.value for s in sources_of(to))
    if not sources:
        return None
    q = _Params()
    ctes = [
        "p AS (UPDATE payments SET status = {to}, updated_at = {now}, "
        "external_id = COALESCE({ext}, external_id), "
        "saved_method_id = COALESCE({smid}, saved_method_id) "
        "WHERE id = {pid} AND status IN ({src}) RETURNING *)".format(
            to=q(to.value, "varchar"),
            now=q(now, "timestamptz"),
            ext=q(external_id, "varchar"),
            smid=q(saved_method_id, "varchar"),
            pid=q(payment_id, "varchar"),
            src=", ".join(q(s, "varchar") for s in sources),
        )
    ]
    jobs: list[str] = []
    if effects.ledger:
        rows = [
            [
                q(e.customer_id, "bigint"),
                q(e.amount.minor, "bigint"),
                q(e.amount.currency.code, "varchar"),
                q(e.kind.value, "varchar"),
                q(e.idempotency_key, "varchar"),
                q(str(e.actor), "varchar"),
                q(e.reference, "varchar"),
                q(e.memo, "varchar"),
                q(e.created_at or now, "timestamptz"),
            ]
            for e in effects.ledger
        ]
        ctes.append(
            "l AS (INSERT INTO ledger (customer_id, amount_minor, currency, kind, "
            "idempotency_key, actor, reference, memo, created_at) SELECT v.* FROM "
            + _values(rows, "v(c, a, cur, k, key, act, ref, memo, at)")
            + " WHERE EXISTS (SELECT 1 FROM p) ON CONFLICT (idempotency_key) DO NOTHING "
            "RETURNING customer_id, currency, amount_minor)"
        )
        ctes.append(
            "b AS (INSERT INTO balances (customer_id, currency, amount_minor) "
            "SELECT customer_id, currency, sum(amount_minor) FROM l GROUP BY customer_id, "
            "currency ON CONFLICT (customer_id, currency) DO UPDATE SET amount_minor = "
            "balances.amount_minor + excluded.amount_minor RETURNING 1)"
        )
    if effects.extensions:
        now_p = q(now, "timestamptz")
        rows, reasons = [], []
        for ext in effects.extensions:
            plan = ext.plan
            rows.append(
                [
                    q(ext.customer_id, "bigint"),
                    q(ext.days, "integer"),
                    q(plan.code if plan else None, "varchar"),
                    q(plan.traffic_limit_bytes if plan else 0, "bigint"),
                    q(plan.traffic_reset.value if plan else "NO_RESET", "varchar"),
                    q(plan.device_limit if plan else None, "integer"),
                    q(json.dumps(list(plan.squads) if plan else []), "json"),
                ]
            )
            reasons.append([q(ext.customer_id, "bigint"), q(ext.reason, "varchar")])
        # The proposed row carries the days as expires_at - now; a NULL plan_code means
        # "no plan given": the existing subscription keeps its plan and limits.
        ctes.append(
            "s AS (INSERT INTO subscriptions AS cur (customer_id, plan_code, expires_at, "
            "traffic_limit_bytes, traffic_reset, device_limit, squads, is_trial, enabled, "
            "auto_renew, created_at, updated_at) SELECT v.c, v.plan, "
            f"{now_p} + v.days * interval '1 day', v.traffic, v.reset, v.devices, v.squads, "
            f"false, true, false, {now_p}, {now_p} FROM "
            + _values(rows, "v(c, days, plan, traffic, reset, devices, squads)")
            + " WHERE EXISTS (SELECT 1 FROM p) ON CONFLICT (customer_id) DO UPDATE SET "
            f"expires_at = GREATEST(cur.expires_at, {now_p}) + (excluded.expires_at - {now_p}), "
            "plan_code = COALESCE(excluded.plan_code, cur.plan_code), "
            "traffic_limit_bytes = CASE WHEN excluded.plan_code IS NULL "
            "THEN cur.traffic_limit_bytes ELSE excluded.traffic_limit_bytes END, "
            "traffic_reset = CASE WHEN excluded.plan_code IS NULL "
            "THEN cur.traffic_reset ELSE excluded.traffic_reset END, "
            "device_limit = CASE WHEN excluded.plan_code IS NULL "
            "THEN cur.device_limit ELSE excluded.device_limit END, "
            "squads = CASE WHEN excluded.plan_code IS NULL "
            "THEN cur.squads ELSE excluded.squads END, "
            "is_trial = CASE WHEN excluded.plan_code IS NULL "
            "THEN cur.is_trial ELSE false END, "
            f"enabled = true, updated_at = {now_p} RETURNING id, customer_id)"
        )
        jobs.append(
            "SELECT 'apply_subscription', json_build_object('subscription_id', s.id), "
            "'apply:' || s.id || ':' || r.reason FROM s JOIN "
            + _values(reasons, "r(c, reason)")
            + " ON r.c = s.customer_id"
        )
    if effects.jobs:
        rows = [
            [
                q(j.kind, "varchar"),
                q(json.dumps(dict(j.payload)), "json"),
                q(j.dedupe_key, "varchar"),
            ]
            for j in effects.jobs
        ]
        jobs.append(
            "SELECT v.* FROM "
            + _values(rows, "v(kind, payload, key)")
            + " WHERE EXISTS (SELECT 1 FROM p)"
        )
    if jobs:
        due = q(now, "timestamptz")
        ctes.append(
            "j AS (INSERT INTO outbox (kind, payload, dedupe_key, status, attempts, due_at, "
            f"created_at) SELECT x.kind, x.payload, x.key, 'pending', 0, {due}, {due} FROM ("
            + " UNION ALL ".join(jobs)
            + ") AS x(kind, payload, key) ON CONFLICT (dedupe_key) DO NOTHING RETURNING 1)"
        )
    if effects.audit:
        rows = [
            [
                q(str(a.actor), "varchar"),
                q(a.action, "varchar"),
                q(a.subject, "varchar"),
                q(json.dumps(dict(a.details), default=str), "json"),
                q(a.at, "timestamptz"),
            ]
            for a in effects.audit
        ]
        ctes.append(
            "a AS (INSERT INTO audit_log (actor, action, subject, details, at) SELECT v.* FROM "
            + _values(rows, "v(actor, action, subject, details, at)")
            + " WHERE EXISTS (SELECT 1 FROM p) RETURNING 1)"
        )
    return "WITH " + ", ".join(ctes) + " SELECT * FROM p", q.values


async def settle(
    conn: AsyncConnection,
    payment_id: str,
    to: PaymentStatus,
    now: datetime,
    *,
    external_id: str | None,
    saved_method_id: str | None,
    effects: Effects,
) -> Payment | None:
    """Settle inside the caller's transaction (the unit of work's AtomicSettlement)."""
    built = statement(
        payment_id,
        to,
        now,
        external_id=external_id,
        saved_method_id=saved_method_id,
        effects=effects,
    )
    if built is None:
        return None
    sql, params = built
    try:  # no savepoint: a failed statement aborts the transaction, which the caller ends
        row = (await conn.exec_driver_sql(sql, tuple(params))).first()
    except IntegrityError as e:
        raise ConflictError(f"settling payment {payment_id} conflicts: {e.orig}") from e
    return _payment(row) if row is not None else None


# The one-statement confirmation (PostgreSQL). $1 payment id, $2 provider, $3 amount minor,
# $4 currency, $5 external id (or NULL), $6 saved method id (or NULL), $7 now, $8 actor,
# $9 referral reward minor (0: none), $10 reward as text, $11 audit details (json text).
CONFIRM_SQL = """
WITH p AS (
    UPDATE payments SET status = 'succeeded', updated_at = $7::timestamptz,
        external_id = COALESCE($5::varchar, payments.external_id),
        saved_method_id = COALESCE($6::varchar, payments.saved_method_id)
    FROM orders o
    WHERE {lookup}
      AND payments.status IN ('created', 'pending')
      AND payments.provider = $2::varchar
      AND payments.amount_minor = $3::bigint AND payments.currency = $4::varchar
      AND ($5::varchar IS NULL OR payments.external_id IS NULL
           OR payments.external_id = $5::varchar)
      AND o.id = payments.order_id AND o.promo_code IS NULL
    RETURNING payments.*, o.kind AS o_kind, o.days AS o_days, o.plan_code AS o_plan_code
),
r AS (
    SELECT referrals.referrer_id, p.id AS payment_id, p.currency
    FROM p JOIN referrals ON referrals.referee_id = p.customer_id
    WHERE $9::bigint > 0
),
l AS (
    INSERT INTO ledger (customer_id, amount_minor, currency, kind, idempotency_key, actor,
                        reference, created_at)
    SELECT p.customer_id, p.amount_minor, p.currency, 'topup', 'topup:' || p.id, $8::varchar,
           p.id, $7::timestamptz
    FROM p WHERE p.o_kind = 'topup'
    UNION ALL
    SELECT r.referrer_id, $9::bigint, r.currency, 'referral_reward', 'referral:' || r.payment_id,
           'system:referral', r.payment_id, $7::timestamptz
    FROM r
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING customer_id, currency, amount_minor
),
b AS (
    INSERT INTO balances (customer_id, currency, amount_minor)
    SELECT customer_id, currency, sum(amount_minor) FROM l GROUP BY customer_id, currency
    ON CONFLICT (customer_id, currency)
    DO UPDATE SET amount_minor = balances.amount_minor + excluded.amount_minor
    RETURNING 1
),
s AS (
    INSERT INTO subscriptions AS cur (customer_id, plan_code, expires_at, traffic_limit_bytes,
        traffic_reset, device_limit, squads, is_trial, enabled, auto_renew, created_at,
        updated_at)
    SELECT p.customer_id, plans.code, $7::timestamptz + p.o_days * interval '1 day',
           plans.traffic_limit_bytes, plans.traffic_reset, plans.device_limit, plans.squads,
           false, true, false, $7::timestamptz, $7::timestamptz
    FROM p JOIN plans ON plans.code = p.o_plan_code
    WHERE p.o_kind = 'plan'
    ON CONFLICT (customer_id) DO UPDATE SET
        expires_at = GREATEST(cur.expires_at, $7::timestamptz)
                     + (excluded.expires_at - $7::timestamptz),
        plan_code = excluded.plan_code,
        traffic_limit_bytes = excluded.traffic_limit_bytes,
        traffic_reset = excluded.traffic_reset,
        device_limit = excluded.device_limit,
        squads = excluded.squads,
        is_trial = false, enabled = true, updated_at = $7::timestamptz
    RETURNING id
),
j AS (
    INSERT INTO outbox (kind, payload, dedupe_key, status, attempts, due_at, created_at)
    SELECT x.kind, x.payload, x.key, 'pending', 0, $7::timestamptz, $7::timestamptz FROM (
        SELECT 'notify_customer' AS kind,
               json_build_object('customer_id', p.customer_id, 'template', 'payment_received',
                                 'payment_id', p.id) AS payload,
               'notify:paid:' || p.id AS key
        FROM p
        UNION ALL
        SELECT 'apply_subscription', json_build_object('subscription_id', s.id),
               'apply:' || s.id || ':payment:' || p.id
        FROM s, p
        UNION ALL
        SELECT 'notify_customer',
               json_build_object('customer_id', r.referrer_id, 'template', 'referral_reward',
                                 'amount', $10::varchar),
               'notify:referral:' || r.payment_id
        FROM r
    ) AS x
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING 1
),
a AS (
    INSERT INTO audit_log (actor, action, subject, details, at)
    SELECT $8::varchar, 'payment.succeeded', 'payment:' || p.id, $11::json, $7::timestamptz
    FROM p
    RETURNING 1
)
SELECT * FROM p
"""

_BY_ID = "payments.id = $1::varchar"
_BY_EXTERNAL_ID = "$1::varchar IS NULL AND payments.external_id = $5::varchar"


class PgPaymentSettler:
    """The PaymentSettler fast path on PostgreSQL: the common confirmation in one
    statement, sent to asyncpg on a small pool of its own, outside any explicit
    transaction; asyncpg keeps it prepared. This is the hot path of every payment webhook
    (bench/bench_webhooks.py): each round trip through SQLAlchemy's pool and execution
    layer cost about as much CPU here as the database spent on the statement."""

    def __init__(self, engine: AsyncEngine, *, pool_size: int = 10) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("PgPaymentSettler needs PostgreSQL")
        url = engine.url.set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    try:
                        self._pool = await asyncpg.create_pool(
                            self._dsn, min_size=1, max_size=self._pool_size
                        )
                    except (OSError, asyncpg.PostgresError) as e:
                        raise StorageUnavailableError(f"database unavailable: {e}") from e
        return self._pool

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def confirm(self, confirmation: Confirmation, now: datetime) -> Payment | None:
        c = confirmation
        if c.payment_id is None and c.external_id is None:
            return None
        reward = c.amount.percent(c.referral_reward_percent)
        details = json.dumps({"amount": str(c.amount), "external_id": c.external_id})
        sql = CONFIRM_SQL.format(lookup=_BY_ID if c.payment_id is not None else _BY_EXTERNAL_ID)
        pool = await self._connections()
        try:
            record = await pool.fetchrow(
                sql,
                c.payment_id,
                c.provider,
                c.amount.minor,
                c.amount.currency.code,
                c.external_id,
                c.saved_method_id,
                now,
                str(c.actor),
                reward.minor,
                str(reward),
                details,
            )
        except asyncpg.IntegrityConstraintViolationError as e:
            raise ConflictError(f"confirming payment {c.payment_id} conflicts: {e}") from e
        except (OSError, asyncpg.ConnectionDoesNotExistError, asyncpg.CannotConnectNowError) as e:
            raise StorageUnavailableError(f"database unavailable: {e}") from e
        return None if record is None else _payment(_DriverRow(record))


class _DriverRow:
    """An asyncpg record read like a SQLAlchemy row (attribute access)."""

    def __init__(self, record: Any) -> None:
        self._mapping = dict(record.items())

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


if TYPE_CHECKING:
    from vpnshop.ports.settlement import PaymentSettler

    def _check(engine: AsyncEngine) -> PaymentSettler:
        return PgPaymentSettler(engine)
