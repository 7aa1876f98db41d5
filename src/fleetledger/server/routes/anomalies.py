"""Anomaly routes: list, scan, review (department-scoped keys see their departments only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from fleetledger.access.keys import Principal
from fleetledger.analytics import anomalies as service
from fleetledger.server.audit import record_write
from fleetledger.server.deps import RowId, ledger_of, principal, store_of

router = APIRouter(tags=["insights"])


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(description=", ".join(service.STATUSES))
    note: str | None = Field(default=None, max_length=2000)


@router.get("/api/anomalies")
def list_anomalies(
    request: Request,
    status: str | None = Query(None),
    limit: int = Query(200, ge=1, le=1000),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    who.require("costs.read")
    departments = list(who.departments) if who.scoped else None
    found = service.list_anomalies(store_of(request), status=status, departments=departments, limit=limit)
    return [a.to_dict() for a in found]


@router.post("/api/anomalies/scan")
async def scan(
    request: Request,
    since: str = Query("90d"),
    granularity: str = Query("day", pattern="^(day|hour)$"),
    level: list[str] = Query([], description="fleet, department, agent (repeatable); default all"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    who.require("budgets.write")
    ledger = ledger_of(request)
    levels = tuple(level) or service.LEVELS
    found = await run_in_threadpool(service.scan, ledger, levels=levels, since=since, granularity=granularity)
    record_write(ledger, who, "anomalies.scanned", "anomaly", None, {"found": len(found)})
    return {"found": len(found), "anomalies": [a.to_dict() for a in found]}


@router.patch("/api/anomalies/{anomaly_id}")
def review(
    anomaly_id: RowId,
    body: ReviewIn,
    request: Request,
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Move an anomaly to investigating, resolved, false_positive or expected (which suppresses similar ones)."""
    who.require("budgets.write")
    ledger = ledger_of(request)
    anomaly = service.set_status(ledger.store, anomaly_id, body.status, note=body.note, now=ledger.clock())
    record_write(ledger, who, "anomaly.reviewed", "anomaly", anomaly_id, {"status": body.status, "note": body.note})
    return anomaly.to_dict()
