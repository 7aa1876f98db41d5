"""``fleetledger pricing list|set|delete|import|diff`` and ``fleetledger reprice``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from fleetledger.cli._common import OutputFormat, console, emit, err_console, handle_errors, open_ledger
from fleetledger.core.errors import InvalidInput
from fleetledger.core.time import parse_moment
from fleetledger.pricing.overrides import add_override, delete_override, load_overrides, override_to_dict
from fleetledger.pricing.reprice import reprice as reprice_events

pricing_app = typer.Typer(
    help="Price overrides: negotiated rates, custom models, tier multipliers.", no_args_is_help=True
)


def _unit_prices(items: list[str]) -> dict[str, str]:
    prices: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--price {item!r}: use price_key=USD, e.g. input_mtok=2.5")
        prices[key.strip()] = value.strip()
    return prices


@pricing_app.command("list")
def list_(ctx: typer.Context, output: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """The stored price overrides (the genai-prices catalog applies to everything else)."""
    with open_ledger(ctx) as ledger:
        rows = [override_to_dict(o) for o in load_overrides(ledger.store)]
    for row in rows:
        if output != OutputFormat.json and row["prices"]:
            row["prices"] = ", ".join(f"{k}={v}" for k, v in row["prices"].items())
    emit(
        rows,
        output,
        columns=(
            "id",
            "kind",
            "provider",
            "model",
            "service_tier",
            "prices",
            "discount_percent",
            "multiplier",
            "effective_from",
            "effective_to",
            "note",
        ),
    )


@pricing_app.command("set")
def set_(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="Exact model name, or a pattern such as 'claude-*'."),
    provider: str = typer.Option(None, "--provider", help="Only for this provider [default: any]."),
    price: list[str] = typer.Option([], "--price", help="Unit price in USD, e.g. input_mtok=2.5 (repeatable)."),
    discount_percent: str = typer.Option(None, "--discount-percent", help="Negotiated discount off the price."),
    multiplier: str = typer.Option(None, "--multiplier", help="Tier multiplier where the catalog lacks one."),
    service_tier: str = typer.Option(None, "--service-tier", help="standard, batch, flex or priority."),
    effective_from: str = typer.Option(None, "--from", help="Effective from (inclusive) [default: always]."),
    effective_to: str = typer.Option(None, "--to", help="Effective until (exclusive) [default: open]."),
    note: str = typer.Option(None, "--note"),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Add a price override. Then run `fleetledger reprice --since ...` to apply it to history."""
    with open_ledger(ctx) as ledger, handle_errors():
        now = ledger.clock()
        override = add_override(
            ledger.store,
            model_pattern=model,
            provider=provider,
            prices=_unit_prices(price) or None,
            discount_percent=discount_percent,
            multiplier=multiplier,
            service_tier=service_tier,
            effective_from=parse_moment(effective_from, now=now, field="--from") if effective_from else None,
            effective_to=parse_moment(effective_to, now=now, field="--to") if effective_to else None,
            note=note,
            created_by="cli",
            now=now,
        )
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(override_to_dict(override), indent=2) + "\n")
    else:
        console.print(f"Added price override #{override.id} ({override.kind}) for {model}.")


@pricing_app.command("delete")
def delete(ctx: typer.Context, override_id: int = typer.Argument(..., help="The id from `pricing list`.")) -> None:
    """Delete a price override."""
    with open_ledger(ctx) as ledger, handle_errors():
        delete_override(ledger.store, override_id)
    console.print(f"Deleted price override #{override_id}.")


@pricing_app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="LiteLLM price map JSON, or a price list CSV/JSON."
    ),
    file_format: str = typer.Option("auto", "--from", help="litellm, list or auto."),
    all_models: bool = typer.Option(False, "--all", help="LiteLLM: also override models the catalog prices."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Import prices: LiteLLM's model_prices_and_context_window.json, or your negotiated price list."""
    from fleetledger.pricing.litellm import (
        import_litellm,
        import_price_list,
        load_litellm_prices,
        load_price_list,
        looks_like_litellm,
    )

    with open_ledger(ctx) as ledger, handle_errors():
        kind = file_format
        if kind == "auto":
            kind = "litellm" if looks_like_litellm(file) else "list"
        summary: dict[str, Any]
        if kind == "litellm":
            summary = import_litellm(
                ledger.store,
                load_litellm_prices(file),
                only_missing=not all_models,
                now=ledger.clock(),
                created_by="cli",
            )
        elif kind == "list":
            price_list = load_price_list(file)
            summary = dict(import_price_list(ledger.store, price_list, now=ledger.clock(), created_by="cli"))
            summary["rejections"] = [f"row {row}: {reason}" for row, reason in price_list.rejected]
        else:
            raise InvalidInput(f"--from {file_format!r}: use litellm, list or auto")
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        console.print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in summary.items() if not isinstance(v, list)))
        rejections: list[Any] = summary.get("rejections") or []  # type: ignore[assignment]
        for item in rejections:
            console.print(f"  rejected {item}", markup=False)


@pricing_app.command("diff")
def diff(
    ctx: typer.Context,
    against: Path = typer.Option(
        None, "--against", exists=True, dir_okay=False, help="A LiteLLM price map to compare with the catalog."
    ),
    provider: list[str] = typer.Option([], "--provider", help="Only these providers (repeatable)."),
    at: str = typer.Option(None, "--at", help="Compare prices in force at this time [default: now]."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Where two price sources disagree: catalog vs your overrides, or catalog vs a LiteLLM map."""
    from fleetledger.pricing.diff import CatalogSource, LiteLLMSource, OverrideSource, diff_prices, differences_to_rows
    from fleetledger.pricing.litellm import load_litellm_prices

    with open_ledger(ctx) as ledger, handle_errors():
        moment = parse_moment(at, now=ledger.clock(), field="--at") if at else ledger.clock()
        other = LiteLLMSource(load_litellm_prices(against)) if against else OverrideSource(load_overrides(ledger.store))
        rows = differences_to_rows(diff_prices(CatalogSource(), other, at=moment, providers=set(provider) or None))
    if not rows and output == OutputFormat.table:
        console.print("No differences.")
        return
    emit(rows, output, title="catalog (a) vs " + ("LiteLLM map (b)" if against else "stored overrides (b)"))


def register(app: typer.Typer) -> None:
    app.add_typer(pricing_app, name="pricing")

    @app.command()
    def reprice(
        ctx: typer.Context,
        since: str = typer.Option(..., "--since", help="Re-price events from here: 30d, MTD, 2026-01-01..."),
        until: str = typer.Option(None, "--until", help="Up to here (exclusive) [default: all]."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Re-price stored events with the current catalog and overrides (after a price change)."""
        with open_ledger(ctx) as ledger, handle_errors():
            now = ledger.clock()
            start = parse_moment(since, now=now, field="--since")
            end = parse_moment(until, now=now, field="--until") if until else None
            progress = Progress(
                TextColumn("[bold]reprice"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("days"),
                console=err_console,
                disable=output == OutputFormat.json or not sys.stderr.isatty(),
                transient=True,
            )
            with progress:
                task = progress.add_task("reprice", total=None)
                result = reprice_events(
                    ledger,
                    start,
                    end,
                    on_progress=lambda done, total: progress.update(task, completed=done, total=total),
                )
        if output == OutputFormat.json:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        else:
            summary = result.to_dict()
            console.print(
                f"Re-priced {summary['events']:,} events: {summary['changed']:,} changed "
                f"({summary['newly_priced']:,} newly priced), total change {summary['delta_usd']} USD."
            )
