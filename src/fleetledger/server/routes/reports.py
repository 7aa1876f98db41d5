"""Report routes: export a period as CSV, Excel, PDF or FOCUS 1.2, and manage recurring reports.

Department-scoped keys (department_head, viewer) get reports of their departments only: without
``department`` their report covers all of theirs; naming another department is a 403.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from fleetledger.access.keys import Principal
from fleetledger.reports import export
from fleetledger.reports.schedules import (
    add_schedule,
    default_folder,
    delete_schedule,
    get_schedule,
    list_runs,
    list_schedules,
)
from fleetledger.server.audit import record_write
from fleetledger.server.deps import RowId, ledger_of, principal, store_of

router = APIRouter(tags=["reports"])


@router.get("/api/reports/export")
def export_report(
    request: Request,
    period: str = Query(..., description="2026-10, 2026-Q4, 2026 or 2026-10-01..2026-10-31 (UTC)"),
    format: Literal["csv", "xlsx", "pdf", "focus"] = Query(
        "xlsx", description="csv, xlsx, pdf or focus (FOCUS 1.2 CSV)"
    ),
    kind: Literal["summary", "detailed", "chargeback"] = Query(
        "summary", description="summary, detailed or chargeback"
    ),
    department: list[str] = Query([], description="Only these departments (repeatable)"),
    cost_center: list[str] = Query([], description="Only these cost centers (repeatable)"),
    who: Principal = Depends(principal),
) -> Response:
    """A period's cost report as a file download; every breakdown sums exactly to the total."""
    who.require("reports.read")
    departments = who.allowed_departments(department or None)
    made = export(
        ledger_of(request),
        period,
        fmt=format,
        kind=kind,
        departments=departments,
        cost_centers=cost_center or None,
    )
    headers = {
        "Content-Disposition": f'attachment; filename="{made.filename}"',
        "X-Report-Total-USD": made.total_usd,
    }
    return Response(made.content, media_type=made.media_type, headers=headers)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200)
    recurrence: Literal["weekly", "monthly", "quarterly"]
    format: Literal["csv", "xlsx", "pdf", "focus"] = "xlsx"
    kind: Literal["summary", "detailed", "chargeback"] = "summary"
    departments: list[str] = Field(default_factory=list, max_length=200)
    cost_centers: list[str] = Field(default_factory=list, max_length=200)
    channels: list[str] = Field(default_factory=list, max_length=50)
    folder: str | None = Field(
        None, max_length=1000, description="A subfolder of the server's reports folder (relative; default: the folder)"
    )


@router.get("/api/reports/schedules")
def schedules(request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """Recurring reports."""
    who.require("reports.schedule")
    return {"schedules": [s.to_dict() for s in list_schedules(store_of(request))]}


@router.post("/api/reports/schedules", status_code=201)
def create_schedule(body: ScheduleIn, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """Add a recurring report (weekly, monthly or quarterly), written to a folder and sent to alert channels."""
    who.require("reports.schedule")
    schedule = add_schedule(
        ledger_of(request),
        name=body.name,
        recurrence=body.recurrence,
        format=body.format,
        kind=body.kind,
        departments=body.departments,
        cost_centers=body.cost_centers,
        channels=body.channels,
        folder=body.folder,
        created_by=who.actor,
        within=default_folder(ledger_of(request)),
    )
    record_write(ledger_of(request), who, "create", "report_schedule", schedule.id, schedule.to_dict())
    return schedule.to_dict()


@router.get("/api/reports/schedules/{schedule_id}/runs")
def schedule_runs(schedule_id: RowId, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """The runs of a schedule: one per period, with its file and each channel's delivery."""
    who.require("reports.schedule")
    store = store_of(request)
    get_schedule(store, schedule_id)
    return {"runs": list_runs(store, schedule_id)}


@router.delete("/api/reports/schedules/{schedule_id}", status_code=204)
def remove_schedule(schedule_id: RowId, request: Request, who: Principal = Depends(principal)) -> Response:
    """Delete a recurring report (files already written stay)."""
    who.require("reports.schedule")
    ledger = ledger_of(request)
    schedule = get_schedule(ledger.store, schedule_id)
    delete_schedule(ledger.store, schedule_id)
    record_write(ledger, who, "delete", "report_schedule", schedule_id, {"name": schedule.name})
    return Response(status_code=204)
