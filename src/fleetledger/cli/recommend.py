"""``fleetledger recommend``: find, list, show and track cost optimisation recommendations."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from fleetledger.analytics import recommendations as service
from fleetledger.cli._common import OutputFormat, console, emit, handle_errors, open_ledger

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
_KINDS_HELP = f"Only these kinds (repeatable): {', '.join(service.KINDS)}."
#: CSV is for spreadsheets: everything a decision needs, lists joined.
_CSV_COLUMNS = (
    *_COLUMNS,
    "savings_percent",
    "quality_impact",
    "affected_agents",
    "steps",
    "rollback",
    "implemented_at",
    "realized_monthly_usd",
)


def _flat(rec: service.Recommendation) -> dict[str, Any]:
    row = rec.to_dict()
    row["affected_agents"] = "; ".join(map(str, row["affected_agents"]))
    row["steps"] = " | ".join(row["steps"])
    row["rollback"] = " | ".join(row["rollback"])
    row["realized_monthly_usd"] = (row["realized"] or {}).get("realized_monthly_usd")
    return row


def _show_many(found: list[service.Recommendation], output: OutputFormat) -> None:
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps([r.to_dict() for r in found], indent=2) + "\n")
    elif output == OutputFormat.csv:
        emit([_flat(r) for r in found], output, columns=_CSV_COLUMNS)
    else:
        emit([r.to_dict() for r in found], output, columns=_COLUMNS, title="Recommendations")
        if found:
            console.print("Implementation steps and rollback: `fleetledger recommend show ID`.", highlight=False)


def _show_one(rec: service.Recommendation, output: OutputFormat) -> None:
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(rec.to_dict(), indent=2) + "\n")
        return
    if output == OutputFormat.csv:
        emit([_flat(rec)], output, columns=_CSV_COLUMNS)
        return
    row = rec.to_dict()
    console.print(f"[bold]#{rec.id} {rec.title}[/] ({rec.kind}, {rec.status})", highlight=False)
    facts = [
        ("current monthly cost (USD)", row["current_cost_monthly_usd"]),
        ("optimized monthly cost (USD)", row["optimized_cost_monthly_usd"]),
        ("savings monthly (USD)", row["savings_monthly_usd"]),
        ("savings annual (USD)", row["savings_annual_usd"]),
        ("savings (%)", row["savings_percent"]),
        ("effort", row["effort"]),
        ("risk", row["risk"]),
        ("quality impact", row["quality_impact"]),
        ("affected agents", ", ".join(map(str, row["affected_agents"])) or "-"),
        ("implemented at", row["implemented_at"] or "-"),
    ]
    realized = row["realized"]
    if realized:
        facts += [
            ("realized monthly (USD)", realized["realized_monthly_usd"]),
            ("realized annual (USD)", realized["realized_annual_usd"]),
            ("measured", f"{realized['basis']}, at {realized['measured_at']}"),
        ]
    emit([{"field": k, "value": v} for k, v in facts], OutputFormat.table, columns=("field", "value"))
    console.print("[bold]Implementation steps[/]", highlight=False)
    for n, step in enumerate(rec.steps, 1):
        console.print(f"  {n}. {step}", highlight=False)
    console.print("[bold]Rollback[/]", highlight=False)
    for n, step in enumerate(rec.rollback, 1):
        console.print(f"  {n}. {step}", highlight=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Cost optimisation recommendations priced from the last 30 days of usage.", no_args_is_help=True
    )
    app.add_typer(group, name="recommend")

    @group.command("scan")
    def scan(
        ctx: typer.Context,
        min_savings: str = typer.Option("1", "--min-savings", help="Smallest monthly saving (USD) to report."),
        kind: list[str] = typer.Option([], "--kind", help=_KINDS_HELP),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Re-price the last 30 days under each optimisation and store what saves money."""
        with open_ledger(ctx) as ledger, handle_errors():
            found = service.scan(ledger, min_monthly_savings_usd=min_savings, kinds=tuple(kind) or service.KINDS)
        _show_many(found, output)

    @group.command("list")
    def list_(
        ctx: typer.Context,
        status: str = typer.Option(None, "--status", help="identified, in_review, approved, implemented, declined."),
        kind: str = typer.Option(None, "--kind", help=", ".join(service.KINDS)),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Stored recommendations, largest monthly saving first."""
        with open_ledger(ctx) as ledger, handle_errors():
            found = service.list_recommendations(ledger, status=status, kind=kind)
        _show_many(found, output)

    @group.command("show")
    def show(
        ctx: typer.Context,
        rec_id: int = typer.Argument(..., metavar="ID"),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """One recommendation: costs, savings, effort, risk, quality impact, implementation steps, rollback."""
        with open_ledger(ctx) as ledger, handle_errors():
            rec = service.get_recommendation(ledger, rec_id)
        _show_one(rec, output)

    @group.command("set")
    def set_(
        ctx: typer.Context,
        rec_id: int = typer.Argument(..., metavar="ID"),
        status: str = typer.Option(..., "--status", help="in_review, approved, implemented or declined."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Move a recommendation along its lifecycle (identified -> in_review -> approved -> implemented)."""
        with open_ledger(ctx) as ledger, handle_errors():
            rec = service.set_status(ledger, rec_id, status)
        if output == OutputFormat.table:
            console.print(f"Recommendation #{rec.id} is now {rec.status}.", highlight=False)
        else:
            _show_one(rec, output)

    @group.command("realized")
    def realized(
        ctx: typer.Context,
        rec_id: int = typer.Argument(..., metavar="ID"),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Measure an implemented recommendation's saving: 30 days before vs the days since."""
        with open_ledger(ctx) as ledger, handle_errors():
            rec = service.measure_realized(ledger, rec_id)
        result = rec.realized or {}
        if output == OutputFormat.json:
            sys.stdout.write(json.dumps(result, indent=2) + "\n")
            return
        rows = [
            {
                "window": window,
                "since": result[window]["since"],
                "until": result[window]["until"],
                "requests": result[window]["requests"],
                "cost_usd": result[window]["cost_usd"],
            }
            for window in ("before", "after")
        ]
        emit(rows, output, title=f"Recommendation #{rec_id}: realized savings ({result['basis']})")
        if output == OutputFormat.table:
            console.print(
                f"Realized {result['realized_monthly_usd']} USD/month ({result['realized_annual_usd']} USD/year); "
                f"estimated {result['estimated_monthly_usd']} USD/month.",
                highlight=False,
            )

    @group.command("summary")
    def summary(ctx: typer.Context, output: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
        """Estimated savings by lifecycle status, the open potential, and realized (measured) savings."""
        with open_ledger(ctx) as ledger, handle_errors():
            result = service.savings_summary(ledger)
        if output == OutputFormat.json:
            result.pop("implemented")
            sys.stdout.write(json.dumps(result, indent=2) + "\n")
            return
        rows = [{"status": status, **figures} for status, figures in result["by_status"].items()]
        emit(
            rows,
            output,
            columns=("status", "count", "estimated_monthly_usd", "estimated_annual_usd"),
            title="Recommended savings",
        )
        if output == OutputFormat.table:
            console.print(
                f"Open potential {result['open_potential_monthly_usd']} USD/month; realized "
                f"{result['realized_monthly_usd']} USD/month ({result['realized_annual_usd']} USD/year) "
                f"measured on {result['implemented_measured']} implemented recommendation(s).",
                highlight=False,
            )
