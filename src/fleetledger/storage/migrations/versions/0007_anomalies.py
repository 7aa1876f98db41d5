"""anomalies: detected cost anomalies with root causes and review status

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Starts empty; ``fleetledger anomalies scan`` fills it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "anomalies",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("granularity", sa.String(8), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("department", sa.String(256), nullable=True),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("expected_nanos", sa.BigInteger(), nullable=False),
        sa.Column("actual_nanos", sa.BigInteger(), nullable=False),
        sa.Column("impact_nanos", sa.BigInteger(), nullable=False),
        sa.Column("causes", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("detected_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_anomalies"),
        sa.UniqueConstraint("fingerprint", name="uq_anomalies_fp"),
    )
    op.create_index("ix_anomalies_start", "anomalies", ["start_us"])


def downgrade() -> None:
    op.drop_index("ix_anomalies_start", table_name="anomalies")
    op.drop_table("anomalies")
