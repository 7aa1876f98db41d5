"""Forecast routes: daily spend ahead with intervals and scenarios, and budget runway.

Department-scoped keys see only their departments, as for costs (see :mod:`fleetledger.server.routes.read`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import func, select

from fleetledger.access.keys import Principal
from fleetledger.analytics.forecast import apply_scenario, budget_runway, forecast_many
from fleetledger.core.errors import Forbidden, InvalidInput
from fleetledger.server.deps import BudgetKey, ledger_of, principal, scoped
from fleetledger.storage.schema import events

router = APIRouter(tags=["insights"])

#: Fitted forecasts are reused while no event was added (the newest event id is unchanged) for at
#: most this many seconds, so the dashboard's forecast panels do not refit on every page load; a
#: re-price without new events shows after the TTL.
CACHE_TTL_S = 60.0
_cache: dict[tuple[Any, ...], tuple[float, int, dict[Any, Any]]] = {}
_cache_lock = threading.Lock()


def _cached_forecasts(ledger: Any, level: str, horizon: int, where: dict[str, list[str | None]]) -> dict[Any, Any]:
    ledger.flush()
    with ledger.store.read() as conn:
        latest = int(conn.execute(select(func.max(events.c.id))).scalar() or 0)
    key = (
        id(ledger),
        level,
        horizon,
        tuple(sorted((k, tuple(map(str, v))) for k, v in where.items())),
        ledger.clock().date(),
    )
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[1] == latest and now - hit[0] < CACHE_TTL_S:
        return hit[2]
    found = forecast_many(ledger, level=level, horizon=horizon, where=where)
    with _cache_lock:
        if len(_cache) > 256:
            _cache.clear()
        _cache[key] = (now, latest, found)
    return found


@router.get("/api/forecast")
def forecast(
    request: Request,
    level: str = Query("fleet", description="fleet, department or agent"),
    department: str | None = Query(None, description="Forecast this department only"),
    agent: str | None = Query(None, description="Forecast this agent only"),
    horizon: int = Query(30, ge=1, le=366, description="Days ahead: 30, 60 or 90"),
    traffic_pct: str = Query("0", description="Scenario: traffic change in percent, e.g. 10"),
    optimization_pct: str = Query("0", description="Scenario: savings from optimizations in percent, e.g. 5"),
    switch_from: str | None = Query(None, max_length=256, description="Scenario: move traffic off this model"),
    switch_to: str | None = Query(None, max_length=256, description="Scenario: onto this model"),
    switch_share: str = Query("1", description="Scenario: share of switch_from's traffic moved, 0-1"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Daily spend forecasts (80% and 95% intervals, backtested MAPE and coverage) under a scenario."""
    who.require("costs.read")
    where: dict[str, list[str | None]] = {"department": [department]} if department else {}
    where = scoped(who, where)
    if agent:
        where["agent"] = [agent]
    single = bool(department or agent)
    found = _cached_forecasts(ledger_of(request), "fleet" if single else level, horizon, where)
    if bool(switch_from) != bool(switch_to):
        raise InvalidInput("switch_from and switch_to: give both for a model switch scenario")
    switch = (switch_from, switch_to, switch_share) if switch_from and switch_to else None
    forecasts = []
    for key, result in found.items():
        name = agent or department or key
        scope = where if single else {**where, level: [key]} if level != "fleet" else where
        scenario = apply_scenario(
            result,
            traffic_pct,
            optimization_pct,
            switch,
            ledger=ledger_of(request),
            where=scope,  # type: ignore[arg-type]
        )
        forecasts.append({"key": name, **scenario.to_dict()})
    return {"level": "fleet" if single else level, "horizon_days": horizon, "forecasts": forecasts}


@router.get("/api/budgets/{key}/runway", tags=["budgets"])
def runway(key: BudgetKey, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
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
