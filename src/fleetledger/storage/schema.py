"""The database schema, one for SQLite and PostgreSQL (SQLAlchemy Core).

Conventions that keep both databases exact and fast:

* time is ``BIGINT`` microseconds since the Unix epoch, UTC (``*_us`` columns);
* money is ``BIGINT`` nano-USD (``*_nanos``); decimals that are not money amounts (discounts,
  multipliers, unit prices) are stored as decimal *strings*, because SQLite's NUMERIC is a float;
* rollup dimensions are ``''`` rather than NULL, so the unique key that upserts rely on holds.

Raw events are kept for request-level drilldown; ``rollup_hourly`` and ``rollup_daily`` are kept
current at ingest (same transaction) so queries over months read thousands of rows, not millions.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "metadata",
    "events",
    "rollup_hourly",
    "rollup_daily",
    "rollup_hourly_coarse",
    "rollup_daily_coarse",
    "COARSE_DIMENSIONS",
    "price_overrides",
    "meta",
    "ROLLUP_DIMENSIONS",
    "EVENT_COLUMNS",
    "EVENT_INDEX",
    "ROLLUP_MEASURES",
    "COST_COLUMNS",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only aliases the rowid for a column declared exactly INTEGER PRIMARY KEY.
_Id = BigInteger().with_variant(Integer(), "sqlite")

#: Dimensions kept in the rollups. High-cardinality ones (user, task, session_id, request ids,
#: tags) are answered from raw events.
ROLLUP_DIMENSIONS = (
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
)
COST_COLUMNS = (
    "cost_nanos",
    "cost_input_nanos",
    "cost_cache_read_nanos",
    "cost_cache_write_nanos",
    "cost_output_nanos",
    "cost_other_nanos",
)
ROLLUP_MEASURES = (
    "requests",
    "errors",
    "unpriced",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    *COST_COLUMNS,
    "latency_ms_sum",
    "latency_count",
)

events = Table(
    "events",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("provider", String(256), nullable=False),
    Column("model", String(256)),
    Column("department", String(256)),
    Column("cost_center", String(256)),
    Column("project", String(256)),
    Column("team", String(256)),
    Column("user", String(256)),
    Column("agent", String(256)),
    Column("task", String(256)),
    Column("environment", String(256)),
    Column("version", String(256)),
    Column("operation", String(256)),
    Column("session_id", String(256)),
    Column("service_tier", String(16), nullable=False),
    Column("category", String(16), nullable=False),
    Column("status", String(8), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("units", JSON),
    Column("tags", JSON),
    Column("latency_ms", Float),
    Column("request_id", String(256)),
    Column("trace_id", String(256)),
    Column("span_id", String(256)),
    Column("prompt_hash", String(256)),
    *(Column(name, BigInteger, nullable=False) for name in COST_COLUMNS),
    Column("cost_components", JSON),
    Column("priced", Boolean, nullable=False),
    Column("price_source", String(32), nullable=False),
    Column("price_version", String(256), nullable=False),
    Column("catalog_model", String(256)),
    Column("unpriced_reason", Text),
    Column("source", String(256)),
    Column("ingested_us", BigInteger, nullable=False),
    UniqueConstraint("event_id"),
    Index(None, "ts_us"),
    Index(None, "request_id"),
    Index(None, "session_id"),
    Index(None, "agent", "ts_us"),
)


#: The columns an event row carries, in table order (``id`` is assigned by the database). Ingest
#: passes rows as tuples in this order from pricing to the database driver.
EVENT_COLUMNS = tuple(column.name for column in events.columns if column.name != "id")
EVENT_INDEX = {name: i for i, name in enumerate(EVENT_COLUMNS)}


#: The organisational dimensions most questions group by (department A vs B, provider vs provider,
#: model families, environments); coarse rollups keep only these, so they are ~10x smaller.
COARSE_DIMENSIONS = ("provider", "model", "department", "cost_center", "environment", "service_tier", "category")


def _rollup(name: str, dimensions: tuple[str, ...] = ROLLUP_DIMENSIONS) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket_us", BigInteger, nullable=False),
        *(Column(dim, String(256), nullable=False, server_default="") for dim in dimensions),
        *(Column(m, BigInteger, nullable=False, server_default="0") for m in ROLLUP_MEASURES if m != "latency_ms_sum"),
        Column("latency_ms_sum", Float, nullable=False, server_default="0"),
        UniqueConstraint("bucket_us", *dimensions, name=f"uq_{name}_key"),
    )


rollup_hourly = _rollup("rollup_hourly")
rollup_daily = _rollup("rollup_daily")
rollup_hourly_coarse = _rollup("rollup_hourly_coarse", COARSE_DIMENSIONS)
rollup_daily_coarse = _rollup("rollup_daily_coarse", COARSE_DIMENSIONS)

price_overrides = Table(
    "price_overrides",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("provider", String(256)),
    Column("model_pattern", String(256), nullable=False),
    Column("match", String(8), nullable=False),
    Column("service_tier", String(16)),
    Column("effective_from_us", BigInteger),
    Column("effective_to_us", BigInteger),
    Column("prices", JSON),
    Column("discount_percent", String(32)),
    Column("multiplier", String(32)),
    Column("note", Text),
    Column("created_by", String(256)),
    Column("created_us", BigInteger, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", JSON),
)
