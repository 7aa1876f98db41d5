"""``fleetledger demo``."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fleetledger.cli._common import OutputFormat, console, emit, err_console, handle_errors, open_ledger
from fleetledger.core.money import format_usd


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        ctx: typer.Context,
        seed: int = typer.Option(7, "--seed", help="Same seed, same fleet and events."),
        days: int = typer.Option(90, "--days", min=14, max=730),
        events: int = typer.Option(200_000, "--events", min=1000, max=100_000_000),
        budgets: bool = typer.Option(
            True, "--budgets/--no-budgets", help="Also add monthly budgets for the fleet and each department."
        ),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Build a realistic synthetic fleet ledger (replaces earlier demo data, keeps real data)."""
        from fleetledger.demo import DemoSpec, load_demo

        with open_ledger(ctx) as ledger, handle_errors():
            end = ledger.clock().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            spec = DemoSpec(seed=seed, days=days, events=events, end=end)
            progress = Progress(
                TextColumn("[bold]demo"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("events"),
                TimeRemainingColumn(),
                console=err_console,
                disable=output == OutputFormat.json or not sys.stderr.isatty(),
                transient=True,
            )
            with progress:
                task = progress.add_task("demo", total=events)
                summary = load_demo(ledger, spec, on_progress=lambda n: progress.advance(task, n), budgets=budgets)
            report = ledger.costs(by=["department"], since=spec.end - timedelta(days=days), until=spec.end)
        if output == OutputFormat.json:
            sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
            return
        console.print(
            f"[bold green]Demo ledger ready[/]: {summary['accepted']:,} events over {days} days, "
            f"{summary['departments']} departments, {summary['agents']} agents, {summary['models']} models, "
            f"total {format_usd(int(report.total['cost_nanos']))} USD "
            f"({summary['unpriced']:,} unpriced events on a self-hosted model)."
        )
        emit(
            report.rows()[:12],
            OutputFormat.table,
            columns=("department", "cost_usd", "requests", "cost_per_request_usd"),
            title="Spend by department",
        )
        if summary["budgets_created"]:
            console.print(
                f"{len(summary['budgets_created'])} monthly budgets added (fleet and departments, action notify): "
                "fleetledger budget status"
            )
        console.print(
            f"{len(summary['ground_truth'])} injected anomalies are recorded as ground truth "
            "(meta key demo_ground_truth)."
        )
        console.print("\nNext, try:")
        for command in (
            "fleetledger costs --by department --since 30d",
            "fleetledger costs --by provider,model --since MTD --format json",
            "fleetledger costs --by day --since 14d --where department=research",
            "fleetledger costs --by agent --since 7d --where environment=production",
            "fleetledger price --provider anthropic --model claude-sonnet-4-5 --input-tokens 250000 "
            "--output-tokens 2000",
            "fleetledger pricing set --provider vllm --model acme-llama-70b-ft --price input_mtok=0.4 "
            "--price output_mtok=0.8 && fleetledger reprice --since 90d",
        ):
            console.print(f"  [cyan]{command}[/]")
