"""``fleetledger forecast`` and ``fleetledger forecast runway BUDGET``."""

from __future__ import annotations

import json
import sys

import typer

from fleetledger.analytics.forecast import apply_scenario, budget_runway, forecast_many
from fleetledger.cli._common import OutputFormat, console, emit, fail, handle_errors, open_ledger

forecast_app = typer.Typer(help="Daily spend forecasts with intervals, scenarios and budget runway.")

_COLUMNS = (
    "key",
    "model",
    "history_days",
    "total_usd",
    "lo80_usd",
    "hi80_usd",
    "lo95_usd",
    "hi95_usd",
    "mape_pct",
    "coverage80_pct",
    "coverage95_pct",
    "scenario_factor",
)


def _summary(key: object, result: dict) -> dict:
    total, checks = result["total_usd"], result["backtest"]
    return {
        "key": "(none)" if key is None else key,
        "model": result["model"] or f"none: {result['reason']}",
        "history_days": result["history_days"],
        "total_usd": total.get("mean"),
        "lo80_usd": total.get("lo80"),
        "hi80_usd": total.get("hi80"),
        "lo95_usd": total.get("lo95"),
        "hi95_usd": total.get("hi95"),
        "mape_pct": checks.get("mape"),
        "coverage80_pct": checks.get("coverage80"),
        "coverage95_pct": checks.get("coverage95"),
        "scenario_factor": result["scenario"].get("factor"),
    }


@forecast_app.callback(invoke_without_command=True)
def forecast(
    ctx: typer.Context,
    level: str = typer.Option("fleet", "--level", help="fleet, department or agent."),
    department: str = typer.Option(None, "--department", help="Forecast this department only."),
    agent: str = typer.Option(None, "--agent", help="Forecast this agent only."),
    horizon: int = typer.Option(30, "--horizon", help="Days ahead: 30, 60 or 90."),
    traffic: str = typer.Option("0", "--traffic", help="Scenario: traffic change in percent, e.g. +10."),
    optimization: str = typer.Option("0", "--optimization", help="Scenario: savings in percent, e.g. -5."),
    switch_from: str = typer.Option(None, "--switch-from", help="Scenario: move traffic off this model..."),
    switch_to: str = typer.Option(None, "--switch-to", help="...onto this model (re-priced by the pricing engine)."),
    switch_share: str = typer.Option("1", "--switch-share", help="Scenario: share of --switch-from's traffic, 0-1."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Daily spend ahead, with 80%/95% intervals and the backtested error of each forecast."""
    if ctx.invoked_subcommand is not None:
        return
    if bool(switch_from) != bool(switch_to):
        fail("--switch-from and --switch-to: give both for a model switch scenario")
    switch = (switch_from, switch_to, switch_share) if switch_from and switch_to else None
    where: dict[str, list[str | None]] = {}
    if department:
        where["department"] = [department]
    if agent:
        where["agent"] = [agent]
    with open_ledger(ctx) as ledger, handle_errors():
        found = forecast_many(ledger, level="fleet" if where else level, horizon=horizon, where=where)
        results = {}
        for key, f in found.items():
            # The switch is weighed on the forecast's own scope (its recent model mix), as GET /api/forecast does.
            scope = where if where or level == "fleet" else {level: [key]}
            scenario = apply_scenario(f, traffic, optimization, switch, ledger=ledger, where=scope)
            results[agent or department or key] = scenario.to_dict()
    if output == OutputFormat.json:
        single = next(iter(results.values()), None) if where else None
        sys.stdout.write(json.dumps(single if where else results, indent=2) + "\n")
        return
    if output == OutputFormat.csv and where and results:
        [result] = results.values()
        emit(result["points"], output)
        return
    rows = [_summary(key, result) for key, result in results.items()]
    emit(rows, output, columns=_COLUMNS, title=f"Forecast of daily spend, next {horizon} days (USD)")


@forecast_app.command("runway")
def runway(
    ctx: typer.Context,
    budget: str = typer.Argument(..., help="Budget name or id."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Projected end-of-period spend, overrun probability and depletion date of a budget."""
    with open_ledger(ctx) as ledger, handle_errors():
        result = budget_runway(ledger, budget)
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
        return
    flat = {k: v for k, v in result.items() if not isinstance(v, dict)}
    # The projection's intervals as columns, so csv keeps them too.
    flat.update({f"projected_{k}_usd": v for k, v in (result.get("projected_interval_usd") or {}).items()})
    flat["scope"] = ",".join(f"{k}={'|'.join(map(str, v))}" for k, v in (result.get("scope") or {}).items())
    emit([flat], output)
    if not result.get("available"):
        console.print(f"[yellow]No projection[/]: {result.get('reason')}")


def register(app: typer.Typer) -> None:
    app.add_typer(forecast_app, name="forecast")
