"""customer journeys: referral code, unreachable flag, kept discount

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 14:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases (no table rebuild on SQLite: every other table
    # references customers).
    op.add_column("customers", sa.Column("referral_code", sa.String(32), nullable=True))
    op.add_column(
        "customers",
        sa.Column("unreachable", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("customers", sa.Column("discount_code", sa.String(32), nullable=True))
    op.create_index("uq_customers_referral_code", "customers", ["referral_code"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_customers_referral_code", table_name="customers")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("discount_code")
        batch_op.drop_column("unreachable")
        batch_op.drop_column("referral_code")
