"""The gateway's tables: virtual keys (stored hashed) and routing policies."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Integer, String, Table, Text

from fleetledger.storage.schema import metadata

__all__ = ["gateway_keys", "gateway_policies", "KEYS_VERSION_KEY", "POLICIES_VERSION_KEY"]

#: ``meta`` rows bumped on every change, so running gateways reload without a restart.
KEYS_VERSION_KEY = "gateway_keys_version"
POLICIES_VERSION_KEY = "gateway_policies_version"

_Id = BigInteger().with_variant(Integer(), "sqlite")

gateway_keys = Table(
    "gateway_keys",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("key_id", String(16), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),  # SHA-256 of the whole key
    Column("name", String(200)),
    Column("dims", JSON, nullable=False),  # attribution: department, project, agent, environment...
    Column("allowed_models", JSON),  # null: every model the gateway routes
    Column("rate_limit_rpm", Integer),  # null: no limit
    Column("cache", String(16), nullable=False),  # off, exact, semantic
    Column("created_us", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("revoked_us", BigInteger),
)

gateway_policies = Table(
    "gateway_policies",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("scope", JSON, nullable=False),  # {} fleet, {"department": ...}, {"agent": ...}
    Column("params", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("recommendation_id", BigInteger),
    Column("note", Text),
    Column("created_us", BigInteger, nullable=False),
    Column("created_by", String(200)),
)
