"""``fleetledger init``."""

from __future__ import annotations

import typer

from fleetledger.cli._common import console, open_ledger
from fleetledger.pricing.overrides import DEFAULT_TIER_MULTIPLIERS, add_override, load_overrides
from fleetledger.storage.store import Store


def register(app: typer.Typer) -> None:
    @app.command()
    def init(ctx: typer.Context) -> None:
        """Create or upgrade the database, and add the default batch-tier multipliers once."""
        with open_ledger(ctx) as ledger:
            store = ledger.store
            created = 0
            if not load_overrides(store) and not store.get_meta("default_multipliers_added"):
                for rule in DEFAULT_TIER_MULTIPLIERS:
                    add_override(store, now=ledger.clock(), created_by="fleetledger init", **rule)  # type: ignore[arg-type]
                    created += 1
                store.set_meta("default_multipliers_added", True)
            where = Store.database_path(store.url) or store.engine.url.render_as_string(hide_password=True)
            console.print(f"Database ready at [bold]{where}[/] (schema {store.schema_revision()}).")
            if created:
                console.print(
                    f"Added {created} batch-tier multipliers for models the catalog has no batch price for "
                    "(see `fleetledger pricing list`)."
                )
