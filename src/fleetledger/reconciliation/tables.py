"""The ``provider_lines`` table: usage and cost lines imported from provider exports and invoices.

Kept apart from ``events`` on purpose: a provider line is what the provider says it served or
billed, the reference the metered ledger is checked against, never a metered event itself.

One row per line of an export. ``line_key`` is a hash of the line's identity in its source (kind,
bucket, model, project / key / workspace, token type...), not of its amounts, so re-importing an
export changes nothing and importing a restated export (a bucket that grew) replaces the line.
Money is integer nano-USD; token counts follow the ledger's convention (``input_tokens`` counts
cached tokens too).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from fleetledger.storage.schema import metadata

__all__ = ["provider_lines"]

_Id = BigInteger().with_variant(Integer(), "sqlite")

provider_lines = Table(
    "provider_lines",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("line_key", String(64), nullable=False),
    Column("kind", String(32), nullable=False),  # openai-costs, openai-usage, anthropic-usage, ...
    Column("provider", String(64), nullable=False),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("day_us", BigInteger, nullable=False),  # UTC day of start_us
    Column("model", String(256)),
    Column("project_id", String(256)),
    Column("api_key_id", String(256)),
    Column("workspace_id", String(256)),
    Column("service_tier", String(32)),
    Column("token_type", String(32)),  # input, cache_read, cache_write, output; None for other charges
    Column("description", Text),
    Column("input_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("cache_write_1h_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("web_search_requests", BigInteger, nullable=False),
    Column("requests", BigInteger),  # None when the export does not count requests
    Column("has_usage", Integer, nullable=False),  # 1: the line reports token counts
    Column("cost_nanos", BigInteger),  # None: a usage line, no amount billed on it
    Column("amount_text", String(64)),  # the amount exactly as exported, with its unit
    Column("source", String(256)),
    Column("location", String(512), nullable=False),
    Column("imported_us", BigInteger, nullable=False),
    UniqueConstraint("line_key", name="uq_provider_lines_key"),
    Index("ix_provider_lines_day", "day_us", "provider"),
)
