"""Tables of scheduled reports: the schedules, and one run per schedule and period (migration 0010).

``report_runs`` has one row per (schedule, period label): the unique key is what makes a period's
report go out once even when ``run-due`` runs twice at the same moment or crashes half-way.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Integer, String, Table, Text, UniqueConstraint

from fleetledger.storage.schema import metadata

__all__ = ["report_schedules", "report_runs"]

_Id = BigInteger().with_variant(Integer(), "sqlite")

report_schedules = Table(
    "report_schedules",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("recurrence", String(16), nullable=False),  # weekly, monthly, quarterly
    Column("format", String(8), nullable=False),  # csv, xlsx, pdf, focus
    Column("kind", String(16), nullable=False),  # summary, detailed, chargeback
    Column("departments", JSON, nullable=False),  # [] = every department
    Column("cost_centers", JSON, nullable=False),
    Column("channels", JSON, nullable=False),  # alert channel names
    Column("folder", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("created_by", String(256)),
    UniqueConstraint("name", name="uq_report_schedules_name"),
)

report_runs = Table(
    "report_runs",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("schedule_id", BigInteger, nullable=False),
    Column("period", String(32), nullable=False),  # 2026-10, 2026-Q4, 2026-10-19..2026-10-25
    Column("status", String(16), nullable=False),  # pending, running, done, failed
    Column("attempts", Integer, nullable=False),
    Column("lease_until_us", BigInteger),
    Column("path", Text),
    Column("total_usd", String(40)),
    Column("deliveries", JSON, nullable=False),  # channel -> {"status", "detail", "at"}
    Column("detail", Text),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    UniqueConstraint("schedule_id", "period", name="uq_report_runs_schedule_period"),
)
