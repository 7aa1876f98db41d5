"""Ingest routes: usage events (JSON array or NDJSON) and OpenTelemetry GenAI traces (OTLP/HTTP)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from fleetledger.access.keys import Principal
from fleetledger.core.errors import InvalidInput
from fleetledger.core.usage import UsageEvent
from fleetledger.server.audit import record_write
from fleetledger.server.deps import ledger_of, principal

router = APIRouter(tags=["ingest"])

#: Items accepted per call; larger batches are refused (413) so one request stays one transaction.
MAX_ITEMS = 10_000
_EVENT_SCHEMA = UsageEvent.model_json_schema()
_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "array", "items": _EVENT_SCHEMA, "maxItems": MAX_ITEMS}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one usage event per line"}},
    },
}
_RESULT: dict[int | str, dict[str, Any]] = {
    "200": {
        "description": "Per-item outcome: accepted, duplicate (already stored) or rejected (with the reason)",
        "content": {
            "application/json": {
                "example": {
                    "accepted": 1,
                    "duplicates": 0,
                    "rejected": 1,
                    "items": [
                        {"index": 0, "status": "accepted", "event_id": "c-...", "cost_usd": "0.004500000"},
                        {"index": 1, "status": "rejected", "reason": "model: required"},
                    ],
                }
            }
        },
    }
}


def _items(body: bytes, content_type: str) -> list[tuple[str, Any]]:
    if not body.strip():
        raise InvalidInput("body: send a JSON array of usage events, or NDJSON (one event per line)")
    if "ndjson" in content_type or "jsonl" in content_type:
        lines = [line for line in body.split(b"\n") if line.strip()]
        items: list[tuple[str, Any]] = [(str(i), line) for i, line in enumerate(lines)]
    else:
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"body: not valid JSON ({exc}); send an array of events or NDJSON") from None
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise InvalidInput("body: expected a JSON array of usage events")
        items = [(str(i), item) for i, item in enumerate(data)]
    if len(items) > MAX_ITEMS:
        raise PayloadTooLarge(f"{len(items)} events in one call; send at most {MAX_ITEMS} per request")
    return items


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    http_status = 413


@router.post("/api/v1/events", openapi_extra={"requestBody": _BODY}, responses=_RESULT)
async def ingest_events(request: Request, who: Principal = Depends(principal)) -> JSONResponse:
    """Record usage events. Partial acceptance: every valid item is stored, each bad one is reported
    with its index and reason; a repeated ``event_id`` is a duplicate, never a second charge."""
    who.require("events.write")
    items = _items(await request.body(), request.headers.get("content-type", ""))
    ledger = ledger_of(request)
    from starlette.concurrency import run_in_threadpool

    result = await run_in_threadpool(ledger.ingest, items, source=f"api:{who.actor}"[:256], track=True)
    request.app.state.metrics.ingested(result.accepted, result.duplicates, result.rejected)
    for provider, nanos in result.spend_by_provider.items():
        request.app.state.metrics.spend.add(provider, nanos)
    record_write(
        ledger,
        who,
        "events.ingested",
        "events",
        None,
        {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected},
    )
    return JSONResponse({**result.to_dict(), "items": result.items})


@router.post("/v1/traces", tags=["opentelemetry"])
async def otlp_traces(request: Request, who: Principal = Depends(principal)) -> Any:
    """OTLP/HTTP trace export (protobuf or JSON): GenAI spans become usage events."""
    who.require("events.write")
    from starlette.concurrency import run_in_threadpool

    from fleetledger.ingest.otlp import spans_to_events

    ledger = ledger_of(request)
    content_type = request.headers.get("content-type", "application/x-protobuf")
    body = await request.body()
    items = spans_to_events(body, content_type=content_type, mapping=ledger.settings.otel_attribute_map)
    result = await run_in_threadpool(ledger.ingest, items, source="otlp", track=True)
    request.app.state.metrics.ingested(result.accepted, result.duplicates, result.rejected)
    record_write(
        ledger,
        who,
        "events.ingested",
        "otlp",
        None,
        {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected},
    )
    rejected = [item for item in result.items if item["status"] == "rejected"]
    if "json" in content_type:
        body_out: dict[str, Any] = {}
        if rejected:
            body_out["partialSuccess"] = {
                "rejectedSpans": str(len(rejected)),
                "errorMessage": "; ".join(f"{r['location']}: {r['reason']}" for r in rejected[:20]),
            }
        return JSONResponse(body_out)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    from starlette.responses import Response

    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = len(rejected)
        response.partial_success.error_message = "; ".join(f"{r['location']}: {r['reason']}" for r in rejected[:20])
    return Response(response.SerializeToString(), media_type="application/x-protobuf")


@router.post("/api/v1/import/{kind}", tags=["ingest"])
async def import_export(kind: str, request: Request, who: Principal = Depends(principal)) -> JSONResponse:
    """Import another tool's usage export: ``litellm-spend`` (LiteLLM SpendLogs rows as a JSON array)
    or ``openai-usage`` (OpenAI organization Usage API pages). Calls are priced by fleetledger."""
    who.require("events.write")
    from starlette.concurrency import run_in_threadpool

    from fleetledger.ingest.importers.litellm_spend import read_litellm_spend_logs
    from fleetledger.ingest.importers.openai_usage import read_openai_usage

    body = await request.body()
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body: not valid JSON ({exc})") from None
    ledger = ledger_of(request)
    if kind == "litellm-spend":
        items = list(read_litellm_spend_logs(data))
    elif kind == "openai-usage":
        items = list(read_openai_usage(data, now=ledger.clock()))
    else:
        raise InvalidInput(f"kind: {kind!r} must be litellm-spend or openai-usage")
    if len(items) > MAX_ITEMS:
        raise PayloadTooLarge(f"{len(items)} records in one call; send at most {MAX_ITEMS} per request")
    result = await run_in_threadpool(ledger.ingest, items, source=f"import:{kind}", track=True)
    request.app.state.metrics.ingested(result.accepted, result.duplicates, result.rejected)
    record_write(
        ledger,
        who,
        "events.imported",
        kind,
        None,
        {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected},
    )
    return JSONResponse({**result.to_dict(), "items": result.items})
