"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import tokenledger.access  # noqa: F401  (registers every table on the shared metadata)
import tokenledger.alerts.tables  # noqa: F401
import tokenledger.budgets.tables  # noqa: F401
import tokenledger.insights.anomaly_tables  # noqa: F401
import tokenledger.insights.recommendation_tables  # noqa: F401
from tokenledger.store.schema import metadata
from tokenledger.store.store import Store


def test_migrations_match_the_declared_schema(db_url):
    store = Store(db_url)
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
        assert differences == []
        assert store.schema_revision() == "0008"
        store.migrate()  # idempotent
    finally:
        store.dispose()
