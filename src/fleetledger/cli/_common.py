"""What every command shares: the ledger from ``--db``, output formats, error reporting."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from fleetledger.core.errors import FleetLedgerError
from fleetledger.core.settings import Settings
from fleetledger.ledger.facade import Ledger

__all__ = ["State", "OutputFormat", "open_ledger", "emit", "fail", "console", "err_console", "handle_errors"]

# Piped output is read by people too: do not squeeze tables into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 180)
err_console = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


@dataclass
class State:
    db: str | None = None

    def settings(self) -> Settings:
        settings = Settings()
        return settings.model_copy(update={"database_url": self.db}) if self.db else settings


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def handle_errors() -> Iterator[None]:
    try:
        yield
    except FleetLedgerError as exc:
        fail(exc.message)


@contextmanager
def open_ledger(ctx: typer.Context, *, background: bool = False) -> Iterator[Ledger]:
    with handle_errors():
        ledger = Ledger(settings=state(ctx).settings(), background=background)
        try:
            yield ledger
        finally:
            ledger.close()


def emit(
    rows: Sequence[dict[str, Any]],
    fmt: OutputFormat,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    json_value: Any = None,
    style: Callable[[str, Any], str] | None = None,
) -> None:
    """Print rows as a Rich table, JSON (``json_value`` when given, else the rows) or CSV."""
    if fmt == OutputFormat.json:
        sys.stdout.write(json.dumps(rows if json_value is None else json_value, indent=2, default=str) + "\n")
        return
    columns = list(columns or (rows[0].keys() if rows else []))
    if fmt == OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        numeric = bool(rows) and all(
            isinstance(r.get(column), int | float) or _is_number(r.get(column))
            for r in rows
            if r.get(column) is not None
        )
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            text = (
                ""
                if value is None
                else (f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
            )
            cells.append(style(column, value) if style else text)
        table.add_row(*cells)
    console.print(table)


def _is_number(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True
