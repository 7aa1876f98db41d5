"""The Store: one object over SQLite (embedded default) or PostgreSQL (many processes, one database).

Dialect details live here and nowhere else:

* SQLite runs in WAL mode with ``synchronous=NORMAL`` and a 30 s busy timeout; write transactions
  start with ``BEGIN IMMEDIATE`` so concurrent writers queue for the lock instead of failing
  half-way through, and readers never block.
* PostgreSQL uses a connection pool; idempotency and rollups rely on ``ON CONFLICT``, which both
  databases support with the same statement.

Writes of events are idempotent by ``event_id``: an insert returns only the ids that were new, and
only those are added to the rollups, in the same transaction. A crash between the two is
impossible; a retry of the same batch changes nothing.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, and_, create_engine, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from fleetledger.core.errors import InvalidInput, StorageUnavailable
from fleetledger.core.urls import DEFAULT_URL, database_path, normalize_url
from fleetledger.storage import schema
from fleetledger.storage.inserts import BulkWriter
from fleetledger.storage.schema import (
    COARSE_DIMENSIONS,
    EVENT_COLUMNS,
    EVENT_INDEX,
    ROLLUP_DIMENSIONS,
    ROLLUP_MEASURES,
    events,
    rollup_daily,
    rollup_daily_coarse,
    rollup_hourly,
    rollup_hourly_coarse,
)

__all__ = ["Store", "DEFAULT_URL", "HOUR_US", "DAY_US", "CostRow"]

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
_MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(slots=True)
class CostRow:
    """Summed measures for one group (keys are the group-by values)."""

    keys: tuple[Any, ...]
    measures: dict[str, int | float]


class Store:
    """Tables, transactions and queries. Build one per process and share it across threads."""

    def __init__(self, url: str = DEFAULT_URL, *, migrate: bool = True, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect not in ("sqlite", "postgresql"):
            raise InvalidInput(f"database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db")
        if self.dialect == "sqlite":
            self.engine = self._sqlite_engine()
        else:
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=20,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5},
            )
        self._insert = sqlite_insert if self.dialect == "sqlite" else pg_insert
        self._bulk = BulkWriter(self.engine.dialect)
        if migrate:
            self.migrate()

    # -- engine and transactions ---------------------------------------------------------------

    def _sqlite_engine(self) -> Engine:
        path = self.url.split("///", 1)[1] if "///" in self.url else ""
        memory = path in ("", ":memory:")
        if not memory:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # A pool of connections, each used by one thread at a time. Not NullPool: closing the last
        # connection to a WAL database makes SQLite checkpoint it, which cost ~8 ms per transaction.
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=56,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA cache_size=-131072")  # 128 MiB: index pages stay in memory at ingest
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("fleetledger_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(fleetledger_write=True)
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise StorageUnavailable(f"database unavailable: {exc.orig}") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise StorageUnavailable(f"database unavailable: {exc.orig}") from exc

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic), idempotently."""
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        head = ScriptDirectory.from_config(config).get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return
        with self.write() as conn:
            if self.dialect == "postgresql":
                # Several processes may start at once; one migrates, the others wait.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7262211)")
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()

    # -- events ------------------------------------------------------------------------------------

    def insert_events(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Insert event rows (tuples in EVENT_COLUMNS order), skipping stored event_ids.

        Returns the rows that were new; their rollup increments go into the same transaction.
        """
        if not rows:
            return []
        new_ids = self._bulk.insert_events(conn, rows)
        seen: set[str] = set()
        fresh = []
        for row in rows:
            event_id = row[_ID]
            if event_id in new_ids and event_id not in seen:
                seen.add(event_id)
                fresh.append(row)
        self.add_to_rollups(conn, fresh)
        return fresh

    def add_to_rollups(self, conn: Connection, rows: Iterable[Sequence[Any]]) -> None:
        hourly: dict[tuple[Any, ...], list[int | float]] = {}
        for row in rows:
            ts = row[_TS]
            key = (ts - ts % HOUR_US, *["" if v is None else v for v in _dimensions(row)])
            acc = hourly.get(key)
            if acc is None:
                acc = hourly[key] = [0] * len(ROLLUP_MEASURES)
            _accumulate(acc, row)
        if not hourly:
            return
        # The other three levels are projections of the hourly groups (far fewer than events).
        for table, project in _DERIVED:
            self._upsert_rollup(conn, table, _project(hourly, project))
        self._upsert_rollup(conn, rollup_hourly, hourly)

    def _upsert_rollup(self, conn: Connection, table: Any, groups: dict[tuple[Any, ...], list[int | float]]) -> None:
        items = groups.items()
        if self.dialect == "postgresql":
            # A fixed order of keys keeps concurrent writers from deadlocking on row locks.
            items = sorted(items, key=lambda item: item[0])  # type: ignore[assignment]
        rows = [key + tuple(acc) for key, acc in items]
        self._bulk.upsert_rollup(conn, table, rows)

    def rebuild_rollups(self, conn: Connection, start_us: int, end_us: int | None = None) -> None:
        """Recompute the rollups for whole days from ``start_us`` (rounded down) from raw events."""
        day0 = start_us - start_us % DAY_US
        for table in ALL_ROLLUPS:
            condition = table.c.bucket_us >= day0
            if end_us is not None:
                condition = and_(condition, table.c.bucket_us < end_us)
            conn.execute(table.delete().where(condition))
        where = events.c.ts_us >= day0
        if end_us is not None:
            where = and_(where, events.c.ts_us < end_us)
        batch: list[Sequence[Any]] = []
        columns = [events.c[name] for name in EVENT_COLUMNS]
        result = conn.execute(select(*columns).where(where), execution_options={"yield_per": 20_000})
        for row in result:
            batch.append(row)
            if len(batch) >= 20_000:
                self.add_to_rollups(conn, batch)
                batch = []
        self.add_to_rollups(conn, batch)

    def delete_source(self, source: str) -> int:
        """Delete every event recorded with ``source`` and rebuild the rollups of the days it touched."""
        with self.write() as conn:
            span = conn.execute(
                select(func.min(events.c.ts_us), func.max(events.c.ts_us), func.count()).where(
                    events.c.source == source
                )
            ).one()
            if not span[2]:
                return 0
            conn.execute(events.delete().where(events.c.source == source))
            last_day = span[1] - span[1] % DAY_US
            self.rebuild_rollups(conn, span[0], last_day + DAY_US)
            return int(span[2])

    def upsert(self, table: Any, keys: Sequence[str], *, increment: Sequence[str]) -> Any:
        """``INSERT .. ON CONFLICT (keys) DO UPDATE SET c = c + excluded.c`` for ``increment`` columns."""
        statement = self._insert(table)
        return statement.on_conflict_do_update(
            index_elements=list(keys), set_={c: table.c[c] + statement.excluded[c] for c in increment}
        )

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.read() as conn:
            value = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()
        return default if value is None else value

    def set_meta(self, key: str, value: Any, conn: Connection | None = None) -> None:
        statement = self._insert(schema.meta).values(key=key, value=value)
        statement = statement.on_conflict_do_update(index_elements=["key"], set_={"value": statement.excluded.value})
        if conn is not None:
            conn.execute(statement)
            return
        with self.write() as own:
            own.execute(statement)

    def count_events(self) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar() or 0)

    @staticmethod
    def database_path(url: str) -> str | None:
        """The SQLite file behind ``url`` (see :func:`fleetledger.core.urls.database_path`)."""
        return database_path(url)


ALL_ROLLUPS = (rollup_hourly, rollup_daily, rollup_hourly_coarse, rollup_daily_coarse)
_COARSE_POSITIONS = tuple(1 + ROLLUP_DIMENSIONS.index(d) for d in COARSE_DIMENSIONS)


def _to_day(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return (key[0] - key[0] % DAY_US, *key[1:])


def _to_coarse(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return (key[0], *(key[i] for i in _COARSE_POSITIONS))


def _to_coarse_day(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return (key[0] - key[0] % DAY_US, *(key[i] for i in _COARSE_POSITIONS))


_DERIVED = ((rollup_daily, _to_day), (rollup_hourly_coarse, _to_coarse), (rollup_daily_coarse, _to_coarse_day))


def _project(
    groups: dict[tuple[Any, ...], list[int | float]], project: Any
) -> dict[tuple[Any, ...], list[int | float]]:
    out: dict[tuple[Any, ...], list[int | float]] = {}
    for key, acc in groups.items():
        target = project(key)
        total = out.get(target)
        if total is None:
            out[target] = list(acc)
        else:
            for i, value in enumerate(acc):
                total[i] += value
    return out


_ID = EVENT_INDEX["event_id"]
_TS = EVENT_INDEX["ts_us"]
_dimensions = operator.itemgetter(*(EVENT_INDEX[d] for d in ROLLUP_DIMENSIONS))
_STATUS, _PRICED, _LATENCY = EVENT_INDEX["status"], EVENT_INDEX["priced"], EVENT_INDEX["latency_ms"]
#: Event columns summed into the rollup measures 3..13, in ROLLUP_MEASURES order.
_SUMMED = operator.itemgetter(*(EVENT_INDEX[m] for m in ROLLUP_MEASURES[3:14]))


def _accumulate(acc: list[int | float], row: Sequence[Any]) -> None:
    acc[0] += 1
    acc[1] += row[_STATUS] == "error"
    acc[2] += not row[_PRICED]
    for i, value in enumerate(_SUMMED(row), 3):
        acc[i] += value
    latency = row[_LATENCY]
    if latency is not None:
        acc[14] += latency
        acc[15] += 1
