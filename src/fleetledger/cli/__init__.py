"""The ``fleetledger`` command line: thin Typer commands over the library."""

from __future__ import annotations

from importlib.metadata import version as package_version

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
from fleetledger.core.environment import adopt_legacy_environment
from fleetledger.storage.store import DEFAULT_URL

__all__ = ["app", "main"]

app = typer.Typer(
    name="fleetledger",
    help="Meter, price, attribute and query the LLM spend of an agent fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fleetledger {package_version('fleetledger')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
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
    adopt_legacy_environment()  # TOKENLEDGER_* of earlier releases, read with a warning
    app()
