"""Reconciliation routes: import provider exports, read the provider-vs-ledger report.

Both are for managers (admin, finops): provider lines are billed per project, key or workspace,
with no department, so a department-scoped key could not be given a meaningful share of them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fleetledger.access.keys import Principal
from fleetledger.core.errors import InvalidInput
from fleetledger.reconciliation.compare import import_for_ledger, reconcile_ledger
from fleetledger.reconciliation.importers.provider_lines import KINDS
from fleetledger.server.audit import record_write
from fleetledger.server.deps import ledger_of, principal

router = APIRouter(tags=["reconciliation"])

_IMPORT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"description": "the export as downloaded: one page or a list of pages"}},
        "text/csv": {"schema": {"type": "string", "description": "invoice-csv: the invoice lines"}},
    },
}


@router.post("/api/reconciliation/import/{kind}", openapi_extra={"requestBody": _IMPORT_BODY})
async def import_provider_export(kind: str, request: Request, who: Principal = Depends(principal)) -> JSONResponse:
    """Import a provider export (``openai-costs``, ``openai-usage``, ``anthropic-usage``,
    ``anthropic-costs``, ``invoice-csv``) as provider lines. Partial acceptance: each bad line is
    listed with its location and reason; re-importing the same export changes nothing."""
    who.require("reconciliation.write")
    if kind not in KINDS:
        raise InvalidInput(f"kind: {kind!r} is not an export kind; use one of {', '.join(KINDS)}")
    body = await request.body()
    if not body.strip():
        raise InvalidInput("body: send the export (JSON pages, or the invoice CSV)")
    ledger = ledger_of(request)
    # Raw bytes: the readers decode JSON with exact decimals (never through a float).
    result = await run_in_threadpool(import_for_ledger, ledger, kind, body, source_name=f"api:{who.actor}"[:256])
    record_write(
        ledger,
        who,
        "reconciliation.imported",
        kind,
        None,
        {k: v for k, v in result.to_dict().items() if k not in ("rejections", "kind")},
    )
    return JSONResponse(result.to_dict())


@router.get("/api/reconciliation")
def reconciliation_report(
    request: Request,
    since: str = Query("30d", description="start: 30d, 2026-10-01..."),
    until: str | None = Query(None, description="end (exclusive); default now"),
    provider: str | None = Query(None),
    who: Principal = Depends(principal),
) -> JSONResponse:
    """Provider versus ledger per day, model and key: token and cost drift, each difference classified
    (matched, unmetered_traffic, price_mismatch, unreconciled_estimate, metered_not_billed) and the
    unexplained remainder. Money in decimal strings."""
    who.require("reconciliation.read")
    report = reconcile_ledger(ledger_of(request), since=since, until=until, provider=provider)
    return JSONResponse(report.to_dict())
