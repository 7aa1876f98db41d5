"""Recommendation routes: the optimisation leaderboard and its lifecycle."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request

from fleetledger.access.keys import ACTIONS, Principal
from fleetledger.analytics import recommendations as service
from fleetledger.core.errors import Forbidden
from fleetledger.server.deps import RowId, ledger_of, principal

router = APIRouter(tags=["insights"])


def _require_manage(who: Principal) -> None:
    # A dedicated action once access.py names one; until then budget managers decide.
    who.require("recommendations.write" if "recommendations.write" in ACTIONS else "budgets.write")


@router.get("/api/recommendations")
def list_recommendations(
    request: Request,
    status: str | None = Query(None, description="identified, in_review, approved, implemented, declined"),
    kind: str | None = Query(None, description="model_downgrade, caching, batch, provider_switch, ..."),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    """Optimisation opportunities, largest monthly saving first."""
    who.require("costs.read")
    departments = list(who.departments) if who.scoped else None
    found = service.list_recommendations(ledger_of(request), status=status, kind=kind, departments=departments)
    return [r.to_dict() for r in found]


@router.post("/api/recommendations/scan")
def scan_recommendations(
    request: Request,
    min_savings_usd: str = Query("1", description="Smallest monthly saving to report (USD)"),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    """Re-price the last 30 days under each optimisation and store what saves money."""
    _require_manage(who)
    return [r.to_dict() for r in service.scan(ledger_of(request), min_monthly_savings_usd=min_savings_usd)]


@router.get("/api/recommendations/{rec_id}")
def get_recommendation(rec_id: RowId, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """One recommendation: costs, savings, effort, risk, quality impact, steps, rollback, realized savings."""
    who.require("costs.read")
    rec = service.get_recommendation(ledger_of(request), rec_id)
    if who.scoped and not service.visible_to(rec, list(who.departments)):
        raise Forbidden(f"recommendation {rec_id} covers spend outside department(s) {', '.join(who.departments)}")
    return rec.to_dict()


@router.post("/api/recommendations/{rec_id}/realized")
def measure_realized(rec_id: RowId, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """Measure an implemented recommendation's saving on before/after windows and store it (409 if not implemented)."""
    _require_manage(who)
    return service.measure_realized(ledger_of(request), rec_id).to_dict()


@router.patch("/api/recommendations/{rec_id}")
def update_recommendation(
    rec_id: RowId,
    request: Request,
    status: str = Body(..., embed=True, description="in_review, approved, implemented or declined"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Move a recommendation along its lifecycle."""
    _require_manage(who)
    return service.set_status(ledger_of(request), rec_id, status).to_dict()
