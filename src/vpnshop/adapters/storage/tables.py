"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; this module is
what the repositories query and what ``alembic check`` compares migrations against."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on SQLite (which stores text without
    an offset) as on PostgreSQL (timestamptz). A naive datetime is refused: every time in
    vpnshop comes from the Clock port and is aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use the Clock port")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite rowid aliases need INTEGER

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("telegram_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("username", sa.String(64)),
    sa.Column("referrer_id", BigId, sa.ForeignKey("customers.id")),
    sa.Column("campaign", sa.String(64)),
    sa.Column("banned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deleted_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("referral_code", sa.String(32)),
    sa.Column("unreachable", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("discount_code", sa.String(32)),
    sa.Index("uq_customers_referral_code", "referral_code", unique=True),
)

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("names", sa.JSON, nullable=False),
    sa.Column("duration_days", sa.Integer, nullable=False),
    sa.Column("prices", sa.JSON, nullable=False),  # {"RUB": 19900, "XTR": 150}
    sa.Column("traffic_limit_bytes", sa.BigInteger, nullable=False),
    sa.Column("traffic_reset", sa.String(16), nullable=False),
    sa.Column("device_limit", sa.Integer),
    sa.Column("squads", sa.JSON, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("sort_order", sa.Integer, nullable=False),
    sa.CheckConstraint("duration_days > 0", name="duration_positive"),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # One subscription per customer: buying extends it, so "extend or create" is a single
    # atomic upsert on this key.
    sa.Column("customer_id", BigId, sa.ForeignKey("customers.id"), nullable=False, unique=True),
    sa.Column("plan_code", sa.String(32), sa.ForeignKey("plans.code")),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
    sa.Column("traffic_limit_bytes", sa.BigInteger, nullable=False),
    sa.Column("traffic_reset", sa.String(16), nullable=False),
    sa.Column("device_limit", sa.Integer),
    sa.Column("squads", sa.JSON, nullable=False),
    sa.Column("is_trial", sa.Boolean, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("auto_renew", sa.Boolean, nullable=False),
    sa.Column("panel_key", sa.String(64)),
    sa.Column("panel_username", sa.String(36), unique=True),
    sa.Column("subscription_url", sa.String(512)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

trials = sa.Table(  # one row per customer ever: the primary key is the "one trial" rule
    "trials",
    metadata,
    sa.Column("customer_id", BigId, sa.ForeignKey("customers.id"), primary_key=True),
    sa.Column("claimed_at", UtcDateTime, nullable=False),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("customer_id", BigId, sa.ForeignKey("customers.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("list_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("plan_code", sa.String(32), sa.ForeignKey("plans.code")),
    sa.Column("days", sa.Integer, nullable=False),
    sa.Column("promo_code", sa.String(32)),
    sa.Column("discount_percent", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
    sa.Index("ix_orders_created_at", "created_at"),  # the abandoned-order cleanup (0005)
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("customer_id", BigId, sa.ForeignKey("customers.id"), nullable=False, index=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("external_id", sa.String(128)),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("confirmation_url", sa.String(1024)),
    sa.Column("refunded_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("saved_method_id", sa.String(128)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("provider", "external_id", name="uq_payments_provider_external_id"),
    sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
    sa.CheckConstraint(
        "refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refund_within_amount"
    ),
    sa.Index("ix_payments_status_created_at", "status", "created_at"),
)

balances = sa.Table(
    "balances",
    metadata,
    sa.Column("customer_id", BigId, sa.ForeignKey("customers.id"), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.CheckConstraint("amount_minor >= 0", name="never_negative"),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("customer_id", BigId, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
    sa.Column("actor", sa.String(80), nullable=False),
    sa.Column("reference", sa.String(80)),
    sa.Column("memo", sa.String(500)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("amount_minor <> 0", name="nonzero"),
    sa.Index("ix_ledger_customer_id_id", "customer_id", "id"),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("customer_id", BigId, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_holds_order_id", "order_id"),  # (0005)
)

promo_codes = sa.Table(
    "promo_codes",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.Integer, nullable=False),
    sa.Column("currency", sa.String(3)),
    sa.Column("max_uses", sa.Integer),
    sa.Column("uses", sa.Integer, nullable=False, server_default="0"),
    sa.Column("once_per_customer", sa.Boolean, nullable=False),
    sa.Column("valid_until", UtcDateTime),
    sa.Column("min_amount_minor", sa.BigInteger),
    sa.Column("min_amount_currency", sa.String(3)),
    sa.Column("plan_codes", sa.JSON, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("max_uses IS NULL OR uses <= max_uses", name="uses_within_max"),
)

promo_redemptions = sa.Table(
    "promo_redemptions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("code", sa.String(32), sa.ForeignKey("promo_codes.code"), nullable=False),
    sa.Column("customer_id", BigId, sa.ForeignKey("customers.id"), nullable=False),
    # NULL for codes usable many times by one customer; the code itself for once-only ones,
    # so that UNIQUE(code, customer_id, once_key) admits one redemption of those.
    sa.Column("once_key", sa.String(32)),
    sa.Column("order_id", sa.String(40)),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("code", "customer_id", "once_key", name="uq_promo_redemptions_once"),
)

referrals = sa.Table(
    "referrals",
    metadata,
    sa.Column("referee_id", BigId, sa.ForeignKey("customers.id"), primary_key=True),
    sa.Column("referrer_id", BigId, sa.ForeignKey("customers.id"), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("bonus_granted_at", UtcDateTime),  # set once: the first-payment bonus days
    sa.CheckConstraint("referee_id <> referrer_id", name="not_self"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("actor", sa.String(80), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False, index=True),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False, index=True),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("locked_until", UtcDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_outbox_status_due_at", "status", "due_at"),
)

scheduler_leases = sa.Table(  # one row per singleton periodic job (migration 0005)
    "scheduler_leases",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("holder", sa.String(80)),
    sa.Column("locked_until", UtcDateTime),
    sa.Column("last_run_at", UtcDateTime),
)

panel_users = sa.Table(  # the cached view of each subscription's panel user (webhooks)
    "panel_users",
    metadata,
    sa.Column("subscription_id", BigId, sa.ForeignKey("subscriptions.id"), primary_key=True),
    sa.Column("panel_key", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("used_traffic_bytes", sa.BigInteger, nullable=False),
    sa.Column("lifetime_used_traffic_bytes", sa.BigInteger, nullable=False),
    sa.Column("traffic_limit_bytes", sa.BigInteger, nullable=False),
    sa.Column("online_at", UtcDateTime),
    sa.Column("first_connected_at", UtcDateTime),
    sa.Column("devices", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_event", sa.String(64)),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

job_cursors = sa.Table(  # where each due-scan stopped (reminders, renewals)
    "job_cursors",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("subscription_id", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

broadcasts = sa.Table(
    "broadcasts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("segment", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime),
)

broadcast_recipients = sa.Table(  # one row per recipient: the broadcast's progress
    "broadcast_recipients",
    metadata,
    sa.Column("broadcast_id", BigId, sa.ForeignKey("broadcasts.id"), primary_key=True),
    sa.Column("customer_id", BigId, sa.ForeignKey("customers.id"), primary_key=True),
    sa.Column("telegram_id", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.String(200)),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index(
        "ix_broadcast_recipients_broadcast_id_status", "broadcast_id", "status", "customer_id"
    ),
)
