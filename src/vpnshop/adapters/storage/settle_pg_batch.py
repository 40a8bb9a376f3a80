# ruff: noqa: S608
# (every value is a bind parameter; only fixed SQL and the domain's constants are
# formatted in, once, when the module is imported)
"""Confirming payments in batches on PostgreSQL: one statement for every confirmation
that arrives together (:class:`PgPaymentSettler`, a group commit).

The statement renders the domain's settlement rules (``vpnshop.domain.settlement``):
every key, job and credit in it is built from those rules when this module is imported,
with each :class:`~vpnshop.domain.settlement.Ref` replaced by the column that holds it,
and the per-confirmation values that Python decides (actor, referral reward, audit
details) arrive as its arrays. So the statement stays one constant, prepared once per
connection, and leaves the same rows as ``settle_stepwise``
(tests/integration/test_settlement_backends.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import asyncpg
import attrs
from sqlalchemy.ext.asyncio import AsyncEngine

from vpnshop.adapters.storage.group_commit import GroupCommit
from vpnshop.adapters.storage.repositories import _payment
from vpnshop.adapters.storage.settle_pg import sql_job, sql_key, sql_text
from vpnshop.domain.errors import ConflictError
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
    JobRule,
    Ref,
)
from vpnshop.ports.settlement import Confirmation
from vpnshop.ports.storage import StorageUnavailableError


def _job_sql(name: str, rule: JobRule, columns: Mapping[Ref, str]) -> dict[str, str]:
    kind, payload, key = sql_job(rule, columns)
    return {f"{name}_kind": kind, f"{name}_payload": payload, f"{name}_key": key}


# The confirmation of a batch of payments in one statement (PostgreSQL). Each parameter is
# an array with one element per confirmation: $1 payment id (or NULL: find it by the
# provider's id), $2 provider, $3 amount minor, $4 currency, $5 external id (or NULL),
# $6 saved method id (or NULL), $7 now, $8 actor, $9 referral reward minor (0: none),
# $10 reward as text, $11 audit details (json text). Row n of the result is the payment
# that confirmation n (1-based, ``v_n``) settled; a confirmation that settled nothing has
# no row. Every effect joins the payment row it belongs to, so a payment that was already
# settled (a duplicate, here or in a concurrent statement) changes nothing at all.
CONFIRM_BATCH_SQL = """
WITH v AS (
    SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::bigint[], $4::varchar[],
                         $5::varchar[], $6::varchar[], $7::timestamptz[], $8::varchar[],
                         $9::bigint[], $10::varchar[], $11::varchar[])
        WITH ORDINALITY AS v(pid, provider, amount, currency, ext, smid, at, actor,
                             reward, reward_text, details, n)
),
k AS (
    -- Each confirmation's payment id: ours, or the one the provider's id belongs to.
    SELECT v.*, COALESCE(v.pid, (SELECT x.id FROM payments x
                                 WHERE x.provider = v.provider AND x.external_id = v.ext))
                AS target
    FROM v
),
p AS (
    UPDATE payments SET status = 'succeeded', updated_at = v.at,
        external_id = COALESCE(v.ext, payments.external_id),
        saved_method_id = COALESCE(v.smid, payments.saved_method_id)
    FROM k AS v, orders o
    -- The primary key finds the rows: the ANY makes it an index condition, and the
    -- status test is a NOT IN, which no index serves, so that statistics that think few
    -- payments are open never make a scan of the open ones look cheaper.
    WHERE payments.id = ANY(ARRAY(SELECT target FROM k)) AND payments.id = v.target
      AND payments.status NOT IN ({not_open})
      AND payments.provider = v.provider
      AND payments.amount_minor = v.amount AND payments.currency = v.currency
      AND (v.ext IS NULL OR payments.external_id IS NULL OR payments.external_id = v.ext)
      AND o.id = payments.order_id AND o.promo_code IS NULL
    RETURNING payments.*, o.kind AS o_kind, o.days AS o_days, o.plan_code AS o_plan_code,
              v.n AS v_n, v.at AS v_at, v.actor AS v_actor, v.reward AS v_reward,
              v.reward_text AS v_reward_text, v.details AS v_details
),
r AS (
    SELECT referrals.referrer_id, p.id AS payment_id, p.currency, p.v_reward, p.v_reward_text,
           p.v_at
    FROM p JOIN referrals ON referrals.referee_id = p.customer_id
    WHERE p.v_reward > 0
),
l AS (
    INSERT INTO ledger (customer_id, amount_minor, currency, kind, idempotency_key, actor,
                        reference, created_at)
    SELECT p.customer_id, p.amount_minor, p.currency, {topup_kind}, {topup_key}, p.v_actor,
           p.id, p.v_at
    FROM p WHERE p.o_kind = {topup}
    UNION ALL
    SELECT r.referrer_id, r.v_reward, r.currency, {referral_kind},
           {referral_key}, {referral_actor}, r.payment_id, r.v_at
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
    -- The proposed row's updated_at is this confirmation's "now" and its expires_at is
    -- now + days, so an existing subscription is extended from GREATEST(expiry, now).
    INSERT INTO subscriptions AS cur (customer_id, plan_code, expires_at, traffic_limit_bytes,
        traffic_reset, device_limit, squads, is_trial, enabled, auto_renew, created_at,
        updated_at)
    SELECT p.customer_id, plans.code, p.v_at + p.o_days * interval '1 day',
           plans.traffic_limit_bytes, plans.traffic_reset, plans.device_limit, plans.squads,
           false, true, false, p.v_at, p.v_at
    FROM p JOIN plans ON plans.code = p.o_plan_code
    WHERE p.o_kind = {plan}
    ON CONFLICT (customer_id) DO UPDATE SET
        expires_at = GREATEST(cur.expires_at, excluded.updated_at)
                     + (excluded.expires_at - excluded.updated_at),
        plan_code = excluded.plan_code,
        traffic_limit_bytes = excluded.traffic_limit_bytes,
        traffic_reset = excluded.traffic_reset,
        device_limit = excluded.device_limit,
        squads = excluded.squads,
        is_trial = false, enabled = true, updated_at = excluded.updated_at
    RETURNING id, customer_id
),
j AS (
    INSERT INTO outbox (kind, payload, dedupe_key, status, attempts, due_at, created_at)
    SELECT x.kind, x.payload, x.key, 'pending', 0, x.at, x.at FROM (
        SELECT {paid_kind} AS kind, {paid_payload} AS payload, {paid_key} AS key, p.v_at AS at
        FROM p
        UNION ALL
        SELECT {apply_kind}, {apply_payload}, {apply_key}, p.v_at
        FROM s JOIN p ON p.customer_id = s.customer_id AND p.o_kind = {plan}
        UNION ALL
        SELECT {referral_notice_kind}, {referral_notice_payload}, {referral_notice_key}, r.v_at
        FROM r
    ) AS x
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING 1
),
a AS (
    INSERT INTO audit_log (actor, action, subject, details, at)
    SELECT p.v_actor, {succeeded}, {subject}, p.v_details::json, p.v_at
    FROM p
    RETURNING 1
)
-- What the caller reads back: the payment, and which confirmation settled it.
SELECT p.id, p.order_id, p.customer_id, p.provider, p.external_id, p.amount_minor, p.currency,
       p.status, p.confirmation_url, p.refunded_minor, p.saved_method_id, p.created_at,
       p.updated_at, p.v_n
FROM p
""".format(
    not_open=", ".join(
        sql_text(s.value) for s in PaymentStatus if s not in sources_of(PaymentStatus.SUCCEEDED)
    ),
    plan=sql_text(OrderKind.PLAN),
    topup=sql_text(OrderKind.TOPUP),
    topup_kind=sql_text(TOPUP_CREDIT.kind),
    topup_key=sql_key(TOPUP_CREDIT.key, {Ref.PAYMENT: "p.id"}),
    referral_kind=sql_text(REFERRAL_CREDIT.kind),
    referral_key=sql_key(REFERRAL_CREDIT.key, {Ref.PAYMENT: "r.payment_id"}),
    referral_actor=sql_text(str(REFERRAL_ACTOR)),
    **_job_sql("paid", PAID_NOTICE, {Ref.CUSTOMER: "p.customer_id", Ref.PAYMENT: "p.id"}),
    **_job_sql(
        "apply",
        APPLY,
        {
            Ref.SUBSCRIPTION: "s.id",
            Ref.REASON: "(" + sql_key(PURCHASE_REASON, {Ref.PAYMENT: "p.id"}) + ")",
        },
    ),
    **_job_sql(
        "referral_notice",
        REFERRAL_NOTICE,
        {Ref.REFERRER: "r.referrer_id", Ref.REWARD: "r.v_reward_text", Ref.PAYMENT: "r.payment_id"},
    ),
    succeeded=sql_text(SUCCEEDED_ACTION),
    subject=sql_key(AUDIT_SUBJECT, {Ref.PAYMENT: "p.id"}),
)


# The settler's connections run CONFIRM_BATCH_SQL and nothing else.
SETTLER_SESSION = {
    # Left to choose, PostgreSQL re-plans the statement on every call (a generic plan for
    # arrays of unknown length looks dearer than one for the actual length): 0.9 ms of
    # its CPU each time.
    "plan_cache_mode": "force_generic_plan",
    # Every row the statement touches is found by a key. A plan made while a table is
    # small (a new shop; before autovacuum's next ANALYZE) would otherwise scan it
    # whole, and keep doing so for each batch as the table grows: measured at several
    # ms a batch with a few thousand payments.
    "enable_seqscan": "off",
}


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """The settler only runs single autocommit statements, which leave no session state,
    so a connection goes back to the pool as it is (asyncpg's default reset costs a round
    trip and four statements per release)."""


@attrs.frozen
class _Item:
    confirmation: Confirmation
    now: datetime


class PgPaymentSettler:
    """The PaymentSettler fast path on PostgreSQL: confirmations that arrive together are
    settled together, in one statement (a :class:`GroupCommit`).

    The first confirmation is sent at once; those that arrive while statements are
    running go together in the next one, so a busy server pays one round trip, one plan
    execution and one commit for many payments instead of one each: on this 2-core
    machine, this is what lets the webhook server confirm more than 1,000 payments a
    second (bench/bench_webhooks.py).

    A statement is atomic, and every effect in it hangs off its own payment's
    conditional UPDATE, so a batch settles each payment exactly once whatever else is in
    it. When a batch fails as a whole (a constraint one confirmation broke, two plan
    purchases of one customer, a deadlock with a concurrent batch), nothing of it was
    applied, and each confirmation is retried alone, so one bad confirmation fails only
    itself. asyncpg keeps the statement prepared per connection, on a small pool of its
    own, outside SQLAlchemy (whose execution layer costs as much CPU per call as the
    database spends on the statement).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 64,
        max_inflight: int = 2,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("PgPaymentSettler needs PostgreSQL")
        url = engine.url.set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._pool_size = max_inflight + 1
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self.group: GroupCommit[_Item, Payment | None] = GroupCommit(
            self._execute,
            fatal=(StorageUnavailableError,),
            max_batch=max_batch,
            max_inflight=max_inflight,
            name="vpnshop-settle-pg",
        )

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    try:
                        self._pool = await asyncpg.create_pool(
                            self._dsn,
                            min_size=1,
                            max_size=self._pool_size,
                            reset=_no_reset,
                            server_settings=SETTLER_SESSION,
                        )
                    except (OSError, asyncpg.PostgresError) as e:
                        raise StorageUnavailableError(f"database unavailable: {e}") from e
        return self._pool

    async def aclose(self) -> None:
        """Wait for the statements under way, then close the connections."""
        await self.group.aclose()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def confirm(self, confirmation: Confirmation, now: datetime) -> Payment | None:
        c = confirmation
        if c.payment_id is None and c.external_id is None:
            return None
        return await self.group.submit(_Item(c, now))

    async def _execute(self, batch: list[_Item]) -> list[Payment | Exception | None]:
        columns: list[list[Any]] = [[] for _ in range(11)]
        for item in batch:
            c = item.confirmation
            reward = c.amount.percent(c.referral_reward_percent)
            row = (
                c.payment_id,
                c.provider,
                c.amount.minor,
                c.amount.currency.code,
                c.external_id,
                c.saved_method_id,
                item.now,
                str(c.actor),
                reward.minor,
                str(reward),
                json.dumps(c.audit_details),
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        pool = await self._connections()
        try:
            records = await pool.fetch(CONFIRM_BATCH_SQL, *columns)
        except (OSError, asyncpg.InterfaceError) as e:
            raise StorageUnavailableError(f"database unavailable: {e}") from e
        except asyncpg.PostgresError as e:
            _raise_translated(e, batch[0].confirmation if len(batch) == 1 else None)
        settled: list[Payment | Exception | None] = [None] * len(batch)
        for record in records:
            settled[record["v_n"] - 1] = _payment(_DriverRow(record))
        return settled


def _is_unavailable(e: asyncpg.PostgresError) -> bool:
    """The server is going away or refuses connections: retrying statement by statement
    would only fail again."""
    return isinstance(
        e,
        (
            asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
            asyncpg.CrashShutdownError,
            asyncpg.TooManyConnectionsError,
        ),
    )


def _translated(e: asyncpg.PostgresError, c: Confirmation | None) -> Exception:
    """What the port promises: StorageUnavailableError when the database is away,
    ConflictError for a broken constraint; anything else as the driver raised it."""
    if _is_unavailable(e):
        return StorageUnavailableError(f"database unavailable: {e}")
    if isinstance(e, asyncpg.IntegrityConstraintViolationError):
        what = (
            "a batch of payments"
            if c is None
            else f"payment {c.payment_id or f'{c.provider}:{c.external_id}'}"
        )
        return ConflictError(f"confirming {what} conflicts: {e}")
    original: Exception = e
    return original


def _raise_translated(e: asyncpg.PostgresError, c: Confirmation | None) -> NoReturn:
    translated = _translated(e, c)
    if translated is e:
        raise e
    raise translated from e


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
