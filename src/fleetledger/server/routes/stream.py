"""Live stream of budget warnings, exceedances and alerts, as server-sent events.

Two sources, merged: this process's event bus (budget levels crossed by requests it served), and
the ``alerts`` table, polled every second for alerts fired by *other* processes (another API
worker, the gateway, a CLI) so the dashboard's toasts do not depend on which process did the work.
Department-scoped keys only see events of their departments.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from fleetledger.access.keys import Principal
from fleetledger.alerts.tables import alerts
from fleetledger.core.bus import ALERT_FIRED, BUDGET_ADJUSTED, BUDGET_CRITICAL, BUDGET_EXCEEDED, BUDGET_WARNING
from fleetledger.server.deps import ledger_of, principal

router = APIRouter(tags=["live"])
TOPICS = (BUDGET_WARNING, BUDGET_CRITICAL, BUDGET_EXCEEDED, BUDGET_ADJUSTED, ALERT_FIRED)


def _departments(payload: dict[str, Any]) -> set[str]:
    scope = payload.get("scope") or (payload.get("data") or {}).get("scope") or {}
    values = scope.get("department", []) if isinstance(scope, dict) else []
    return {values} if isinstance(values, str) else set(values)


def visible(who: Principal, payload: dict[str, Any]) -> bool:
    if not who.scoped:
        return True
    departments = _departments(payload)
    return bool(departments) and departments <= set(who.departments)


@router.get("/api/stream")
async def live(
    request: Request,
    timeout_s: float | None = Query(None, gt=0, le=86_400, description="Close the stream after this long"),
    who: Principal = Depends(principal),
) -> StreamingResponse:
    """Server-sent events: ``event: budget.warning|budget.critical|budget.exceeded|budget.adjusted|alert.fired``."""
    who.require("stream.read")
    ledger = ledger_of(request)
    loop = asyncio.get_running_loop()
    queue, unsubscribe = ledger.bus.subscribe_queue(TOPICS, loop)
    with ledger.store.read() as conn:
        last_alert = conn.execute(select(func.coalesce(func.max(alerts.c.id), 0))).scalar() or 0

    async def events() -> AsyncIterator[bytes]:
        nonlocal last_alert
        seen: set[int] = set()
        deadline = time.monotonic() + timeout_s if timeout_s else None
        next_poll = next_ping = time.monotonic()
        yield b": connected\n\n"
        try:
            while deadline is None or time.monotonic() < deadline:
                if await request.is_disconnected():
                    break
                try:
                    payload = await asyncio.wait_for(queue.get(), timeout=0.25)
                except TimeoutError:
                    payload = None
                if payload is not None:
                    if payload.get("topic") == ALERT_FIRED and payload.get("alert_id"):
                        seen.add(int(payload["alert_id"]))
                    if visible(who, payload):
                        yield _frame(payload.get("topic", "message"), payload)
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + 1.0
                    for row in _new_alerts(ledger, last_alert):
                        last_alert = max(last_alert, row["alert_id"])
                        if row["alert_id"] not in seen and visible(who, row):
                            yield _frame(ALERT_FIRED, row)
                if now >= next_ping:
                    next_ping = now + 15.0
                    yield b": ping\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _frame(topic: str, payload: dict[str, Any]) -> bytes:
    return f"event: {topic}\ndata: {json.dumps(payload, default=str)}\n\n".encode()


def _new_alerts(ledger: Any, after: int) -> list[dict[str, Any]]:
    with ledger.store.read() as conn:
        rows = conn.execute(select(alerts).where(alerts.c.id > after).order_by(alerts.c.id).limit(100)).all()
    return [
        {
            "topic": ALERT_FIRED,
            "alert_id": r.id,
            "rule_id": r.rule_id,
            "severity": r.severity,
            "title": r.title,
            "message": r.message,
            "data": r.data,
            "dedup_key": r.dedup_key,
        }
        for r in rows
    ]
