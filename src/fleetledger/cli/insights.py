"""``fleetledger roi|allocate|chargeback|experiments|fitness``: thin commands over :mod:`fleetledger.analytics`."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

import typer

from fleetledger.analytics import allocation, experiments, fitness
from fleetledger.analytics import roi as roi_model
from fleetledger.analytics.charts import CHART_NAMES, chart_data
from fleetledger.cli._common import OutputFormat, console, emit, handle_errors, open_ledger
from fleetledger.core.errors import InvalidInput

roi_app = typer.Typer(help="ROI of cost optimizations: savings, payback months, 3-year ROI.")
experiments_app = typer.Typer(help="A/B cost experiments tagged tags.experiment and tags.arm.", no_args_is_help=True)

_ROI_ROWS = (
    ("monthly_savings", "Monthly savings (USD)"),
    ("annual_savings", "Annual savings (USD)"),
    ("payback_months", "Payback (months)"),
    ("monthly_roi_pct", "Monthly ROI (%)"),
    ("roi_3y_pct", "ROI over the horizon (%)"),
    ("net_3y", "Net over the horizon (USD)"),
    ("cost_reduction_pct", "Cost reduction (%)"),
)


def _json(value: Any) -> None:
    sys.stdout.write(json.dumps(roi_model.to_json(value), indent=2, default=str) + "\n")


def _show_roi(result: dict[str, Any], output: OutputFormat, title: str) -> None:
    if output == OutputFormat.json:
        _json(result)
        return
    rows = [
        {"measure": label, "value": "n/a" if result.get(key) is None else f"{result[key]:f}"}
        for key, label in _ROI_ROWS
    ]
    emit(rows, output, columns=("measure", "value"), title=title)


@roi_app.callback(invoke_without_command=True)
def roi(
    ctx: typer.Context,
    baseline_monthly: str = typer.Option(None, "--baseline-monthly", help="Monthly cost before, USD."),
    optimized_monthly: str = typer.Option(None, "--optimized-monthly", help="Monthly cost after, USD."),
    investment: str = typer.Option("0", "--investment", help="One-off cost of the optimization, USD."),
    operating: str = typer.Option("0", "--monthly-operating-cost", help="Running cost of the optimization, USD/month."),
    months: int = typer.Option(36, "--months", help="Horizon of the ROI figure."),
    scenarios: bool = typer.Option(False, "--scenarios", help="Conservative / realistic / optimistic table."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Monthly savings, payback months and 3-year ROI (seed 001 formulas). `roi caching` for a cache."""
    if ctx.invoked_subcommand is not None:
        return
    with handle_errors():
        if scenarios:
            if baseline_monthly is None:
                rows = roi_model.scenario_table(months=months)
            else:
                rows = roi_model.scenarios_for(baseline_monthly, investment, months=months)
            if output == OutputFormat.json:
                _json(rows)
            else:
                emit(
                    roi_model.to_json(rows),
                    output,
                    columns=(
                        "scenario",
                        "cost_reduction_pct",
                        "investment",
                        "baseline_monthly",
                        "monthly_savings",
                        "payback_months",
                        "roi_3y_pct",
                    ),
                    title="ROI scenarios",
                )
            return
        if baseline_monthly is None or optimized_monthly is None:
            raise InvalidInput(
                "roi: give --baseline-monthly and --optimized-monthly (or --scenarios, or `roi caching`)"
            )
        result = roi_model.roi(baseline_monthly, optimized_monthly, investment, months, operating)
    _show_roi(result, output, f"ROI over {months} months")


@roi_app.command("caching")
def roi_caching(
    ctx: typer.Context,
    hit_rate: str = typer.Option(..., "--hit-rate", help="Target cache hit rate on cacheable requests, %."),
    investment: str = typer.Option("0", "--investment", help="One-off cost of the cache, USD."),
    operating: str = typer.Option("0", "--monthly-operating-cost", help="Running cost of the cache, USD/month."),
    monthly_spend: str = typer.Option(None, "--monthly-spend", help="Monthly spend, USD (default: from the ledger)."),
    cacheable: str = typer.Option("100", "--cacheable-pct", help="With --monthly-spend: cacheable share, %."),
    saving: str = typer.Option("90", "--saving-per-hit", help="Share of a request's cost a hit saves, %."),
    since: str = typer.Option("30d", "--since", help="Range the ledger's cacheable spend is read from."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Savings and payback of a response cache at a target hit rate, from repeated prompt_hash spend."""
    arguments: dict[str, Any] = {
        "hit_rate_pct": hit_rate,
        "investment": investment,
        "monthly_operating_cost": operating,
        "saving_per_hit_pct": saving,
    }
    if monthly_spend is not None:
        with handle_errors():
            result = roi_model.caching_roi(monthly_spend=monthly_spend, cacheable_pct=cacheable, **arguments)
    else:
        with open_ledger(ctx) as ledger, handle_errors():
            result = roi_model.caching_roi(ledger=ledger, since=since, **arguments)
    if output == OutputFormat.table:  # csv and json stay machine-readable
        console.print(
            f"Cacheable spend {result['monthly_cacheable_spend']:f} of {result['monthly_spend']:f} USD/month; "
            f"hit rate {result['hit_rate_pct']:f}%",
            highlight=False,
        )
    _show_roi(result, output, "Caching ROI")


@experiments_app.command("create")
def experiments_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The experiment's name: the value of tags.experiment."),
    control: str = typer.Option(..., "--control", help="What the control arm runs (model, prompt version)."),
    treatment: str = typer.Option(..., "--treatment", help="What the treatment arm runs."),
    hypothesis: str = typer.Option(None, "--hypothesis", help="What you expect, in a sentence."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Record an experiment. Tag its events experiment=NAME and arm=control|treatment (quality= optional)."""
    with open_ledger(ctx) as ledger, handle_errors():
        definition = experiments.create(ledger, name, control=control, treatment=treatment, hypothesis=hypothesis)
    if output == OutputFormat.json:
        _json(definition)
        return
    console.print(
        f"Experiment [bold]{name}[/] created. Tag its events "
        f'tags={{"experiment": "{name}", "arm": "control"}} or "treatment".',
        highlight=False,
    )


@experiments_app.command("list")
def experiments_list(ctx: typer.Context, output: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """Recorded experiments."""
    with open_ledger(ctx) as ledger, handle_errors():
        rows = experiments.list_experiments(ledger)
    emit(rows, output, columns=("name", "control", "treatment", "hypothesis", "created_at"))


@experiments_app.command("analyze")
def experiments_analyze(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The experiment's name (tags.experiment)."),
    since: str = typer.Option("90d", "--since"),
    until: str = typer.Option(None, "--until"),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Cost, quality and latency per arm, Welch's interval on the cost difference, and a verdict."""
    with open_ledger(ctx) as ledger, handle_errors():
        result = experiments.analyze(ledger, name, since=since, until=until)
    if output == OutputFormat.json:
        _json(result)
        return
    emit(_experiment_rows(result), output, columns=_EXPERIMENT_COLUMNS, title=f"Experiment {name}")
    if output == OutputFormat.table:
        console.print(f"[bold]{result['verdict']}[/]: {result['summary']}", highlight=False)


_EXPERIMENT_COLUMNS = (
    "arm",
    "requests",
    "cost_usd",
    "mean_cost_per_request_usd",
    "ci_low_usd",
    "ci_high_usd",
    "p_value",
    "avg_latency_ms",
    "quality",
    "error_rate",
    "needed_per_arm",
    "verdict",
)


def _experiment_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per arm, then the treatment - control difference with its interval, sample size and verdict."""
    rows: list[dict[str, Any]] = [{"arm": arm, **summary} for arm, summary in result["arms"].items()]
    difference = result.get("difference") or {}
    quality = result.get("quality_difference") or {}
    rows.append(
        {
            "arm": "treatment - control",
            "mean_cost_per_request_usd": difference.get("mean_cost_per_request_usd"),
            "ci_low_usd": difference.get("ci_low_usd"),
            "ci_high_usd": difference.get("ci_high_usd"),
            "p_value": difference.get("p_value"),
            "quality": quality.get("mean"),
            "needed_per_arm": result.get("needed_per_arm"),
            "verdict": result["verdict"],
        }
    )
    return rows


def _weights(text: str | None) -> dict[str | None, str] | None:
    if not text:
        return None
    weights: dict[str | None, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--weights {item!r}: use name=weight, e.g. research=2,support=1")
        weights[key.strip()] = value.strip()
    return weights


def register(app: typer.Typer) -> None:
    register_charts(app)
    app.add_typer(whatif_app, name="whatif")
    app.add_typer(roi_app, name="roi")
    app.add_typer(experiments_app, name="experiments")

    @app.command()
    def allocate(
        ctx: typer.Context,
        since: str = typer.Option("MTD", "--since"),
        until: str = typer.Option(None, "--until"),
        over: str = typer.Option("department", "--over", help="department, project, cost_center or team."),
        method: str = typer.Option("proportional", "--method", help="even, proportional or weights."),
        weights: str = typer.Option(None, "--weights", help="With --method weights: research=2,support=1."),
        shared: str = typer.Option(
            ",".join(allocation.SHARED_CATEGORIES), "--shared-categories", help="Categories that are shared cost."
        ),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Fully loaded cost: direct spend plus a share of shared (infrastructure, storage) cost."""
        with handle_errors():
            parsed = _weights(weights)
            categories: list[str | None] = [c.strip() for c in shared.split(",") if c.strip()]
        with open_ledger(ctx) as ledger, handle_errors():
            rows = allocation.allocate_shared(
                ledger,
                since=since,
                until=until,
                over=over,
                method=method,
                weights=parsed,
                shared_where={"category": categories},
            )
        if output == OutputFormat.json:  # the shape of GET /api/allocation
            _json({"over": over, "method": method, "rows": rows, "total": allocation.allocation_totals(rows)})
            return
        if output == OutputFormat.csv:
            emit(rows, output)
            return
        _emit_rounded(rows, over, f"Fully loaded cost by {over} ({method})")

    @app.command()
    def chargeback(
        ctx: typer.Context,
        period: str = typer.Option(..., "--period", help="2026-10, 2026-Q4 or 2026."),
        method: str = typer.Option("proportional", "--method", help="even or proportional."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """What each cost center is charged for a period, shared costs included; sums to the total."""
        with open_ledger(ctx) as ledger, handle_errors():
            result = allocation.chargeback(ledger, period, method=method)
        if output == OutputFormat.json:
            _json(result)
            return
        if output == OutputFormat.csv:
            emit(result["rows"], output)
            return
        _emit_rounded(
            result["rows"], "cost_center", f"Chargeback {period}" + ("" if result["complete"] else " (to date)")
        )

    @app.command("fitness")
    def fitness_(
        ctx: typer.Context,
        since: str = typer.Option("30d", "--since"),
        until: str = typer.Option(None, "--until"),
        weights: str = typer.Option(
            "0.4,0.3,0.3", "--weights", help="effectiveness,efficiency,cost_efficiency (seed 002 defaults)."
        ),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """Per-agent fitness 0..1: effectiveness, efficiency (latency) and cost efficiency, weighted."""
        with handle_errors():
            try:
                parsed = [float(w) for w in weights.split(",")]
            except ValueError:
                raise InvalidInput(f"--weights {weights!r}: give three numbers, e.g. 0.4,0.3,0.3") from None
        with open_ledger(ctx) as ledger, handle_errors():
            rows = fitness.agent_fitness(ledger, since=since, until=until, weights=parsed)
        emit(
            rows,
            output,
            columns=(
                "agent",
                "fitness",
                "effectiveness",
                "efficiency",
                "cost_efficiency",
                "requests",
                "cost_usd",
                "cost_per_effective_request_usd",
            ),
            title="Agent fitness",
        )


def _emit_rounded(rows: list[dict[str, Any]], key: str, title: str) -> None:
    """A table in cents whose columns still add up exactly to their (rounded) totals."""
    columns = ("direct_usd", "shared_allocated_usd", "fully_loaded_usd")
    if not rows:
        emit([], OutputFormat.table, columns=(key, *columns), title=title)
        return
    shown = [
        {key: "(none)" if r[key] is None else r[key], "allocation_share_pct": r["allocation_share_pct"]} for r in rows
    ]
    shares = sum((Decimal(r["allocation_share_pct"]) for r in rows), Decimal(0))
    totals: dict[str, Any] = {key: "TOTAL", "allocation_share_pct": f"{shares:f}"}
    for column in columns:
        rounded = allocation.round_breakdown({i: r[column] for i, r in enumerate(rows)})
        for i, value in rounded.items():
            shown[i][column] = f"{value:f}"
        totals[column] = f"{sum(rounded.values(), Decimal(0)):f}"
    emit([*shown, totals], OutputFormat.table, columns=(key, *columns, "allocation_share_pct"), title=title)


# -- chart data (dashboard spec charts 3.x) ----------------------------------------------------------

CHARTS = CHART_NAMES


def _leaves(nodes: list[dict[str, Any]], levels: list[str], path: tuple = ()) -> list[dict[str, Any]]:
    """A sunburst tree as one row per leaf path (department, agent, model, operation, cost_usd)."""
    rows: list[dict[str, Any]] = []
    for node in nodes:
        here = (*path, node["name"])
        if node.get("children"):
            rows.extend(_leaves(node["children"], levels, here))
        else:
            rows.append({**dict(zip(levels, here, strict=False)), "cost_usd": node["value_usd"]})
    return rows


def _chart_rows(name: str, data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str] | None, str | None]:
    """(rows, columns, a footer line) of a chart for table and csv output; json prints ``data`` whole."""
    if name == "trend":
        # Long format: one row per day and series; the table shows each series' total and change.
        rows = [
            {"day": day, data["by"]: s["key"], "cost_usd": s["points"][i]}
            for s in data["series"]
            for i, day in enumerate(data["days"])
        ]
        return rows, ["day", data["by"], "cost_usd"], f"total {data['total_usd']} USD"
    if name == "providers":
        return data["providers"], None, None
    if name == "distribution":
        footer = (
            f"{data['requests']:,} requests; p50 {data.get('p50_usd')} p90 {data.get('p90_usd')} "
            f"p99 {data.get('p99_usd')} USD; outlier fence {data.get('outlier_fence_usd')} USD; "
            f"{len(data['outliers'])} outliers (json lists them)"
        )
        return data["histogram"], ["from_usd", "to_usd", "requests"], footer
    if name == "agents":
        return data["agents"], None, None
    if name == "sunburst":
        return (
            _leaves(data["children"], data["levels"]),
            [*data["levels"], "cost_usd"],
            f"total {data['total_usd']} USD",
        )
    if name == "sankey":
        return data["links"], ["source", "target", "value_usd"], None
    if name == "waterfall":
        footer = f"total {data['total_usd']} USD; the cache saved {data['cache_saved_usd']} USD"
        return data["steps"], ["name", "cost_usd"], footer
    if name == "models":
        columns = ["provider", "model", "family", "quality", "requests", "cost_usd", "cost_per_request_usd",
                   "cost_per_1k_tokens_usd", "avg_latency_ms", "pareto"]  # fmt: skip
        return data["models"], columns, "pareto = on the cost/quality frontier (quality from the editable catalog)"
    columns = ["provider", "requests", "cost_usd", "cost_per_request_usd", "p90_latency_ms", "quality",
               "reliability_pct", "pareto", "quadrant"]  # fmt: skip
    return data["providers"], columns, None


def _trend_summary(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            data["by"]: s["key"],
            "total_usd": s["total_usd"],
            "previous_usd": s["previous_usd"],
            "change_pct": s["change_pct"],
        }
        for s in data["series"]
    ]


def register_charts(app: typer.Typer) -> None:
    @app.command("chart")
    def chart(
        ctx: typer.Context,
        name: str = typer.Argument(..., help=", ".join(CHARTS)),
        since: str = typer.Option("30d", "--since"),
        until: str = typer.Option(None, "--until"),
        where: list[str] = typer.Option([], "--where", help="Filter key=value (repeatable; a,b for either)."),
        by: str = typer.Option("provider", "--by", help="trend: stack by provider, model, department..."),
        limit: int = typer.Option(None, "--limit", min=1, max=500, help="agents: rows; sankey: agents before folding."),
        output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    ) -> None:
        """The data behind a Cost Management chart (3.x); every breakdown sums exactly to its total."""
        from fleetledger.cli.costs import parse_where

        with open_ledger(ctx) as ledger, handle_errors():
            data = chart_data(ledger, name, since=since, until=until, where=parse_where(where), by=by, limit=limit)
        if output == OutputFormat.json:
            _json(data)
            return
        rows, columns, footer = _chart_rows(name, data)
        if name == "trend" and output == OutputFormat.table:
            rows, columns = _trend_summary(data), None
        emit(rows, output, columns=columns, title=f"Chart {name}, {data['since'][:10]} .. {data['until'][:10]}")
        if footer and output == OutputFormat.table:
            console.print(footer, highlight=False)


# -- what-if: provider shift (3.6) and the pricing table with TCO (3.17) -------------------------------

whatif_app = typer.Typer(help="What-if estimates priced by the pricing engine.", no_args_is_help=True)


@whatif_app.command("provider-shift")
def whatif_provider_shift(
    ctx: typer.Context,
    to_provider: str = typer.Option(..., "--to-provider", help="Provider the traffic would move to."),
    share_pct: str = typer.Option("100", "--share-pct", help="Share of the scope's traffic moved, %."),
    to_model: str = typer.Option(None, "--to-model", help="Target model (default: the same model there)."),
    from_provider: str = typer.Option(None, "--from-provider", help="Move only this provider's traffic."),
    since: str = typer.Option("30d", "--since"),
    until: str = typer.Option(None, "--until"),
    where: list[str] = typer.Option([], "--where", help="Filter key=value (repeatable; a,b for either)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """What the scope would have cost with X% of its traffic on another provider (its real token mix)."""
    from fleetledger.analytics import matrix
    from fleetledger.cli.costs import parse_where
    from fleetledger.storage.query import validate_keys

    with handle_errors():
        filters = parse_where(where)
        validate_keys(list(filters), what="where")
    with open_ledger(ctx) as ledger, handle_errors():
        result = matrix.provider_shift(
            ledger,
            to_provider=to_provider,
            share_pct=share_pct,
            to_model=to_model,
            from_provider=from_provider,
            since=since,
            until=until,
            where=filters,
        )
    if output == OutputFormat.json:
        _json(result)
        return
    columns = ("provider", "model", "target_model", "requests", "moved_requests", "cost_usd", "moved_current_usd",
               "moved_target_usd", "savings_usd", "reason")  # fmt: skip
    emit(result["groups"], output, columns=columns, title=f"{share_pct}% of the traffic to {to_provider}")
    if output == OutputFormat.table:
        console.print(
            f"Current {result['current_usd']} USD -> projected {result['projected_usd']} USD: "
            f"saves {result['savings_usd']} USD ({result['savings_pct']}%)",
            highlight=False,
        )


@whatif_app.command("pricing")
def whatif_pricing(
    ctx: typer.Context,
    provider: list[str] = typer.Option([], "--provider", help="Providers to list (repeatable)."),
    search: str = typer.Option(None, "--search", help="Search provider/model."),
    used_only: bool = typer.Option(False, "--used-only", help="Only models used in the last 90 days."),
    requests_per_month: str = typer.Option(None, "--requests-per-month", help="TCO profile: requests per month."),
    input_tokens: str = typer.Option("0", "--input-tokens", help="TCO profile: input tokens per request."),
    output_tokens: str = typer.Option("0", "--output-tokens", help="TCO profile: output tokens per request."),
    cache_hit_pct: str = typer.Option("0", "--cache-hit-pct", help="TCO profile: % of input read from the cache."),
    limit: int = typer.Option(500, "--limit", min=1, max=5000),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Model prices per 1M tokens and context window; with a usage profile, each model's monthly TCO."""
    from fleetledger.analytics import matrix

    profile = None
    if requests_per_month is not None:
        profile = {
            "requests_per_month": requests_per_month,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_hit_pct": cache_hit_pct,
        }
    with open_ledger(ctx) as ledger, handle_errors():
        result = matrix.pricing_table(
            ledger, providers=provider or None, search=search, used_only=used_only, profile=profile, limit=limit
        )
    if output == OutputFormat.json:
        _json(result)
        return
    columns = ["provider", "model", "input_per_1m_usd", "cached_input_per_1m_usd", "output_per_1m_usd",
               "context_window", "requests_90d"]  # fmt: skip
    if profile is not None:
        columns += ["tco_monthly_usd", "best_value"]
    emit(result["models"], output, columns=columns, title="Model pricing (USD per 1M tokens)")
