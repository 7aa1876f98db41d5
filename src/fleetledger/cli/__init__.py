"""The ``fleetledger`` command line: thin Typer commands over the library."""

from __future__ import annotations

import typer

from fleetledger.cli import (
    _common,
    alerts,
    anomalies,
    budget,
    costs,
    demo,
    forecast,
    gateway,
    imports,
    ingest,
    insights,
    pricing,
    recommend,
    reconcile,
    report,
    serve,
    setup,
    simulator,
)
from fleetledger.storage.store import DEFAULT_URL

__all__ = ["app", "main"]

app = typer.Typer(
    name="fleetledger",
    help="Meter, price, attribute and query the LLM spend of an agent fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    db: str = typer.Option(
        None,
        "--db",
        envvar="FLEETLEDGER_DATABASE_URL",
        show_envvar=True,
        help=f"Database URL: sqlite:///path.db or postgresql://user@host/db [default: {DEFAULT_URL}]",
    ),
) -> None:
    ctx.obj = _common.State(db=db)


for module in (
    setup,
    ingest,
    imports,
    costs,
    pricing,
    budget,
    alerts,
    forecast,
    insights,
    recommend,
    anomalies,
    reconcile,
    report,
    serve,
    gateway,
    demo,
    simulator,
):
    module.register(app)


def main() -> None:
    app()
