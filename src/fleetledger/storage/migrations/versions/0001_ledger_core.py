"""ledger core: events, rollups, price overrides, meta

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=True),
        sa.Column("department", sa.String(length=256), nullable=True),
        sa.Column("cost_center", sa.String(length=256), nullable=True),
        sa.Column("project", sa.String(length=256), nullable=True),
        sa.Column("team", sa.String(length=256), nullable=True),
        sa.Column("user", sa.String(length=256), nullable=True),
        sa.Column("agent", sa.String(length=256), nullable=True),
        sa.Column("task", sa.String(length=256), nullable=True),
        sa.Column("environment", sa.String(length=256), nullable=True),
        sa.Column("version", sa.String(length=256), nullable=True),
        sa.Column("operation", sa.String(length=256), nullable=True),
        sa.Column("session_id", sa.String(length=256), nullable=True),
        sa.Column("service_tier", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.JSON(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("request_id", sa.String(length=256), nullable=True),
        sa.Column("trace_id", sa.String(length=256), nullable=True),
        sa.Column("span_id", sa.String(length=256), nullable=True),
        sa.Column("prompt_hash", sa.String(length=256), nullable=True),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=False),
        sa.Column("cost_input_nanos", sa.BigInteger(), nullable=False),
        sa.Column("cost_cache_read_nanos", sa.BigInteger(), nullable=False),
        sa.Column("cost_cache_write_nanos", sa.BigInteger(), nullable=False),
        sa.Column("cost_output_nanos", sa.BigInteger(), nullable=False),
        sa.Column("cost_other_nanos", sa.BigInteger(), nullable=False),
        sa.Column("cost_components", sa.JSON(), nullable=True),
        sa.Column("priced", sa.Boolean(), nullable=False),
        sa.Column("price_source", sa.String(length=32), nullable=False),
        sa.Column("price_version", sa.String(length=256), nullable=False),
        sa.Column("catalog_model", sa.String(length=256), nullable=True),
        sa.Column("unpriced_reason", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=256), nullable=True),
        sa.Column("ingested_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_agent_ts_us"), ["agent", "ts_us"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_session_id"), ["session_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_ts_us"), ["ts_us"], unique=False)

    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )
    op.create_table(
        "price_overrides",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=256), nullable=True),
        sa.Column("model_pattern", sa.String(length=256), nullable=False),
        sa.Column("match", sa.String(length=8), nullable=False),
        sa.Column("service_tier", sa.String(length=16), nullable=True),
        sa.Column("effective_from_us", sa.BigInteger(), nullable=True),
        sa.Column("effective_to_us", sa.BigInteger(), nullable=True),
        sa.Column("prices", sa.JSON(), nullable=True),
        sa.Column("discount_percent", sa.String(length=32), nullable=True),
        sa.Column("multiplier", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_overrides")),
    )
    op.create_table(
        "rollup_daily",
        sa.Column("bucket_us", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=256), server_default="", nullable=False),
        sa.Column("model", sa.String(length=256), server_default="", nullable=False),
        sa.Column("department", sa.String(length=256), server_default="", nullable=False),
        sa.Column("cost_center", sa.String(length=256), server_default="", nullable=False),
        sa.Column("project", sa.String(length=256), server_default="", nullable=False),
        sa.Column("team", sa.String(length=256), server_default="", nullable=False),
        sa.Column("agent", sa.String(length=256), server_default="", nullable=False),
        sa.Column("environment", sa.String(length=256), server_default="", nullable=False),
        sa.Column("version", sa.String(length=256), server_default="", nullable=False),
        sa.Column("operation", sa.String(length=256), server_default="", nullable=False),
        sa.Column("service_tier", sa.String(length=256), server_default="", nullable=False),
        sa.Column("category", sa.String(length=256), server_default="", nullable=False),
        sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("errors", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("unpriced", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_input_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_cache_read_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_cache_write_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_output_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_other_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("latency_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), server_default="0", nullable=False),
        sa.UniqueConstraint(
            "bucket_us",
            "provider",
            "model",
            "department",
            "cost_center",
            "project",
            "team",
            "agent",
            "environment",
            "version",
            "operation",
            "service_tier",
            "category",
            name="uq_rollup_daily_key",
        ),
    )
    op.create_table(
        "rollup_hourly",
        sa.Column("bucket_us", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=256), server_default="", nullable=False),
        sa.Column("model", sa.String(length=256), server_default="", nullable=False),
        sa.Column("department", sa.String(length=256), server_default="", nullable=False),
        sa.Column("cost_center", sa.String(length=256), server_default="", nullable=False),
        sa.Column("project", sa.String(length=256), server_default="", nullable=False),
        sa.Column("team", sa.String(length=256), server_default="", nullable=False),
        sa.Column("agent", sa.String(length=256), server_default="", nullable=False),
        sa.Column("environment", sa.String(length=256), server_default="", nullable=False),
        sa.Column("version", sa.String(length=256), server_default="", nullable=False),
        sa.Column("operation", sa.String(length=256), server_default="", nullable=False),
        sa.Column("service_tier", sa.String(length=256), server_default="", nullable=False),
        sa.Column("category", sa.String(length=256), server_default="", nullable=False),
        sa.Column("requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("errors", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("unpriced", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_input_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_cache_read_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_cache_write_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_output_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_other_nanos", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("latency_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), server_default="0", nullable=False),
        sa.UniqueConstraint(
            "bucket_us",
            "provider",
            "model",
            "department",
            "cost_center",
            "project",
            "team",
            "agent",
            "environment",
            "version",
            "operation",
            "service_tier",
            "category",
            name="uq_rollup_hourly_key",
        ),
    )


def downgrade() -> None:

    op.drop_table("rollup_hourly")
    op.drop_table("rollup_daily")
    op.drop_table("price_overrides")
    op.drop_table("meta")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_ts_us"))
        batch_op.drop_index(batch_op.f("ix_events_session_id"))
        batch_op.drop_index(batch_op.f("ix_events_request_id"))
        batch_op.drop_index(batch_op.f("ix_events_agent_ts_us"))

    op.drop_table("events")
