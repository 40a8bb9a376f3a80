"""panel users: the cached view of each subscription's panel user

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 18:00:49.516305
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "panel_users",
        sa.Column(
            "subscription_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("panel_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("used_traffic_bytes", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_used_traffic_bytes", sa.BigInteger(), nullable=False),
        sa.Column("traffic_limit_bytes", sa.BigInteger(), nullable=False),
        sa.Column("online_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("devices", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_event", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_panel_users_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_panel_users")),
    )
    with op.batch_alter_table("panel_users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_panel_users_panel_key"), ["panel_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("panel_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_panel_users_panel_key"))
    op.drop_table("panel_users")
