"""Tables for budgets, their live counters, reservations, change history, approvals and the audit log.

``budget_usage`` is what makes enforcement fast: one row per budget and period (per hour for
rolling budgets) holding spent and reserved nano-USD, kept current in the same transaction as the
events and reservations that change it. A reservation check reads a handful of rows instead of
summing events.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from fleetledger.storage.schema import metadata

__all__ = [
    "budgets",
    "budget_usage",
    "budget_daily",
    "budget_rate",
    "reservations",
    "budget_changes",
    "approvals",
    "audit_log",
    "token_ratios",
]

_Id = BigInteger().with_variant(Integer(), "sqlite")

budgets = Table(
    "budgets",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("scope", JSON, nullable=False),
    Column("period", String(16), nullable=False),
    Column("window_days", Integer),
    Column("starts_us", BigInteger),
    Column("ends_us", BigInteger),
    Column("timezone", String(64), nullable=False),
    Column("amount", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("limit_nanos", BigInteger, nullable=False),
    Column("warning_pct", String(16), nullable=False),
    Column("critical_pct", String(16), nullable=False),
    Column("action", String(16), nullable=False),
    Column("downgrade_model", String(256)),
    Column("throttle_rpm", Integer),
    Column("fail_mode", String(8), nullable=False),
    Column("parent_id", BigInteger),
    Column("active", Boolean, nullable=False),
    Column("created_by", String(256)),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

budget_usage = Table(
    "budget_usage",
    metadata,
    Column("budget_id", BigInteger, nullable=False),
    Column("bucket_us", BigInteger, nullable=False),
    Column("spent_nanos", BigInteger, nullable=False, server_default="0"),
    Column("reserved_nanos", BigInteger, nullable=False, server_default="0"),
    Column("requests", BigInteger, nullable=False, server_default="0"),
    Column("level", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("budget_id", "bucket_us", name="pk_budget_usage"),
)

#: Spend per budget and UTC day, kept at ingest: the 7-day burn rate of every budget is one query.
budget_daily = Table(
    "budget_daily",
    metadata,
    Column("budget_id", BigInteger, nullable=False),
    Column("day_us", BigInteger, nullable=False),
    Column("spent_nanos", BigInteger, nullable=False, server_default="0"),
    Column("requests", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("budget_id", "day_us", name="pk_budget_daily"),
)

budget_rate = Table(
    "budget_rate",
    metadata,
    Column("budget_id", BigInteger, nullable=False),
    Column("minute_us", BigInteger, nullable=False),
    Column("requests", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("budget_id", "minute_us", name="pk_budget_rate"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("status", String(12), nullable=False),
    Column("holds", JSON, nullable=False),  # [[budget_id, bucket_us], ...]
    Column("dims", JSON, nullable=False),
    Column("model", String(256)),
    Column("prompt_chars", BigInteger),
    Column("committed_nanos", BigInteger),
    Column("event_id", String(128)),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("closed_us", BigInteger),
    Index("ix_reservations_status_expires", "status", "expires_us"),
)

budget_changes = Table(
    "budget_changes",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("budget_id", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("old_amount", String(40)),
    Column("new_amount", String(40)),
    Column("justification", Text),
    Column("actor", String(256)),
    Column("approval_id", BigInteger),
    Column("at_us", BigInteger, nullable=False),
    Index("ix_budget_changes_budget", "budget_id", "at_us"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("budget_id", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # increase | overage
    Column("requested_amount", String(40), nullable=False),
    Column("justification", Text, nullable=False),
    Column("requested_by", String(256)),
    Column("requested_us", BigInteger, nullable=False),
    Column("status", String(12), nullable=False),  # pending | approved | declined
    Column("approved_amount", String(40)),
    Column("deadline_us", BigInteger),
    Column("decided_by", String(256)),
    Column("decided_us", BigInteger),
    Column("decision_note", Text),
    Index("ix_approvals_budget_status", "budget_id", "status"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(256)),
    Column("action", String(64), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("entity_id", String(128)),
    Column("detail", JSON),
    Index("ix_audit_log_at", "at_us"),
)

token_ratios = Table(
    "token_ratios",
    metadata,
    Column("model", String(256), primary_key=True),
    Column("chars", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
)
