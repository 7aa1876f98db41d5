"""The ``anomalies`` table: detected cost anomalies, their root causes and their review status."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Float, Index, Integer, String, Table, Text, UniqueConstraint

from fleetledger.storage.schema import metadata

__all__ = ["anomalies"]

_Id = BigInteger().with_variant(Integer(), "sqlite")

anomalies = Table(
    "anomalies",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("level", String(16), nullable=False),  # fleet, department, agent
    Column("granularity", String(8), nullable=False),  # day, hour
    Column("scope", JSON, nullable=False),  # {} for the fleet, {"department": ...} or {"agent": ...}
    Column("department", String(256)),  # the scope's department, for department-scoped API keys
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("score", Float, nullable=False),
    Column("expected_nanos", BigInteger, nullable=False),
    Column("actual_nanos", BigInteger, nullable=False),
    Column("impact_nanos", BigInteger, nullable=False),
    Column("causes", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("note", Text),
    Column("detected_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    UniqueConstraint("fingerprint", name="uq_anomalies_fp"),
    Index("ix_anomalies_start", "start_us"),
)
