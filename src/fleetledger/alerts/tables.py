"""The alert tables, on the shared schema ``metadata`` (migration ``0002_alerts``).

Why a table per concept: channels and rules are configuration people edit; ``alerts`` is the
append-only history of what fired (kept when a rule is deleted); ``alert_outbox`` is the durable
delivery queue, one row per alert and channel, so a crash or a receiver that is down never loses or
repeats a notification. Times are microseconds since the epoch (``*_us``), as everywhere else.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

from fleetledger.storage.schema import metadata

__all__ = ["alert_channels", "alert_rules", "alerts", "alert_outbox"]

# SQLite only aliases the rowid for a column declared exactly INTEGER PRIMARY KEY.
_Id = BigInteger().with_variant(Integer(), "sqlite")

alert_channels = Table(
    "alert_channels",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    # Secrets that must not sit in the database are referenced by env var name (password_env).
    Column("config", JSON, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("name"),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("scope", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("channels", JSON, nullable=False),
    Column("cooldown_s", BigInteger, nullable=False, server_default="86400"),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("name"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column(
        "rule_id",
        BigInteger,
        ForeignKey("alert_rules.id", name="fk_alerts_rule_id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("dedup_key", String(512), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSON),
    Column("fired_us", BigInteger, nullable=False),
    # Cooldown lookups: the newest alert with a dedup key.
    Index(None, "dedup_key", "fired_us"),
    Index(None, "fired_us"),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column(
        "alert_id",
        BigInteger,
        ForeignKey("alerts.id", name="fk_alert_outbox_alert_id", ondelete="CASCADE"),
        nullable=False,
    ),
    # No foreign key: a channel may be deleted while its delivery history is kept.
    Column("channel_id", BigInteger, nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("lease_until_us", BigInteger),
    Column("last_error", Text),
    Column("delivered_us", BigInteger),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("idempotency_key"),
    # The due-delivery query: status = 'pending' AND next_attempt_us <= now.
    Index(None, "status", "next_attempt_us"),
    Index(None, "alert_id"),
)
