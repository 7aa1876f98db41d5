"""``fleetledger anomalies scan|list|set``."""

from __future__ import annotations

import json
import sys

import typer

from fleetledger.analytics import anomalies as service
from fleetledger.cli._common import OutputFormat, console, emit, handle_errors, open_ledger

anomalies_app = typer.Typer(help="Spend anomalies with root causes, and their review status.", no_args_is_help=True)
_COLUMNS = (
    "id",
    "level",
    "scope",
    "start",
    "end",
    "score",
    "expected_usd",
    "actual_usd",
    "impact_usd",
    "impact_pct",
    "top_cause",
    "status",
)


def _cause(cause: dict) -> str:
    """``runaway_loop session_id=loop-7`` (a dimension dict as key=value, never a Python repr)."""
    dimension = cause.get("dimension")
    if isinstance(dimension, dict):
        dimension = ",".join(f"{k}={v}" for k, v in dimension.items())
    return f"{cause.get('cause')} {dimension}" if dimension else str(cause.get("cause"))


def _rows(found: list[service.Anomaly]) -> list[dict]:
    out = []
    for anomaly in found:
        row = anomaly.to_dict()
        causes = row.get("causes") or []
        row["top_cause"] = _cause(causes[0]) if causes else None
        row["scope"] = ",".join(f"{k}={v}" for k, v in (row.get("scope") or {}).items()) or "fleet"
        out.append(row)
    return out


@anomalies_app.command("scan")
def scan(
    ctx: typer.Context,
    since: str = typer.Option("90d", "--since"),
    level: list[str] = typer.Option([], "--level", help="fleet, department, agent (repeatable) [default: all]."),
    granularity: str = typer.Option("day", "--granularity", help="day or hour."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Detect anomalies (idempotent: a rescan updates, never duplicates)."""
    with open_ledger(ctx) as ledger, handle_errors():
        found = service.scan(ledger, levels=tuple(level) or service.LEVELS, since=since, granularity=granularity)
    emit(_rows(found), output, columns=_COLUMNS, title=f"{len(found)} anomalies")


@anomalies_app.command("list")
def list_(
    ctx: typer.Context,
    status: str = typer.Option(None, "--status", help=", ".join(service.STATUSES)),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Stored anomalies, newest first."""
    with open_ledger(ctx) as ledger, handle_errors():
        found = service.list_anomalies(ledger.store, status=status)
    emit(_rows(found), output, columns=_COLUMNS)


@anomalies_app.command("set")
def set_(
    ctx: typer.Context,
    anomaly_id: int = typer.Argument(...),
    status: str = typer.Option(..., "--status", help=", ".join(service.STATUSES)),
    note: str = typer.Option(None, "--note", help="Why (kept with the anomaly)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Review an anomaly; 'expected' also suppresses similar ones in later scans."""
    with open_ledger(ctx) as ledger, handle_errors():
        anomaly = service.set_status(ledger.store, anomaly_id, status, note=note, now=ledger.clock())
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(anomaly.to_dict(), default=str) + "\n")
    elif output == OutputFormat.csv:
        emit(_rows([anomaly]), output, columns=_COLUMNS)
    else:
        console.print(f"Anomaly #{anomaly_id} is now {anomaly.status}.")


def register(app: typer.Typer) -> None:
    app.add_typer(anomalies_app, name="anomalies")
