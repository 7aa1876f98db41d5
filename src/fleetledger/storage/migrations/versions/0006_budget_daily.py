"""budget daily spend counters (burn rates in one query)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

Existing budgets start with no daily history; their burn rate fills in as spend arrives.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_daily",
        sa.Column("budget_id", sa.BigInteger(), nullable=False),
        sa.Column("day_us", sa.BigInteger(), nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("budget_id", "day_us", name="pk_budget_daily"),
    )


def downgrade() -> None:
    op.drop_table("budget_daily")
