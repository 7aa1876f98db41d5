"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import tokenledger.access  # noqa: F401  (registers every table on the shared metadata)
import tokenledger.alerts.tables  # noqa: F401
import tokenledger.budgets.tables  # noqa: F401
import tokenledger.gateway.tables  # noqa: F401
import tokenledger.insights.anomaly_tables  # noqa: F401
import tokenledger.insights.recommendation_tables  # noqa: F401
import tokenledger.insights.reconciliation_tables  # noqa: F401
import tokenledger.reports.tables  # noqa: F401
from tokenledger.store.schema import metadata
from tokenledger.store.store import Store


def _head() -> str:
    """The newest revision in the migrations folder (so a new migration needs no test edit)."""
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import tokenledger.store

    config = Config()
    config.set_main_option("script_location", str(Path(tokenledger.store.__file__).with_name("migrations")))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_migrations_match_the_declared_schema(db_url):
    store = Store(db_url)
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
        assert differences == []
        assert store.schema_revision() == _head()
        store.migrate()  # idempotent
    finally:
        store.dispose()
