"""alerts: channels, rules, fired-alert history and the delivery outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_channels",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_channels"),
        sa.UniqueConstraint("name", name="uq_alert_channels_name"),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("cooldown_s", sa.BigInteger(), server_default="86400", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.UniqueConstraint("name", name="uq_alert_rules_name"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.BigInteger(), nullable=True),
        sa.Column("dedup_key", sa.String(length=512), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("fired_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["rule_id"], ["alert_rules.id"], name="fk_alerts_rule_id", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_dedup_key_fired_us", "alerts", ["dedup_key", "fired_us"], unique=False)
    op.create_index("ix_alerts_fired_us", "alerts", ["fired_us"], unique=False)
    op.create_table(
        "alert_outbox",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_us", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_us", sa.BigInteger(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_alert_outbox_alert_id", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_outbox"),
        sa.UniqueConstraint("idempotency_key", name="uq_alert_outbox_idempotency_key"),
    )
    op.create_index(
        "ix_alert_outbox_status_next_attempt_us", "alert_outbox", ["status", "next_attempt_us"], unique=False
    )
    op.create_index("ix_alert_outbox_alert_id", "alert_outbox", ["alert_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alert_outbox_alert_id", table_name="alert_outbox")
    op.drop_index("ix_alert_outbox_status_next_attempt_us", table_name="alert_outbox")
    op.drop_table("alert_outbox")
    op.drop_index("ix_alerts_fired_us", table_name="alerts")
    op.drop_index("ix_alerts_dedup_key_fired_us", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
    op.drop_table("alert_channels")
