"""The ``recommendations`` table: cost optimisation opportunities and their lifecycle."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Integer, String, Table, Text, UniqueConstraint

from fleetledger.storage.schema import metadata

__all__ = ["recommendations"]

_Id = BigInteger().with_variant(Integer(), "sqlite")

recommendations = Table(
    "recommendations",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("scope", JSON, nullable=False),
    Column("title", Text, nullable=False),
    Column("current_nanos", BigInteger, nullable=False),
    Column("optimized_nanos", BigInteger, nullable=False),
    Column("effort", String(16), nullable=False),
    Column("risk", String(16), nullable=False),
    Column("quality_impact", Text, nullable=False),
    Column("steps", JSON, nullable=False),
    Column("rollback", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("implemented_us", BigInteger),
    Column("realized", JSON),
    Column("fingerprint", String(64), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    UniqueConstraint("fingerprint"),
)
