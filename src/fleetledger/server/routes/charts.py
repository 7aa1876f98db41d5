"""Chart data for the dashboard: ``GET /api/charts/{chart}`` with the same range and filters as /api/costs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request

from fleetledger.access.keys import Principal
from fleetledger.analytics import charts, matrix
from fleetledger.analytics.recommendations.engine import model_quality
from fleetledger.server.audit import record_write
from fleetledger.server.deps import ledger_of, principal, scoped_where

router = APIRouter(tags=["charts"])


@router.get("/api/charts/{chart}")
def chart(
    chart: str,
    request: Request,
    since: str = Query("30d"),
    until: str | None = Query(None),
    where: list[str] = Query([], description="Filters key=value (repeatable)"),
    by: str = Query("provider", description="trend only: provider, model, department..."),
    limit: int | None = Query(None, ge=1, le=500, description="agents: rows; sankey: agents shown before folding"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """trend (stacked, with period-over-period change), providers, distribution, agents, sunburst,
    sankey, waterfall, models, provider-matrix. Every breakdown sums exactly to its total."""
    who.require("costs.read")
    filters = scoped_where(who, where)
    return charts.chart_data(ledger_of(request), chart, since=since, until=until, where=filters, by=by, limit=limit)


# -- matrices, pricing table with TCO, provider-shift estimate, the quality catalog (insights.matrix)


@router.get("/api/matrix/models")
def models_matrix(
    request: Request,
    since: str = Query("30d"),
    until: str | None = Query(None),
    where: list[str] = Query([], description="Filters key=value (repeatable)"),
    x: str = Query("request", description="Cost axis: request (cost per request) or 1k_tokens"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Model cost/quality matrix: cost per request and per 1K tokens, quality, volume, family, Pareto frontier."""
    who.require("costs.read")
    filters = scoped_where(who, where)
    return matrix.model_matrix(ledger_of(request), since=since, until=until, where=filters, x=x)


@router.get("/api/matrix/providers")
def providers_matrix(
    request: Request,
    since: str = Query("30d"),
    until: str | None = Query(None),
    where: list[str] = Query([], description="Filters key=value (repeatable)"),
    y: str = Query("p90_latency", description="Performance axis: p90_latency or quality"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Provider cost-performance matrix: cost per request vs p90 latency or quality, Pareto line, quadrants."""
    who.require("costs.read")
    filters = scoped_where(who, where)
    return matrix.provider_matrix(ledger_of(request), since=since, until=until, where=filters, y=y)


@router.get("/api/pricing/models", tags=["pricing"])
def pricing_models(
    request: Request,
    provider: list[str] = Query([], description="Providers to list (repeatable); default the main makers and clouds"),
    q: str | None = Query(None, max_length=200, description="Search provider/model"),
    used_only: bool = Query(False, description="Only models used in the last 90 days"),
    requests_per_month: str | None = Query(None, description="TCO profile: requests per month"),
    input_tokens: str = Query("0", description="TCO profile: input tokens per request"),
    output_tokens: str = Query("0", description="TCO profile: output tokens per request"),
    cache_hit_pct: str = Query("0", description="TCO profile: % of input tokens read from the prompt cache"),
    limit: int = Query(500, ge=1, le=5000),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Model pricing table (per 1M tokens: input, cached input, output; context window) with optional TCO."""
    who.require("pricing.read")
    profile = None
    if requests_per_month is not None:
        profile = {
            "requests_per_month": requests_per_month,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_hit_pct": cache_hit_pct,
        }
    return matrix.pricing_table(
        ledger_of(request), providers=provider or None, search=q, used_only=used_only, profile=profile, limit=limit
    )


@router.get("/api/pricing/tco", tags=["pricing"])
def pricing_tco(
    request: Request,
    model: str = Query(..., min_length=1, max_length=256),
    provider: str | None = Query(None, max_length=256),
    requests_per_month: str = Query(..., description="Requests per month"),
    input_tokens: str = Query(..., description="Input tokens per request"),
    output_tokens: str = Query(..., description="Output tokens per request"),
    cache_hit_pct: str = Query("0", description="% of input tokens read from the prompt cache"),
    reasoning_tokens: str = Query("0", description="Reasoning tokens per request"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Monthly and annual cost of a usage profile on one model, priced exactly by the pricing engine."""
    who.require("pricing.read")
    return matrix.tco(
        ledger_of(request),
        provider=provider,
        model=model,
        requests_per_month=requests_per_month,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_hit_pct=cache_hit_pct,
        reasoning_tokens=reasoning_tokens,
    )


@router.get("/api/whatif/provider-shift")
def whatif_provider_shift(
    request: Request,
    to_provider: str = Query(..., min_length=1, max_length=256),
    share_pct: str = Query("100", description="Share of the scope's traffic moved, in percent"),
    to_model: str | None = Query(None, max_length=256, description="Target model (default: the same model)"),
    from_provider: str | None = Query(None, max_length=256, description="Move only this provider's traffic"),
    since: str = Query("30d"),
    until: str | None = Query(None),
    where: list[str] = Query([], description="Filters key=value (repeatable)"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """What if X% of the scope's traffic moved to provider B: its real token mix re-priced there, exactly."""
    who.require("costs.read")
    filters = scoped_where(who, where)
    return matrix.provider_shift(
        ledger_of(request),
        to_provider=to_provider,
        share_pct=share_pct,
        to_model=to_model,
        from_provider=from_provider,
        since=since,
        until=until,
        where=filters,
    )


@router.get("/api/quality-catalog", tags=["pricing"])
def quality_catalog(request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """The model quality catalog (0-100 per provider/family) used by the matrix and model downgrades."""
    who.require("pricing.read")
    return model_quality(ledger_of(request))


@router.put("/api/quality-catalog", tags=["pricing"])
def update_quality_catalog(
    request: Request,
    body: dict[str, Any] = Body(..., examples=[{"families": {"openai/gpt-4o": {"score": 85, "kind": "chat"}}}]),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Merge quality scores into the catalog (a null entry removes a stored one); audited."""
    who.require("pricing.write")
    ledger = ledger_of(request)
    result = matrix.set_model_quality(ledger, body)
    record_write(ledger, who, "update", "quality_catalog", "model_quality", {"changes": body})
    return result
