"""Forecast routes: daily spend ahead with intervals and scenarios, and budget runway.

Department-scoped keys see only their departments, as for costs (see :mod:`.api_read`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from ..access import Principal
from ..errors import Forbidden
from ..insights.forecast import apply_scenario, budget_runway, forecast_many
from .api_read import _scoped
from .app import ledger_of, principal

router = APIRouter(tags=["insights"])


@router.get("/api/forecast")
def forecast(
    request: Request,
    level: str = Query("fleet", description="fleet, department or agent"),
    department: str | None = Query(None, description="Forecast this department only"),
    agent: str | None = Query(None, description="Forecast this agent only"),
    horizon: int = Query(30, ge=1, le=366, description="Days ahead: 30, 60 or 90"),
    traffic_pct: str = Query("0", description="Scenario: traffic change in percent, e.g. 10"),
    optimization_pct: str = Query("0", description="Scenario: savings from optimizations in percent, e.g. 5"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Daily spend forecasts (80% and 95% intervals, backtested MAPE and coverage) under a scenario."""
    who.require("costs.read")
    where: dict[str, list[str | None]] = {"department": [department]} if department else {}
    where = _scoped(who, where)
    if agent:
        where["agent"] = [agent]
    single = bool(department or agent)
    found = forecast_many(ledger_of(request), level="fleet" if single else level, horizon=horizon, where=where)
    forecasts = []
    for key, result in found.items():
        name = agent or department or key
        forecasts.append({"key": name, **apply_scenario(result, traffic_pct, optimization_pct).to_dict()})
    return {"level": "fleet" if single else level, "horizon_days": horizon, "forecasts": forecasts}


@router.get("/api/budgets/{key}/runway", tags=["budgets"])
def runway(key: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """A budget's projected end-of-period spend, overrun probability and depletion date."""
    who.require("costs.read")
    ledger = ledger_of(request)
    budget = ledger.budgets.get(key)
    if who.scoped:
        departments = budget.scope.get("department", [])
        if not departments:
            raise Forbidden(f"this {who.role} key covers department(s) {', '.join(who.departments)}, not the org")
        for department in departments:
            who.check_department(department)
    return budget_runway(ledger, budget)
