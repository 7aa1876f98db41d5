"""Shared fixtures. Storage tests run on SQLite and on PostgreSQL.

PostgreSQL comes from ``FLEETLEDGER_TEST_POSTGRES_URL`` (``.ci/run`` sets it). Without it the
PostgreSQL variants skip locally, and fail under ``CI=true``: CI must test both databases.
Each PostgreSQL test gets its own schema, dropped afterwards.

A fresh database is the migrated schema, built once per test process (each xdist worker has its
own) and copied for each test instead of running the Alembic migrations again:

* SQLite: one template file is migrated, then copied to each test's ``tmp_path``.
* PostgreSQL: one template schema is migrated while the SQL it runs is recorded; each test's
  schema replays that DDL (and the ``alembic_version`` row) in one round trip.

Either way the Store opens a database already at head and does not migrate it
(``Store.migrate`` returns early at head). ``tests/store/test_test_databases.py`` checks that the
copies equal a freshly migrated database; tests that must run the migrations themselves take
``empty_db_url`` (``tests/store/test_migrations.py`` does).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

PG_URL = os.environ.get("FLEETLEDGER_TEST_POSTGRES_URL")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# -- xdist: tests that share a module-scoped fixture run in one worker ------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup``, keep each module's tests that use a module- or class-scoped
    fixture (a demo ledger, a browser, a served site) on one worker, so it is built once; every
    other test goes to whichever worker is free. The longest units (``slow`` tests, then those
    groups) are collected first so that no worker starts one of them at the end of the run
    (``make test`` passes ``--no-loadscope-reorder`` to keep this order)."""
    rank: dict[str, int] = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        grouped = info is not None and any(
            d.scope in ("module", "class", "package")
            for name in info.names_closure
            for d in info.name2fixturedefs.get(name) or ()
        )
        if grouped:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
        rank[item.nodeid] = 0 if item.get_closest_marker("slow") else 1 if grouped else 2
    items.sort(key=lambda item: rank[item.nodeid])  # stable: the collection order within each rank


# -- databases --------------------------------------------------------------------------------------


def _with_search_path(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


def _require_postgres() -> str:
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but FLEETLEDGER_TEST_POSTGRES_URL is not set: PostgreSQL tests are required in CI")
        pytest.skip(
            "PostgreSQL tests skipped: set FLEETLEDGER_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test"
        )
    return PG_URL


def _schema_name() -> str:
    return f"t_{re.sub(r'[^a-z0-9]', '', WORKER.lower())}_{uuid.uuid4().hex[:12]}"


_REPLAYED = re.compile(r"^\s*(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE|COMMENT)\b", re.IGNORECASE)


class PostgresSchemas:
    """Private schemas on the test server: migrated once (recording the DDL), then replayed."""

    def __init__(self, base: str) -> None:
        import psycopg

        self.base = base
        self.admin = psycopg.connect(base, autocommit=True, connect_timeout=10)
        self.ddl = self._record_migration()

    def _record_migration(self) -> str:
        from sqlalchemy import event

        from fleetledger.storage.store import Store

        schema = _schema_name()
        self.admin.execute(f'CREATE SCHEMA "{schema}"')
        statements: list[str] = []

        def record(conn, cursor, statement, parameters, context, executemany) -> None:
            if _REPLAYED.match(statement):
                # A statement with bound parameters cannot be replayed as text: fail loudly so
                # that this fixture gets taught about it rather than building a different schema.
                assert not parameters, f"migration statement with parameters: {statement!r}"
                statements.append(statement.strip().rstrip(";"))

        store = Store(_with_search_path(self.base, schema), migrate=False)
        try:
            event.listen(store.engine, "before_cursor_execute", record)
            store.migrate()
            assert store.schema_revision() is not None
        finally:
            store.dispose()
            self.admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        assert statements, "the migrations ran no DDL"
        assert not any(schema in s for s in statements), "the migrations named their schema"
        return ";\n".join(statements) + ";\n"

    def create(self, *, migrated: bool = True) -> str:
        schema = _schema_name()
        script = f'CREATE SCHEMA "{schema}";\n'
        if migrated:
            script = f'BEGIN;\n{script}SET LOCAL search_path TO "{schema}";\n{self.ddl}COMMIT;\n'
        self.admin.execute(script)  # one round trip: no parameters, so several statements are allowed
        return schema

    def drop(self, schema: str) -> None:
        self.admin.execute(f'DROP SCHEMA "{schema}" CASCADE')

    def close(self) -> None:
        self.admin.close()


@pytest.fixture(scope="session")
def _postgres_schemas() -> Iterator[PostgresSchemas]:
    schemas = PostgresSchemas(_require_postgres())
    yield schemas
    schemas.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file the migrations brought to head, closed cleanly (no WAL left beside it)."""
    from fleetledger.storage.store import Store

    path = tmp_path_factory.mktemp("sqlite-template") / "ledger.db"
    store = Store(f"sqlite:///{path}")
    try:
        assert store.schema_revision() is not None
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.dispose()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the template's WAL was not checkpointed"
    return path


def _fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    base = _require_postgres()
    schemas: PostgresSchemas = request.getfixturevalue("_postgres_schemas")
    schema = schemas.create(migrated=migrated)
    try:
        yield _with_search_path(base, schema)
    finally:
        schemas.drop(schema)


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL at the newest schema revision: a SQLite file, or a private PostgreSQL
    schema. Exactly what the migrations produce (copied from a template migrated once)."""
    yield from _fresh_db_url(request, tmp_path, migrated=True)


@pytest.fixture(params=DATABASES)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL (no tables): the first Store on it runs the migrations."""
    yield from _fresh_db_url(request, tmp_path, migrated=False)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 10, 15, 12, 0, tzinfo=UTC))


@pytest.fixture
def ledger(db_url: str, clock: FrozenClock, tmp_path):
    """A synchronous Ledger (writes before record() returns) on each database."""
    from fleetledger import Ledger, Settings

    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool")
    with Ledger(settings=settings, clock=clock, background=False) as instance:
        yield instance
