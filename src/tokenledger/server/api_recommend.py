"""Recommendation routes: the optimisation leaderboard and its lifecycle."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request

from ..access import ACTIONS, Principal
from ..insights import recommendations as service
from .app import ledger_of, principal

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
    return [r.to_dict() for r in service.list_recommendations(ledger_of(request), status=status, kind=kind)]


@router.post("/api/recommendations/scan")
def scan_recommendations(
    request: Request,
    min_savings_usd: str = Query("1", description="Smallest monthly saving to report (USD)"),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    """Re-price the last 30 days under each optimisation and store what saves money."""
    _require_manage(who)
    return [r.to_dict() for r in service.scan(ledger_of(request), min_monthly_savings_usd=min_savings_usd)]


@router.patch("/api/recommendations/{rec_id}")
def update_recommendation(
    rec_id: int,
    request: Request,
    status: str = Body(..., embed=True, description="in_review, approved, implemented or declined"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Move a recommendation along its lifecycle."""
    _require_manage(who)
    return service.set_status(ledger_of(request), rec_id, status).to_dict()
