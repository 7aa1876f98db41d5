"""``tokenledger recommend``: find, list and track cost optimisation recommendations."""

from __future__ import annotations

import typer

from ..insights import recommendations as service
from ._common import OutputFormat, emit, handle_errors, open_ledger

_COLUMNS = (
    "id",
    "kind",
    "title",
    "current_cost_monthly_usd",
    "optimized_cost_monthly_usd",
    "savings_monthly_usd",
    "savings_annual_usd",
    "effort",
    "risk",
    "status",
)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Cost optimisation recommendations priced from the last 30 days of usage.")
    app.add_typer(group, name="recommend")

    @group.command("scan")
    def scan(
        ctx: typer.Context,
        min_savings: str = typer.Option("1", "--min-savings", help="Smallest monthly saving (USD) to report."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Re-price the last 30 days under each optimisation and store what saves money."""
        with open_ledger(ctx) as ledger, handle_errors():
            found = service.scan(ledger, min_monthly_savings_usd=min_savings)
            emit([r.to_dict() for r in found], output, columns=_COLUMNS, title="Recommendations")

    @group.command("list")
    def list_(
        ctx: typer.Context,
        status: str = typer.Option(None, "--status", help="identified, in_review, approved, implemented, declined."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Stored recommendations, largest monthly saving first."""
        with open_ledger(ctx) as ledger, handle_errors():
            found = service.list_recommendations(ledger, status=status)
            emit([r.to_dict() for r in found], output, columns=_COLUMNS, title="Recommendations")

    @group.command("set")
    def set_(
        ctx: typer.Context,
        rec_id: int = typer.Argument(..., metavar="ID"),
        status: str = typer.Option(..., "--status", help="in_review, approved, implemented or declined."),
    ) -> None:
        """Move a recommendation along its lifecycle."""
        with open_ledger(ctx) as ledger, handle_errors():
            rec = service.set_status(ledger, rec_id, status)
            emit([rec.to_dict()], OutputFormat.table, columns=_COLUMNS)

    @group.command("realized")
    def realized(
        ctx: typer.Context,
        rec_id: int = typer.Argument(..., metavar="ID"),
        output: OutputFormat = typer.Option(OutputFormat.json, "--format"),
    ) -> None:
        """Measure an implemented recommendation's saving: 30 days before vs the days since."""
        with open_ledger(ctx) as ledger, handle_errors():
            rec = service.measure_realized(ledger, rec_id)
            emit([rec.to_dict()], output, json_value=rec.realized)
