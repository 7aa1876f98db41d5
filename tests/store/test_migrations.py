"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import fleetledger.access.keys  # noqa: F401  (registers every table on the shared metadata)
import fleetledger.alerts.tables  # noqa: F401
import fleetledger.analytics.anomalies.tables  # noqa: F401
import fleetledger.analytics.recommendations.tables  # noqa: F401
import fleetledger.budgets.tables  # noqa: F401
import fleetledger.gateway.tables  # noqa: F401
import fleetledger.reconciliation.tables  # noqa: F401
import fleetledger.reports.tables  # noqa: F401
from fleetledger.storage.schema import metadata
from fleetledger.storage.store import Store


def _head() -> str:
    """The newest revision in the migrations folder (so a new migration needs no test edit)."""
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import fleetledger.storage

    config = Config()
    config.set_main_option("script_location", str(Path(fleetledger.storage.__file__).with_name("migrations")))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_migrations_match_the_declared_schema(empty_db_url):
    store = Store(empty_db_url)  # an empty database: this runs every migration
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
        assert differences == []
        assert store.schema_revision() == _head()
        store.migrate()  # idempotent
    finally:
        store.dispose()
