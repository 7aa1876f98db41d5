"""Bulk writes below SQLAlchemy's per-row parameter processing, one fast path per database.

Measured on the ingest benchmark, SQLAlchemy's executemany spent more time building bind
parameters for ~50 columns per event than SQLite spent storing them. So the two hot statements of
ingest go to the DBAPI directly, with SQL built once from the same schema:

* **SQLite**: the write transaction already holds the database lock (``BEGIN IMMEDIATE``), so the
  ids that are already stored are looked up first (one query with a JSON array of ids), then the
  rows are inserted with ``executemany`` of one prepared ``INSERT .. ON CONFLICT DO NOTHING``.
* **PostgreSQL**: rows are streamed with ``COPY`` into a per-session temporary staging table and
  moved with ``INSERT .. SELECT .. ON CONFLICT (event_id) DO NOTHING RETURNING event_id``, which is
  exact under concurrent writers because the unique index decides.

Rollup increments use ``INSERT .. ON CONFLICT (key) DO UPDATE SET m = m + excluded.m`` on both.
Rows arrive as tuples in :data:`~fleetledger.storage.schema.EVENT_COLUMNS` order, JSON columns
already serialized to text (as SQLAlchemy's ``JSON`` type stores them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table

from fleetledger.storage.schema import COARSE_DIMENSIONS, EVENT_COLUMNS, EVENT_INDEX, ROLLUP_DIMENSIONS, ROLLUP_MEASURES

__all__ = ["BulkWriter", "ROLLUP_COLUMNS"]

ROLLUP_COLUMNS = ("bucket_us", *ROLLUP_DIMENSIONS, *ROLLUP_MEASURES)
_ID = EVENT_INDEX["event_id"]


class BulkWriter:
    """Prepared SQL for one dialect; stateless, shared by all threads."""

    def __init__(self, dialect: Any) -> None:
        self.dialect_name = dialect.name
        quote = dialect.identifier_preparer.quote
        cols = ", ".join(quote(c) for c in EVENT_COLUMNS)
        marks = ", ".join(["?" if self.dialect_name == "sqlite" else "%s"] * len(EVENT_COLUMNS))
        self.insert_sqlite = f"INSERT INTO events ({cols}) VALUES ({marks}) ON CONFLICT (event_id) DO NOTHING"
        self.copy_stage = f"COPY _tl_stage ({cols}) FROM STDIN"
        self.create_stage = (
            f"CREATE TEMP TABLE IF NOT EXISTS _tl_stage ON COMMIT DELETE ROWS AS SELECT {cols} FROM events WITH NO DATA"
        )
        self.move_stage = (
            f"INSERT INTO events ({cols}) SELECT {cols} FROM _tl_stage "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        )
        self.rollup_sql: dict[str, str] = {}
        mark = "?" if self.dialect_name == "sqlite" else "%s"
        for table, dimensions in (
            ("rollup_hourly", ROLLUP_DIMENSIONS),
            ("rollup_daily", ROLLUP_DIMENSIONS),
            ("rollup_hourly_coarse", COARSE_DIMENSIONS),
            ("rollup_daily_coarse", COARSE_DIMENSIONS),
        ):
            columns = ("bucket_us", *dimensions, *ROLLUP_MEASURES)
            rcols = ", ".join(quote(c) for c in columns)
            rmarks = ", ".join([mark] * len(columns))
            key = ", ".join(quote(c) for c in ("bucket_us", *dimensions))
            updates = ", ".join(f"{quote(m)} = {table}.{quote(m)} + excluded.{quote(m)}" for m in ROLLUP_MEASURES)
            self.rollup_sql[table] = (
                f"INSERT INTO {table} ({rcols}) VALUES ({rmarks}) ON CONFLICT ({key}) DO UPDATE SET {updates}"
            )

    def insert_events(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> set[str]:
        """Insert rows whose event_id is not stored yet; returns the ids that were inserted."""
        raw = conn.connection.driver_connection
        assert raw is not None
        if self.dialect_name == "sqlite":
            cursor = raw.cursor()
            try:
                ids = [row[_ID] for row in rows]
                cursor.execute(
                    "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(ids),),
                )
                existing = {r[0] for r in cursor.fetchall()}
                fresh: dict[str, tuple[Any, ...]] = {}
                for row in rows:
                    if row[_ID] not in existing and row[_ID] not in fresh:
                        fresh[row[_ID]] = row
                cursor.executemany(self.insert_sqlite, fresh.values())
            finally:
                cursor.close()
            return set(fresh)
        with raw.cursor() as cursor:
            cursor.execute(self.create_stage)
            with cursor.copy(self.copy_stage) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(self.move_stage)
            inserted = {r[0] for r in cursor.fetchall()}
            cursor.execute("TRUNCATE _tl_stage")
        return inserted

    def upsert_rollup(self, conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            cursor.executemany(self.rollup_sql[table.name], rows)
        finally:
            cursor.close()
