"""``fleetledger report``: export a period's costs as Excel, PDF, CSV or FOCUS 1.2, and manage
recurring reports (``fleetledger report schedule add|list|delete|run-due``).

Thin commands over :mod:`fleetledger.reports`; every check lives in the library, so a bad option
fails here with the same message as a bad parameter in the REST API.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from fleetledger.cli._common import OutputFormat, console, emit, err_console, fail, handle_errors, open_ledger
from fleetledger.reports import export
from fleetledger.reports.schedules import add_schedule, delete_schedule, list_runs, list_schedules, run_due

__all__ = ["register", "report_app"]


class ReportFormat(StrEnum):
    xlsx = "xlsx"
    pdf = "pdf"
    csv = "csv"
    focus = "focus"


class ReportKind(StrEnum):
    summary = "summary"
    detailed = "detailed"
    chargeback = "chargeback"


class Recurrence(StrEnum):
    weekly = "weekly"
    monthly = "monthly"
    quarterly = "quarterly"


report_app = typer.Typer(
    help="Cost reports (xlsx, pdf, csv, FOCUS 1.2) and recurring report schedules.",
    invoke_without_command=True,
    no_args_is_help=True,
)
schedule_app = typer.Typer(
    help="Recurring reports written to a folder and sent through alert channels.", no_args_is_help=True
)
report_app.add_typer(schedule_app, name="schedule")


@report_app.callback()
def report(
    ctx: typer.Context,
    fmt: ReportFormat = typer.Option(
        ReportFormat.xlsx, "--format", "-f", help="xlsx, pdf, csv or focus (FOCUS 1.2 CSV)"
    ),
    period: str = typer.Option(None, "--period", "-p", help="2026-10, 2026-Q4, 2026 or 2026-10-01..2026-10-31"),
    out: Path = typer.Option(None, "--out", "-o", help="File to write (default: the report's own name, here)"),
    kind: ReportKind = typer.Option(ReportKind.summary, "--kind", "-k", help="summary, detailed or chargeback"),
    department: list[str] = typer.Option([], "--department", "-d", help="Only this department (repeatable)"),
    cost_center: list[str] = typer.Option([], "--cost-center", help="Only this cost center (repeatable)"),
) -> None:
    """Export a period's costs: every breakdown sums exactly to the total (cents by largest remainder).

    Example: fleetledger report --format xlsx --period 2026-10 --out october.xlsx
    """
    if ctx.invoked_subcommand is not None:
        return
    if not period:
        fail("--period: required, e.g. --period 2026-10 (or 2026-Q4, 2026, 2026-10-01..2026-10-31)")
    with open_ledger(ctx) as ledger:
        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]report[/] {task.description}"),
            TimeElapsedColumn(),
            console=err_console,
            disable=not sys.stderr.isatty(),
            transient=True,
        )
        with progress, handle_errors():
            task = progress.add_task("starting", total=None)
            made = export(
                ledger,
                period,
                fmt=fmt.value,
                kind=kind.value,
                departments=department or None,
                cost_centers=cost_center or None,
                progress=lambda step: progress.update(task, description=step),
            )
            target = out or Path(made.filename)
            progress.update(task, description=f"writing {target}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(made.content)
    assert made.data is not None
    state = "" if made.data.complete else " (period still running)"
    err_console.print(
        f"Wrote {target} ({len(made.content):,} bytes): {made.data.title} {made.data.period.label}{state}, "
        f"total ${made.data.display_total:,.2f} (exact {made.total_usd} USD)",
        highlight=False,
        soft_wrap=True,  # a path is not to be broken over lines
    )


@schedule_app.command("add")
def schedule_add(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="A unique name, e.g. monthly-finance"),
    recurrence: Recurrence = typer.Option(..., "--recurrence", "-r", help="weekly, monthly or quarterly"),
    fmt: ReportFormat = typer.Option(ReportFormat.xlsx, "--format", "-f", help="xlsx, pdf, csv or focus"),
    kind: ReportKind = typer.Option(ReportKind.summary, "--kind", "-k", help="summary, detailed or chargeback"),
    department: list[str] = typer.Option([], "--department", "-d", help="Only this department (repeatable)"),
    cost_center: list[str] = typer.Option([], "--cost-center", help="Only this cost center (repeatable)"),
    channel: list[str] = typer.Option([], "--channel", "-c", help="Alert channel to send it to (repeatable)"),
    folder: str = typer.Option(None, "--folder", help="Where the files go (default: reports/ beside the database)"),
    output: OutputFormat = typer.Option(OutputFormat.table, "--output", help="table or json"),
) -> None:
    """Add a recurring report: each period's report (last week, month or quarter) once it has ended."""
    with open_ledger(ctx) as ledger, handle_errors():
        schedule = add_schedule(
            ledger,
            name=name,
            recurrence=recurrence.value,
            format=fmt.value,
            kind=kind.value,
            departments=department,
            cost_centers=cost_center,
            channels=channel,
            folder=folder,
            created_by="cli",
        )
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(schedule.to_dict()) + "\n")
    else:
        console.print(
            f"Added report schedule {schedule.id} {schedule.name!r} ({schedule.recurrence}, {schedule.format})"
        )


@schedule_app.command("list")
def schedule_list(
    ctx: typer.Context,
    runs: bool = typer.Option(False, "--runs", help="List the runs (one per schedule and period) instead"),
    output: OutputFormat = typer.Option(OutputFormat.table, "--output", help="table, json or csv"),
) -> None:
    """List report schedules (or their runs)."""
    with open_ledger(ctx) as ledger, handle_errors():
        if runs:
            rows = list_runs(ledger.store)
            for row in rows:
                row["deliveries"] = ", ".join(f"{k}: {v['status']}" for k, v in row["deliveries"].items())
            columns = ["id", "schedule_id", "period", "status", "attempts", "total_usd", "deliveries", "path"]
        else:
            rows = [s.to_dict() for s in list_schedules(ledger.store)]
            columns = ["id", "name", "recurrence", "format", "kind", "departments", "channels", "folder", "enabled"]
    if output != OutputFormat.json:
        for row in rows:
            for key in ("departments", "cost_centers", "channels"):
                if isinstance(row.get(key), list):
                    row[key] = ", ".join(row[key])
    emit(rows, output, columns=columns, title="Report runs" if runs else "Report schedules")


@schedule_app.command("delete")
def schedule_delete(ctx: typer.Context, schedule: str = typer.Argument(..., help="Schedule id or name")) -> None:
    """Delete a schedule (and the record of its runs; files already written stay)."""
    with open_ledger(ctx) as ledger, handle_errors():
        delete_schedule(ledger.store, schedule)
    console.print(f"Deleted report schedule {schedule}")


@schedule_app.command("run-due")
def schedule_run_due(
    ctx: typer.Context,
    output: OutputFormat = typer.Option(OutputFormat.table, "--output", help="table or json"),
) -> None:
    """Write and send every report whose period has ended and has not gone out (safe to run twice).

    Exit status 1 when a report could not be built or delivered (it is retried next time)."""
    with open_ledger(ctx) as ledger, handle_errors():
        outcomes = run_due(ledger)
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(outcomes, default=str) + "\n")
    elif not outcomes:
        console.print("Nothing due.")
    else:
        for outcome in outcomes:
            deliveries = ", ".join(f"{k}: {v['status']}" for k, v in outcome.get("deliveries", {}).items())
            console.print(
                f"{outcome['schedule']} {outcome['period']}: {outcome['status']}"
                + (f" -> {outcome['path']}" if outcome.get("path") else "")
                + (f" ({deliveries})" if deliveries else ""),
                highlight=False,
            )
    if any(o["status"] not in ("done",) for o in outcomes):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
