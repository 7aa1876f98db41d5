"""The FastAPI application: a thin HTTP adapter over one Ledger.

* Auth: ``Authorization: Bearer tl_...`` or ``X-API-Key``. Until the first key is created, a server
  bound to loopback treats callers as a local admin (zero set-up on a laptop); ``fleetledger serve``
  refuses any other address until a key exists.
* Errors: every :class:`~fleetledger.core.errors.FleetLedgerError` becomes its HTTP status with
  ``{"error": {"code", "message", ...}}``; malformed requests are 400/422 with the field named; an
  unreachable database is 503 with ``Retry-After``; nothing surfaces as a bare 500.
* Every write is audited (who, what, when) in ``audit_log``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleetledger.access.keys import Principal, any_keys
from fleetledger.core.errors import FleetLedgerError, StorageUnavailable
from fleetledger.core.settings import Settings
from fleetledger.core.version import VERSION
from fleetledger.ledger.facade import Ledger
from fleetledger.server.deps import principal
from fleetledger.server.metrics import Metrics
from fleetledger.server.routes import anomalies as api_anomalies
from fleetledger.server.routes import charts as api_charts
from fleetledger.server.routes import forecast as api_forecast
from fleetledger.server.routes import gateway as api_gateway
from fleetledger.server.routes import ingest as api_ingest
from fleetledger.server.routes import insights as api_insights
from fleetledger.server.routes import manage as api_manage
from fleetledger.server.routes import read as api_read
from fleetledger.server.routes import recommend as api_recommend
from fleetledger.server.routes import reconcile as api_reconcile
from fleetledger.server.routes import reports as api_reports
from fleetledger.server.routes import stream

__all__ = ["create_app"]

#: Largest request body accepted (10,000 events of ~1 KB fit comfortably).
MAX_BODY_BYTES = 20 * 1024 * 1024


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"Retry-After": "5"} if status == 503 else None
    if status == 429 and "retry_after_s" in extra:
        headers = {"Retry-After": str(extra["retry_after_s"])}
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers)


def create_app(
    ledger: Ledger | None = None,
    *,
    settings: Settings | None = None,
    local_only: bool = True,
    start_workers: bool = False,
) -> FastAPI:
    """The API for ``ledger`` (or a new one from ``settings``). ``local_only``: bound to loopback."""
    owned = ledger is None
    ledger = ledger or Ledger(settings=settings or Settings(), background=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers: list[Any] = []
        if start_workers:  # the server delivers alerts from the outbox while it runs
            from fleetledger.alerts.outbox import OutboxWorker

            workers.append(OutboxWorker(ledger.store, ledger.alerts.http, ledger.clock))
            from fleetledger.reports.schedules import ReportScheduleWorker

            workers.append(ReportScheduleWorker(ledger))  # scheduled reports, written and sent when due
            for worker in workers:
                worker.start()
        try:
            yield
        finally:
            for worker in workers:
                worker.stop()
            if owned:
                ledger.close()

    app = FastAPI(
        lifespan=lifespan,
        title="fleetledger",
        version=VERSION,
        description="Meter, price, attribute and budget the LLM spend of an agent fleet. Money is in decimal strings.",
    )
    app.state.ledger = ledger
    app.state.local_only = local_only
    app.state.keys_exist = any_keys(ledger.store)
    app.state.keys_checked_at = time.monotonic()
    app.state.metrics = Metrics()

    @app.exception_handler(FleetLedgerError)
    async def _fleetledger_error(request: Request, exc: FleetLedgerError) -> JSONResponse:
        detail = exc.to_dict()
        detail.pop("code", None)
        detail.pop("message", None)
        return _error(exc.http_status, exc.code, exc.message, **detail)

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # Only an unreachable or failing database is "try again later"; a value the database
        # refuses (out of range, duplicate) is the request's fault.
        if isinstance(exc, DataError):
            return _error(400, "invalid_input", f"a value is out of range for the database: {exc.orig}")
        if isinstance(exc, IntegrityError):
            return _error(409, "conflict", f"conflicts with stored data: {exc.orig}")
        return _error(503, StorageUnavailable.code, f"database unavailable: {exc.orig}")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "reason": str(e.get("msg"))} for e in exc.errors()
        ]
        message = "; ".join(f"{p['where']}: {p['reason']}" for p in problems)
        return _error(422, "invalid_request", message, problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.status_code != 404 else f"no route {request.method} {request.url.path}"
        return _error(exc.status_code, code, message)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _error(413, "payload_too_large", f"request body over {MAX_BODY_BYTES} bytes; send smaller batches")
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        app.state.metrics.observe(
            request.method, getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - started
        )
        return response

    for module in (
        api_ingest,
        api_read,
        api_manage,
        api_charts,
        api_forecast,
        api_insights,
        api_recommend,
        api_anomalies,
        api_gateway,
        api_reconcile,
        api_reports,
        stream,
    ):
        app.include_router(module.router)

    dashboard = Path(__file__).with_name("dashboard")
    app.mount("/dashboard/static", StaticFiles(directory=dashboard), name="dashboard-static")

    @app.get("/dashboard/cost", include_in_schema=False)
    def cost_dashboard() -> FileResponse:
        return FileResponse(dashboard / "cost.html", media_type="text/html")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/dashboard/cost")

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness and database reachability (503 when the database is down)."""
        ledger.store.schema_revision()
        return {"status": "ok", "version": VERSION, "database": ledger.store.dialect}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def metrics(who: Principal = Depends(principal)) -> Response:
        """Prometheus metrics: events ingested/rejected, request latency, spend by provider."""
        who.require("metrics.read")
        body, content_type = app.state.metrics.render()
        return Response(body, media_type=content_type)

    return app
