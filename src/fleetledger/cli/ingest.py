"""``fleetledger ingest FILE...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fleetledger.cli._common import OutputFormat, console, err_console, handle_errors, open_ledger
from fleetledger.core.money import format_usd
from fleetledger.ingest.files import detect_format, write_rejects
from fleetledger.ledger.parallel import ingest_files


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        ctx: typer.Context,
        files: list[Path] = typer.Argument(
            ..., help="JSONL or CSV files of usage events.", exists=True, dir_okay=False, readable=True
        ),
        input_format: str = typer.Option(None, "--input-format", help="jsonl or csv (default: from the file name)."),
        rejects: Path = typer.Option(None, "--rejects", help="Where rejected lines go [default: FILE.rejects.jsonl]."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
        source: str = typer.Option(None, "--source", help="Label stored with each event [default: file:NAME]."),
        workers: int = typer.Option(0, "--workers", min=0, help="Processes for large JSONL files [default: CPUs]."),
    ) -> None:
        """Ingest usage events; bad lines are rejected with line number and reason, the rest are kept.

        Exit status: 0 all accepted (duplicates included), 1 some lines rejected, 2 nothing could run.
        """
        with handle_errors():
            for path in files:
                detect_format(path, input_format)
            total = sum(_count_lines(path) for path in files)
        with open_ledger(ctx) as ledger:
            quiet = output == OutputFormat.json or not sys.stderr.isatty()
            progress = Progress(
                TextColumn("[bold]ingest"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("lines"),
                TimeRemainingColumn(),
                console=err_console,
                disable=quiet,
                transient=True,
            )
            with progress, handle_errors():
                task = progress.add_task("ingest", total=total)
                result = ingest_files(
                    ledger,
                    files,
                    fmt=input_format,
                    source=source or ("file:" + ",".join(p.name for p in files))[:256],
                    workers=workers or None,
                    on_progress=lambda n: progress.advance(task, n),
                )
        rejects_path = rejects or files[0].with_name(files[0].name + ".rejects.jsonl")
        if result.rejections:
            write_rejects(rejects_path, result.rejections)
        if output == OutputFormat.json:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        else:
            console.print(
                f"[green]{result.accepted:,} accepted[/] ({format_usd(result.cost_nanos)} USD), "
                f"{result.duplicates:,} duplicates skipped, "
                f"[{'red' if result.rejected else 'green'}]{result.rejected:,} rejected[/]"
            )
            for rejection in result.rejections[:10]:
                console.print(f"  {rejection.location}: {rejection.reason}", highlight=False, markup=False)
            if result.rejected > 10:
                console.print(f"  ... and {result.rejected - 10:,} more")
            if result.rejections:
                console.print(f"Rejected lines with reasons: {rejects_path}")
        if result.rejected:
            raise typer.Exit(1)
