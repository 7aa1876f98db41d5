"""reconciliation: provider usage and cost lines

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29

Starts empty; ``fleetledger reconcile import`` fills it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "provider_lines",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("line_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("day_us", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("project_id", sa.String(256), nullable=True),
        sa.Column("api_key_id", sa.String(256), nullable=True),
        sa.Column("workspace_id", sa.String(256), nullable=True),
        sa.Column("service_tier", sa.String(32), nullable=True),
        sa.Column("token_type", sa.String(32), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("web_search_requests", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=True),
        sa.Column("has_usage", sa.Integer(), nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=True),
        sa.Column("amount_text", sa.String(64), nullable=True),
        sa.Column("source", sa.String(256), nullable=True),
        sa.Column("location", sa.String(512), nullable=False),
        sa.Column("imported_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provider_lines"),
        sa.UniqueConstraint("line_key", name="uq_provider_lines_key"),
    )
    op.create_index("ix_provider_lines_day", "provider_lines", ["day_us", "provider"])


def downgrade() -> None:
    op.drop_index("ix_provider_lines_day", table_name="provider_lines")
    op.drop_table("provider_lines")
