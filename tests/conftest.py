"""Shared fixtures. Storage tests run on SQLite and on PostgreSQL.

PostgreSQL comes from ``FLEETLEDGER_TEST_POSTGRES_URL`` (``.ci/run`` sets it). Without it the
PostgreSQL variants skip locally, and fail under ``CI=true``: CI must test both databases.
Each PostgreSQL test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

PG_URL = os.environ.get("FLEETLEDGER_TEST_POSTGRES_URL")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _pg_schema_url(base: str) -> Iterator[str]:
    import sqlalchemy as sa

    from fleetledger.storage.store import normalize_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalize_url(base))
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but FLEETLEDGER_TEST_POSTGRES_URL is not set: PostgreSQL tests are required in CI")
        pytest.skip(
            "PostgreSQL tests skipped: set FLEETLEDGER_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test"
        )
    yield from _pg_schema_url(PG_URL)


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
