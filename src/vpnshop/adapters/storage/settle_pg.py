# ruff: noqa: S608
# (every value is a bind parameter; only placeholders, fixed SQL and the domain's
# constant key formats are formatted in)
"""Settling a payment in one PostgreSQL statement, in the caller's transaction (the unit
of work's ``AtomicSettlement``).

Data-modifying CTEs chained on the payment's conditional UPDATE: every insert reads from
it, so when the UPDATE finds the payment already settled (a concurrent or repeated
delivery) nothing else happens either. The statement applies the :class:`Effects` the
domain's settlement rules decided, exactly as
``vpnshop.services.settlement.settle_stepwise`` does (the storage contract, service and
settlement tests check it on PostgreSQL), in one round trip instead of a dozen. It serves
the general path of ConfirmPayment (balance purchases, provider-run subscriptions,
payments the batch settler of ``settle_pg_batch`` does not take): measured 2.5 times the
confirmations per second of the stepwise path there (bench/bench_atomic_settlement.py).

Concurrency: the subscription is an upsert on its one-per-customer key, so ON CONFLICT
locks the existing row and computes GREATEST(expires_at, now) + days from its newest
version; balances are upserts that add to the stored amount. Neither reads-then-writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from vpnshop.adapters.storage.repositories import _payment
from vpnshop.domain.errors import ConflictError
from vpnshop.domain.payment import Payment, PaymentStatus, sources_of
from vpnshop.domain.settlement import APPLY, Effects, JobRule, KeyFormat, Ref


def sql_text(value: str) -> str:
    """A constant as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_key(key: KeyFormat, columns: Mapping[Ref, str]) -> str:
    """The SQL expression that builds *key* in the database from the *columns* that hold
    its references: ``'topup:' || p.id``."""
    return " || ".join(
        f"{columns[part]}::text" if isinstance(part, Ref) else sql_text(part)
        for part in key.parts()
    )


def sql_job(rule: JobRule, columns: Mapping[Ref, str]) -> tuple[str, str, str]:
    """The kind, payload (``json_build_object``) and dedupe key of *rule*'s job, as SQL
    expressions over the *columns* that hold its references."""
    fields = ", ".join(
        f"{sql_text(field)}, {columns[v] if isinstance(v, Ref) else sql_text(v)}"
        for field, v in rule.payload
    )
    return sql_text(rule.kind), f"json_build_object({fields})", sql_key(rule.key, columns)


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
        kind, payload, key = sql_job(APPLY, {Ref.SUBSCRIPTION: "s.id", Ref.REASON: "r.reason"})
        jobs.append(
            f"SELECT {kind}, {payload}, {key} FROM s JOIN "
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
