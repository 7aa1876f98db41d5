"""Insight routes: ROI, shared-cost allocation, chargeback, cost experiments, agent fitness.

Thin adapters over :mod:`fleetledger.analytics`. Money is a decimal string. Department-scoped keys
(department_head, viewer) get their departments' part of allocations and chargebacks (computed over
the whole organisation first, so a department's figures do not depend on who asks), and only their
departments' agents' fitness.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request

from fleetledger.access.keys import Principal
from fleetledger.analytics import allocation, experiments, fitness
from fleetledger.analytics import roi as roi_model
from fleetledger.core.errors import InvalidInput
from fleetledger.server.deps import ledger_of, principal

router = APIRouter(tags=["insights"])


def _departments(who: Principal, department: list[str] | None = None) -> list[str | None] | None:
    return who.allowed_departments(department or None)


@router.get("/api/roi")
def roi(
    request: Request,
    baseline_monthly: str | None = Query(None, description="Monthly cost before the optimization, USD"),
    optimized_monthly: str | None = Query(None, description="Monthly cost after, USD"),
    investment: str = Query("0", description="One-off cost of the optimization, USD"),
    monthly_operating_cost: str = Query("0", description="Running cost of the optimization, USD per month"),
    months: int = Query(36, ge=1, le=600, description="Horizon of the ROI figure"),
    hit_rate: str | None = Query(None, description="Caching ROI instead: target hit rate on cacheable requests, %"),
    since: str = Query("30d", description="With hit_rate: range the ledger's cacheable spend is read from"),
    scenarios: bool = Query(False, description="The conservative / realistic / optimistic table (seed 001)"),
    who: Principal = Depends(principal),
) -> Any:
    """Savings, payback months and ROI (seed 001 formulas); a caching ROI with ``hit_rate``."""
    who.require("costs.read")
    if scenarios:
        if baseline_monthly is None:
            return roi_model.to_json(roi_model.scenario_table(months=months))
        return roi_model.to_json(roi_model.scenarios_for(baseline_monthly, investment, months=months))
    if hit_rate is not None:
        if who.scoped:
            # The cacheable spend is organisation-wide; a scoped key gives its own figures.
            if baseline_monthly is None:
                raise InvalidInput("hit_rate: with a department key, give baseline_monthly (your monthly spend)")
            result = roi_model.caching_roi(
                hit_rate_pct=hit_rate,
                investment=investment,
                monthly_operating_cost=monthly_operating_cost,
                monthly_spend=baseline_monthly,
                months=months,
            )
        else:
            result = roi_model.caching_roi(
                hit_rate_pct=hit_rate,
                investment=investment,
                monthly_operating_cost=monthly_operating_cost,
                ledger=ledger_of(request),
                since=since,
                months=months,
            )
        return roi_model.to_json(result)
    if baseline_monthly is None or optimized_monthly is None:
        raise InvalidInput("roi: give baseline_monthly and optimized_monthly (or hit_rate, or scenarios=true)")
    return roi_model.to_json(
        roi_model.roi(baseline_monthly, optimized_monthly, investment, months, monthly_operating_cost)
    )


def _weights(items: list[str]) -> dict[str | None, str] | None:
    weights: dict[str | None, str] = {}
    for item in items:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise InvalidInput(f"weights: {part!r} must be name=weight, e.g. research=2")
            weights[key.strip()] = value.strip()
    return weights or None


@router.get("/api/allocation")
def allocation_(
    request: Request,
    since: str = Query("MTD", description="30d, MTD, QTD, YTD, 2026-01-01..."),
    until: str | None = Query(None, description="End of the range (exclusive); default now"),
    over: str = Query("department", description="department, project, cost_center or team"),
    method: str = Query("proportional", description="even, proportional or weights"),
    weights: list[str] = Query([], description="With method=weights: name=weight (repeatable or a,b)"),
    shared_category: list[str] = Query(
        list(allocation.SHARED_CATEGORIES), description="Categories that are shared cost (repeatable)"
    ),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Direct, allocated shared and fully loaded cost per group; columns sum exactly to their totals."""
    who.require("costs.read")
    rows = allocation.allocate_shared(
        ledger_of(request),
        since=since,
        until=until,
        over=over,
        method=method,
        weights=_weights(weights),
        shared_where={"category": list(shared_category)},
        departments=_departments(who),
    )
    return {"over": over, "method": method, "rows": rows, "total": allocation.allocation_totals(rows)}


@router.get("/api/chargeback/{period}")
def chargeback(
    period: str,
    request: Request,
    method: str = Query("proportional", description="even or proportional"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Charge per cost center for a period (YYYY-MM, YYYY-Qn, YYYY), shared costs included."""
    who.require("costs.read")
    return allocation.chargeback(ledger_of(request), period, method=method, departments=_departments(who))


@router.get("/api/experiments")
def list_experiments(request: Request, who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    """Recorded cost experiments."""
    who.require("costs.read")
    return experiments.list_experiments(ledger_of(request))


@router.post("/api/experiments", status_code=201)
def create_experiment(
    request: Request,
    body: dict[str, Any] = Body(
        ...,
        examples=[
            {"name": "exp-prompt-v2", "control": "prompt v1", "treatment": "prompt v2", "hypothesis": "-20% cost"}
        ],
    ),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Record a cost experiment; tag its events experiment=<name>, arm=control|treatment."""
    who.require("budgets.write")
    fields: dict[str, str | None] = {}
    for field in ("name", "control", "treatment", "hypothesis"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{field}: must be a string")
        fields[field] = value
    name, control, treatment = fields["name"], fields["control"], fields["treatment"]
    if not name or not control or not treatment:
        raise InvalidInput("name, control and treatment are required")
    return experiments.create(
        ledger_of(request), name, control=control, treatment=treatment, hypothesis=fields["hypothesis"]
    )


@router.get("/api/experiments/{name}")
def analyze_experiment(
    name: str,
    request: Request,
    since: str = Query("90d", description="Start of the range"),
    until: str | None = Query(None, description="End of the range (exclusive); default now"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Cost, quality and latency per arm, Welch's interval on the cost difference, and a verdict."""
    who.require("costs.read")
    return experiments.analyze(ledger_of(request), name, since=since, until=until, departments=_departments(who))


@router.get("/api/agents/fitness")
def agent_fitness(
    request: Request,
    since: str = Query("30d", description="Start of the range"),
    until: str | None = Query(None, description="End of the range (exclusive); default now"),
    weights: str = Query("0.4,0.3,0.3", description="effectiveness,efficiency,cost_efficiency (seed 002)"),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    """Per-agent fitness 0..1 for agent evolution: effectiveness, efficiency, cost efficiency."""
    who.require("costs.read")
    try:
        parsed = [float(w) for w in weights.split(",")]
    except ValueError:
        raise InvalidInput(f"weights: {weights!r} must be three numbers, e.g. 0.4,0.3,0.3") from None
    return fitness.agent_fitness(
        ledger_of(request), since=since, until=until, weights=parsed, departments=_departments(who)
    )
