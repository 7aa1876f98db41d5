"""Alembic environment: runs on the connection fleetledger hands it (see Store.migrate)."""

from alembic import context

import fleetledger.access.keys  # noqa: F401  (registers the api_keys table on metadata)
import fleetledger.alerts.tables  # noqa: F401  (registers the alert tables on metadata)
import fleetledger.analytics.anomalies.tables  # noqa: F401  (registers the anomaly tables on metadata)
import fleetledger.analytics.recommendations.tables  # noqa: F401  (registers the recommendation tables)
import fleetledger.budgets.tables  # noqa: F401  (registers the budget tables on metadata)
import fleetledger.gateway.tables  # noqa: F401  (registers the gateway tables on metadata)
import fleetledger.reconciliation.tables  # noqa: F401  (registers the provider_lines table)
import fleetledger.reports.tables  # noqa: F401  (registers the scheduled report tables)
from fleetledger.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    from sqlalchemy import create_engine

    connection = create_engine(str(context.config.get_main_option("sqlalchemy.url"))).connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
