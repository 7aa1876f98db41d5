"""``fleetledger costs`` and ``fleetledger price``."""

from __future__ import annotations

import json
import sys

import typer

from fleetledger.cli._common import OutputFormat, console, emit, handle_errors, open_ledger
from fleetledger.core import filters
from fleetledger.core.filters import Where
from fleetledger.core.money import convert, usd_to_nanos
from fleetledger.core.time import parse_moment
from fleetledger.pricing.quote import quote

_TABLE_COLUMNS = (
    "cost_usd",
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cost_per_request_usd",
    "cost_per_1k_tokens_usd",
    "unpriced_requests",
)


def parse_where(items: list[str]) -> Where:
    """``--where`` options in the one filter grammar (:mod:`fleetledger.core.filters`)."""
    return filters.parse_where(items, what="--where")


def register(app: typer.Typer) -> None:
    @app.command()
    def costs(
        ctx: typer.Context,
        by: str = typer.Option("", "--by", help="Comma-separated group keys: department,model,agent,day,tag.NAME..."),
        since: str = typer.Option("30d", "--since", help="30d, 24h, MTD, QTD, YTD, today or 2026-01-01."),
        until: str = typer.Option(None, "--until", help="End of the range (exclusive) [default: now]."),
        where: list[str] = typer.Option([], "--where", help="Filter key=value (repeatable; a,b for either)."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
        currency: str = typer.Option("USD", "--currency", help="Show table amounts in this currency too."),
    ) -> None:
        """Spend grouped by any dimensions over a time range. Group sums equal the total exactly."""
        with handle_errors():
            keys = [k.strip() for k in by.split(",") if k.strip()]
            filters = parse_where(where)
        with open_ledger(ctx) as ledger, handle_errors():
            report = ledger.costs(by=keys, since=since, until=until, where=filters)
            rows = report.rows()
            if output != OutputFormat.table:
                emit(rows, output)
                return
            total = report.total_json()
            columns = [*keys, *_TABLE_COLUMNS]
            extra = currency.upper() != "USD"
            if extra:
                rates = ledger.settings.fx_rates
                for row in [*rows, total]:
                    nanos = usd_to_nanos(row["cost_usd"])
                    row[f"cost_{currency.lower()}"] = str(convert(nanos, currency, rates))
                columns.insert(len(keys) + 1, f"cost_{currency.lower()}")
            title = f"Costs {report.since:%Y-%m-%d %H:%M} .. {report.until:%Y-%m-%d %H:%M} UTC"
            emit(
                [*rows, {**{k: "TOTAL" for k in keys[:1]}, **total}] if rows else rows,
                output,
                columns=columns,
                title=title,
            )
            if int(total["unpriced_requests"]):
                console.print(
                    f"[yellow]{total['unpriced_requests']:,} requests are unpriced[/] (unknown model): "
                    "add prices with `fleetledger pricing set`, then `fleetledger reprice`."
                )

    @app.command()
    def price(
        ctx: typer.Context,
        provider: str = typer.Option(None, "--provider", help="openai, anthropic, google, aws, azure, mistral..."),
        model: str = typer.Option(..., "--model"),
        input_tokens: int = typer.Option(0, "--input-tokens", help="All input tokens, cached ones included."),
        output_tokens: int = typer.Option(0, "--output-tokens", help="All output tokens, reasoning included."),
        cache_read_tokens: int = typer.Option(0, "--cache-read-tokens"),
        cache_write_tokens: int = typer.Option(0, "--cache-write-tokens"),
        reasoning_tokens: int = typer.Option(0, "--reasoning-tokens"),
        service_tier: str = typer.Option("standard", "--service-tier", help="standard, batch, flex or priority."),
        at: str = typer.Option(None, "--at", help="Price at this time (historic prices) [default: now]."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Price one request exactly and explain the price, component by component."""
        with open_ledger(ctx) as ledger, handle_errors():
            moment = parse_moment(at, now=ledger.clock(), field="--at") if at else ledger.clock()
            result = quote(
                ledger.pricer,
                provider=provider,
                model=model,
                timestamp=moment,
                service_tier=service_tier,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens,
                reasoning_tokens=reasoning_tokens,
            )
        if output == OutputFormat.json:
            sys.stdout.write(json.dumps(result, indent=2) + "\n")
            return
        emit(
            result["lines"],
            output,
            title=f"{result['provider']} / {model} at {moment:%Y-%m-%d %H:%M} UTC",
            columns=("component", "units", "price", "per", "cost_usd"),
        )
        status = "" if result["priced"] else f"  [yellow]UNPRICED[/]: {result.get('reason')}"
        console.print(
            f"Total [bold]{result['total_usd']}[/] USD; source {result['source']} ({result['version']}){status}"
        )
