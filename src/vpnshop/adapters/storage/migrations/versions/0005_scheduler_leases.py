"""scheduler: lease rows of singleton periodic jobs; indexes for the order cleanup

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 14:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("holder", sa.String(80)),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("last_run_at", sa.DateTime(timezone=True)),
    )
    # The abandoned-order cleanup looks orders up by age and by what refers to them.
    op.create_index("ix_orders_created_at", "orders", ["created_at"])
    op.create_index("ix_holds_order_id", "holds", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_holds_order_id", table_name="holds")
    op.drop_index("ix_orders_created_at", table_name="orders")
    op.drop_table("scheduler_leases")
