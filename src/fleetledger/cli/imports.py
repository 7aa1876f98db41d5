"""``fleetledger import litellm-spend|openai-usage FILE``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from fleetledger.cli._common import OutputFormat, console, handle_errors, open_ledger
from fleetledger.core.money import format_usd
from fleetledger.ingest.files import write_rejects
from fleetledger.ingest.importers.litellm_spend import read_litellm_spend_logs
from fleetledger.ingest.importers.openai_usage import read_openai_usage

import_app = typer.Typer(help="Import usage exported by other tools (priced by fleetledger).", no_args_is_help=True)


def _run(ctx: typer.Context, items, source: str, file: Path, output: OutputFormat) -> None:  # type: ignore[no-untyped-def]
    with open_ledger(ctx) as ledger, handle_errors():
        result = ledger.ingest(items, source=source)
    if result.rejections:
        write_rejects(file.with_name(file.name + ".rejects.jsonl"), result.rejections)
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        console.print(
            f"{result.accepted:,} imported ({format_usd(result.cost_nanos)} USD), "
            f"{result.duplicates:,} already there, {result.rejected:,} rejected"
        )
        for rejection in result.rejections[:10]:
            console.print(f"  {rejection.location}: {rejection.reason}", markup=False)
    if result.rejected:
        raise typer.Exit(1)


@import_app.command("litellm-spend")
def litellm_spend(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="LiteLLM SpendLogs export (JSON or CSV)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Import a LiteLLM proxy spend-log export; calls are re-priced exactly (LiteLLM's spend kept as a tag)."""
    with handle_errors():
        items = list(read_litellm_spend_logs(file))
    _run(ctx, items, "import:litellm", file, output)


@import_app.command("openai-usage")
def openai_usage(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="OpenAI organization Usage API pages (JSON)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Import an OpenAI organization usage export (completions / embeddings buckets)."""
    with handle_errors(), open_ledger(ctx) as ledger:
        items = list(read_openai_usage(file, now=ledger.clock()))
    _run(ctx, items, "import:openai-usage", file, output)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
