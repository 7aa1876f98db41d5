"""``fleetledger reconcile import|report``: provider exports against the metered ledger."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from fleetledger.cli._common import OutputFormat, console, emit, fail, handle_errors, open_ledger
from fleetledger.reconciliation.compare import ReconciliationReport, import_for_ledger, reconcile_ledger
from fleetledger.reconciliation.importers.provider_lines import KINDS

reconcile_app = typer.Typer(
    help="Import provider usage and cost exports and reconcile them with the metered ledger.", no_args_is_help=True
)


@reconcile_app.command("import")
def import_exports(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="Export files."),
    kind: str = typer.Option(..., "--kind", help=f"Export kind: {', '.join(KINDS)}."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Store provider lines (kept apart from metered events); bad lines are listed, the rest kept."""
    if kind not in KINDS:
        fail(f"--kind: {kind!r} is not an export kind; use one of {', '.join(KINDS)}")
    results = []
    with open_ledger(ctx) as ledger, handle_errors():
        for file in files:
            results.append((file, import_for_ledger(ledger, kind, file, source_name=file.name)))
    rejected = sum(result.rejected for _, result in results)
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps([{"file": str(f), **r.to_dict()} for f, r in results], indent=2) + "\n")
    else:
        for file, result in results:
            console.print(
                f"{file.name}: {result.inserted:,} new lines ({result.to_dict()['cost_usd']} USD billed on the lines "
                f"read), {result.updated:,} updated, {result.unchanged:,} unchanged, {result.rejected:,} rejected",
                markup=False,
            )
            for rejection in result.rejections[:20]:
                console.print(f"  {rejection['location']}: {rejection['reason']}", markup=False)
    if rejected:
        raise typer.Exit(1)


_COLUMNS = (
    "day",
    "provider",
    "model",
    "key",
    "classification",
    "provider_cost_usd",
    "ledger_cost_usd",
    "cost_drift_usd",
    "token_drift",
    "provider_cost_basis",
    "prices",
)


def _flat(cell: dict[str, Any]) -> dict[str, Any]:
    row = dict(cell)
    drift = cell.get("token_drift")
    row["token_drift"] = "" if not drift else " ".join(f"{k.removesuffix('_tokens')}={v:+d}" for k, v in drift.items())
    row["prices"] = "; ".join(
        f"{p['token_type']} ${p['provider_usd_per_mtok']} vs ${p['ledger_usd_per_mtok']}/MTok" for p in cell["prices"]
    )
    for name, value in cell["parts"].items():
        row[f"part_{name}_usd"] = value
    return row


def _summary(report: ReconciliationReport) -> None:
    totals = report.to_dict()["totals"]
    console.print(
        f"provider {totals['provider_usd']} USD, ledger {totals['ledger_usd']} USD, drift {totals['drift_usd']} USD, "
        f"unexplained {totals['unexplained_usd']} USD",
        markup=False,
    )
    parts = ", ".join(f"{name} {value}" for name, value in totals["by_class_usd"].items() if value != "0.000000000")
    console.print(f"by class: {parts or 'nothing to explain'}", markup=False)


@reconcile_app.command("report")
def report(
    ctx: typer.Context,
    since: str = typer.Option("30d", "--since", help="Start: 30d, 2026-10-01..."),
    until: str = typer.Option(None, "--until", help="End (exclusive); default now."),
    provider: str = typer.Option(None, "--provider", help="Only this provider."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Per day, model and key: provider vs ledger tokens and cost, each difference classified."""
    with open_ledger(ctx) as ledger, handle_errors():
        result = reconcile_ledger(ledger, since=since, until=until, provider=provider)
    data = result.to_dict()
    rows = [_flat(cell) for cell in data["cells"]]
    if output == OutputFormat.json:
        emit(rows, output, json_value=data)
        return
    if output == OutputFormat.csv:
        part_columns = sorted({k for row in rows for k in row if k.startswith("part_")})
        emit(rows, output, columns=[*_COLUMNS, *part_columns])
        return
    if not rows:
        console.print("No provider lines in this range: import some with `fleetledger reconcile import`.")
        return
    emit(rows, output, columns=_COLUMNS, title=f"Reconciliation {data['since'][:10]} to {data['until'][:10]}")
    _summary(result)


def register(app: typer.Typer) -> None:
    app.add_typer(reconcile_app, name="reconcile")
