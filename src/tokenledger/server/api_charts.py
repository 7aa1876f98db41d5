"""Chart data for the dashboard: ``GET /api/charts/{chart}`` with the same range and filters as /api/costs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from ..access import Principal
from ..errors import InvalidInput
from ..insights import charts
from ..store.query import validate_keys
from .api_read import _scoped, _where
from .app import ledger_of, principal

router = APIRouter(tags=["charts"])

_CHARTS = {
    "trend": charts.spend_trend,
    "providers": charts.provider_comparison,
    "distribution": charts.cost_distribution,
    "agents": charts.top_agents,
    "sunburst": charts.sunburst,
    "sankey": charts.sankey,
    "waterfall": charts.token_waterfall,
}


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
    sankey, waterfall. Every breakdown sums exactly to its total."""
    who.require("costs.read")
    function = _CHARTS.get(chart)
    if function is None:
        raise InvalidInput(f"chart: {chart!r} must be one of {', '.join(_CHARTS)}")
    filters = _scoped(who, _where(where))
    validate_keys(list(filters), what="where")
    kwargs: dict[str, Any] = {"since": since, "until": until, "where": filters}
    if chart == "trend":
        validate_keys([by], what="by")
        kwargs["by"] = by
    if limit is not None and chart in ("agents", "sankey"):
        kwargs["limit" if chart == "agents" else "max_agents"] = limit
    return function(ledger_of(request), **kwargs)
