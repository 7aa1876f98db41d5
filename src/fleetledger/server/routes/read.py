"""Read routes: costs, drilldown, budget status, reports. Money is always a decimal string.

Department-scoped keys (department_head, viewer) see only their departments: their cost queries are
filtered, and naming another department is a 403, not an empty answer.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from fleetledger.access.keys import ACTIONS, Principal
from fleetledger.core.errors import InvalidInput, NotFound
from fleetledger.core.money import CURRENCY_DECIMALS
from fleetledger.server.deps import ledger_of, principal, scoped, scoped_where
from fleetledger.storage.query import validate_keys

router = APIRouter(tags=["costs"])


def cost_query(
    request: Request, who: Principal, *, by: list[str], since: Any, until: Any, where: list[str]
) -> dict[str, Any]:
    """The costs of ``where`` (``key=value`` items, see :mod:`fleetledger.core.filters`) grouped by ``by``."""
    who.require("costs.read")
    validate_keys(by, what="by")
    report = ledger_of(request).costs(by=by, since=since, until=until, where=scoped_where(who, where))
    return report.to_dict()


@router.get("/api/costs")
def costs(
    request: Request,
    by: str = Query("", description="Comma-separated group keys: department,model,agent,day,tag.NAME..."),
    since: str = Query("30d", description="30d, 24h, MTD, QTD, YTD, today, 2026-01-01 or an ISO time with zone"),
    until: str | None = Query(None, description="End of the range (exclusive); default now"),
    where: list[str] = Query([], description="Filters key=value (repeatable; a,b for either; key= for none)"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Spend grouped by any dimensions over a range: the same query as `fleetledger costs`."""
    keys = [k.strip() for k in by.split(",") if k.strip()]
    return cost_query(request, who, by=keys, since=since, until=until, where=where)


@router.get("/api/costs/request/{request_id}")
def cost_of_request(request_id: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """One request's itemised cost, by request_id or event_id, with its trace context."""
    who.require("costs.read")
    detail = ledger_of(request).event(request_id)
    if detail is None:
        raise NotFound(f"no event with request_id or event_id {request_id!r}")
    who.check_department(detail.get("department"))
    return detail


@router.get("/api/costs/daily/{day}")
def cost_of_day(
    day: date,
    request: Request,
    by: str = Query("department,model", description="Group keys"),
    where: list[str] = Query([], description="Filters key=value"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Spend of one UTC day, grouped (default by department and model)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    keys = [k.strip() for k in by.split(",") if k.strip()]
    return cost_query(request, who, by=keys, since=start, until=start + timedelta(days=1), where=where)


@router.get("/api/budget/status", tags=["budgets"])
def budget_status(request: Request, who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    """Every active budget: spent, reserved, remaining, percent used, burn rate, depletion, colour.

    Figures may be up to one second old (dashboards poll this); budget changes made through this
    server show at once."""
    who.require("budgets.read")
    departments = list(who.departments) if who.scoped else None
    return ledger_of(request).budgets.status(departments=departments, max_age_s=1.0)


@router.get("/api/currencies")
def currencies(request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """Configured display rates (units per USD) and each currency's decimals."""
    who.require("costs.read")
    rates = ledger_of(request).settings.fx_rates
    return {
        "base": "USD",
        "rates": {"USD": "1", **{k: f"{v:f}" for k, v in sorted(rates.items())}},
        "decimals": {k: CURRENCY_DECIMALS.get(k, 2) for k in ["USD", *sorted(rates)]},
    }


# -- reports ------------------------------------------------------------------------------------


_PERIOD = re.compile(r"^(\d{4})(?:-(\d{2})|-Q([1-4]))?$")


def period_range(period: str) -> tuple[datetime, datetime]:
    """``2026-10`` (month), ``2026-Q4`` (quarter) or ``2026`` (year), in UTC."""
    match = _PERIOD.match(period.strip())
    if not match:
        raise InvalidInput(f"period: {period!r} must be YYYY-MM, YYYY-Qn or YYYY")
    year = int(match.group(1))
    if match.group(2):
        month = int(match.group(2))
        if not 1 <= month <= 12:
            raise InvalidInput(f"period: month {month} does not exist")
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    elif match.group(3):
        quarter = int(match.group(3))
        start = datetime(year, 3 * quarter - 2, 1, tzinfo=UTC)
        end = datetime(year + (quarter == 4), (3 * quarter) % 12 + 1, 1, tzinfo=UTC)
    else:
        start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    if not 2015 <= year <= 2100:
        raise InvalidInput(f"period: year {year} is out of range")
    return start, end


@router.get("/api/reports/costs/{period}", tags=["reports"])
def cost_report(
    period: str,
    request: Request,
    format: str = Query("json", pattern="^(json|csv)$", description="json or csv"),
    who: Principal = Depends(principal),
) -> Any:
    """A period's costs: totals, by department (chargeback by cost center), by model; CSV on request."""
    start, end = period_range(period)
    where = scoped(who, {})
    who.require("costs.read")
    ledger = ledger_of(request)
    sections = {
        name: ledger.costs(by=by, since=start, until=end, where=where).rows()
        for name, by in (
            ("by_department", ["department", "cost_center"]),
            ("by_model", ["provider", "model"]),
            ("by_cost_center", ["cost_center"]),
        )
    }
    total = ledger.costs(since=start, until=end, where=where).total_json()
    if format == "csv":
        buffer = io.StringIO()
        rows = ledger.costs(
            by=["department", "cost_center", "provider", "model"], since=start, until=end, where=where
        ).rows()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return PlainTextResponse(buffer.getvalue(), media_type="text/csv")
    return {"period": period, "since": start.isoformat(), "until": end.isoformat(), "total": total, **sections}


def _not_yet(what: str) -> dict[str, Any]:
    return {
        "available": False,
        "reason": f"{what} needs recorded baselines and investments, which this version does not keep; no "
        "figures are invented in the meantime. Use GET /api/roi (calculator, caching ROI) and "
        "GET /api/savings/summary (measured savings).",
    }


@router.get("/api/roi/current", tags=["insights"])
def roi_current(request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """ROI of cost optimizations (available once baselines and investments are recorded)."""
    who.require("costs.read")
    return _not_yet("ROI")


@router.get("/api/savings/summary", tags=["insights"])
def savings_summary(request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """Identified, approved and implemented savings from the recommendations, with realized
    savings measured on before/after windows (only what was measured; nothing estimated here)."""
    who.require("costs.read")
    from fleetledger.analytics.recommendations.engine import savings_summary as summary

    result = summary(ledger_of(request), departments=list(who.departments) if who.scoped else None)
    result.pop("implemented")
    return result


@router.get("/api/optimization/impact", tags=["insights"])
def optimization_impact(request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """Implemented optimizations with their estimated and measured (before/after) monthly savings."""
    who.require("costs.read")
    from fleetledger.analytics.recommendations.engine import savings_summary as summary

    result = summary(ledger_of(request), departments=list(who.departments) if who.scoped else None)
    return {"implemented": result.pop("implemented"), "summary": result}


@router.get("/api/reports/roi/{period}", tags=["reports"])
def roi_report(period: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    period_range(period)
    who.require("costs.read")
    return {"period": period, **_not_yet("An ROI report")}


@router.get("/api/reports/optimization/{period}", tags=["reports"])
def optimization_report(period: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    period_range(period)
    who.require("costs.read")
    return {"period": period, **_not_yet("An optimization report")}


@router.get("/api/me", tags=["keys"])
def whoami(who: Principal = Depends(principal)) -> dict[str, Any]:
    """The caller's role and departments (the dashboard hides what the role may not do)."""
    actions = sorted(action for action, roles in ACTIONS.items() if who.role in roles)
    return {"role": who.role, "departments": list(who.departments), "name": who.name, "actions": actions}


@router.get("/api/requests")
def recent_requests(
    request: Request,
    since: str = Query("24h"),
    until: str | None = Query(None),
    where: list[str] = Query([], description="Filters key=value"),
    limit: int = Query(50, ge=1, le=1000),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    """The most recent requests matching the filters, with tokens, cost and trace context."""
    who.require("costs.read")
    filters = scoped_where(who, where)
    ledger = ledger_of(request)
    return ledger.recent_events(since=since, until=until, where=filters, limit=limit)
