"""Alembic environment: runs on the connection tokenledger hands it (see Store.migrate)."""

from alembic import context

import tokenledger.access  # noqa: F401  (registers the api_keys table on metadata)
import tokenledger.alerts.tables  # noqa: F401  (registers the alert tables on metadata)
import tokenledger.budgets.tables  # noqa: F401  (registers the budget tables on metadata)
import tokenledger.gateway.tables  # noqa: F401  (registers the gateway tables on metadata)
import tokenledger.insights.anomaly_tables  # noqa: F401  (registers the anomaly tables on metadata)
import tokenledger.insights.recommendation_tables  # noqa: F401  (registers the recommendation tables)
import tokenledger.insights.reconciliation_tables  # noqa: F401  (registers the provider_lines table)
import tokenledger.reports.tables  # noqa: F401  (registers the scheduled report tables)
from tokenledger.store.schema import metadata

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
