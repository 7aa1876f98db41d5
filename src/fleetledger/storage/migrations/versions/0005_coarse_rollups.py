"""coarse rollups: hourly and daily sums by the organisational dimensions only

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

Existing ledgers are backfilled from the fine rollups, so queries are exact from the first start.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COARSE = ("provider", "model", "department", "cost_center", "environment", "service_tier", "category")
MEASURES = (
    "requests",
    "errors",
    "unpriced",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "cost_input_nanos",
    "cost_cache_read_nanos",
    "cost_cache_write_nanos",
    "cost_output_nanos",
    "cost_other_nanos",
    "latency_count",
)


def _create(name: str) -> None:
    op.create_table(
        name,
        sa.Column("bucket_us", sa.BigInteger(), nullable=False),
        *(sa.Column(d, sa.String(length=256), server_default="", nullable=False) for d in COARSE),
        *(sa.Column(m, sa.BigInteger(), server_default="0", nullable=False) for m in MEASURES),
        sa.Column("latency_ms_sum", sa.Float(), server_default="0", nullable=False),
        sa.UniqueConstraint("bucket_us", *COARSE, name=f"uq_{name}_key"),
    )


def upgrade() -> None:
    for fine, coarse in (("rollup_hourly", "rollup_hourly_coarse"), ("rollup_daily", "rollup_daily_coarse")):
        _create(coarse)
        dims = ", ".join(COARSE)
        sums = ", ".join(f"SUM({m})" for m in (*MEASURES, "latency_ms_sum"))
        op.execute(
            f"INSERT INTO {coarse} (bucket_us, {dims}, {', '.join((*MEASURES, 'latency_ms_sum'))}) "
            f"SELECT bucket_us, {dims}, {sums} FROM {fine} GROUP BY bucket_us, {dims}"
        )


def downgrade() -> None:
    op.drop_table("rollup_daily_coarse")
    op.drop_table("rollup_hourly_coarse")
