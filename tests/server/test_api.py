"""The REST API as clients use it: ingest with partial acceptance, reads, budgets, roles, errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from .conftest import auth

pytestmark = pytest.mark.anyio

EVENTS = [
    {
        "timestamp": "2026-10-15T10:00:00Z",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1000,
        "output_tokens": 200,
        "department": "research",
        "request_id": "req-1",
        "agent": "planner",
    },
    {"timestamp": "2026-10-15T10:00:00Z", "provider": "openai", "input_tokens": 5},
    {
        "timestamp": "2026-10-15T11:00:00Z",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "input_tokens": 5000,
        "cache_read_tokens": 3000,
        "output_tokens": 500,
        "department": "sales",
    },
]


async def test_ingest_partial_acceptance_and_duplicates(api, keys):
    response = await api.post("/api/v1/events", json=EVENTS, headers=auth(keys["ingest"]))
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 1)
    assert [i["status"] for i in body["items"]] == ["accepted", "rejected", "accepted"]
    assert body["items"][1] == {
        "index": 1,
        "status": "rejected",
        "reason": "model: required (the model that served the call)",
    }
    assert body["items"][0]["cost_usd"] == "0.004500000"
    again = (await api.post("/api/v1/events", json=EVENTS, headers=auth(keys["ingest"]))).json()
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 2, 1)
    ndjson = "\n".join(json.dumps({**e, "request_id": "nd"}) for e in EVENTS[:1]) + "\n{broken\n"
    response = await api.post(
        "/api/v1/events", content=ndjson, headers={**auth(keys["ingest"]), "Content-Type": "application/x-ndjson"}
    )
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1) and body["items"][1]["reason"].startswith("broken JSON")


async def test_bad_bodies_are_4xx_with_clear_json(api, keys):
    headers = {**auth(keys["ingest"]), "Content-Type": "application/json"}
    for content, code in ((b"{not json", 400), (b"", 400), (b'"a string"', 400)):
        response = await api.post("/api/v1/events", content=content, headers=headers)
        assert response.status_code == code and response.json()["error"]["message"], content
    too_many = [EVENTS[0]] * 10_001
    response = await api.post("/api/v1/events", json=too_many, headers=auth(keys["ingest"]))
    assert response.status_code == 413 and "at most 10000" in response.json()["error"]["message"]
    huge = await api.post("/api/v1/events", content=b"[" + b" " * (21 * 1024 * 1024) + b"]", headers=headers)
    assert huge.status_code == 413
    missing = await api.get("/api/nope", headers=auth(keys["admin"]))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await api.get("/api/costs")).status_code == 401
    assert (await api.get("/api/costs", headers=auth("tl_nope_nope"))).status_code == 401
    bad_query = await api.get("/api/costs", params={"by": "departmnet"}, headers=auth(keys["admin"]))
    assert bad_query.status_code == 400 and "unknown key 'departmnet'" in bad_query.json()["error"]["message"]


async def test_costs_request_daily_and_department_scoping(api, keys):
    await api.post("/api/v1/events", json=EVENTS, headers=auth(keys["ingest"]))
    params = {"by": "department", "since": "2026-10-01", "until": "2026-11-01"}
    rows = (await api.get("/api/costs", params=params, headers=auth(keys["finops"]))).json()["rows"]
    assert {r["department"]: r["cost_usd"] for r in rows} == {"research": "0.004500000", "sales": "0.014400000"}
    scoped = (await api.get("/api/costs", params=params, headers=auth(keys["department_head"]))).json()
    assert [r["department"] for r in scoped["rows"]] == ["research"]
    denied = await api.get("/api/costs", params={**params, "where": "department=sales"}, headers=auth(keys["viewer"]))
    assert denied.status_code == 403 and "covers department(s) research" in denied.json()["error"]["message"]
    detail = (await api.get("/api/costs/request/req-1", headers=auth(keys["viewer"]))).json()
    assert detail["cost_components"] == {"input_mtok": "0.002500000", "output_mtok": "0.002000000"}
    daily = (await api.get("/api/costs/daily/2026-10-15", headers=auth(keys["finops"]))).json()
    assert Decimal(daily["total"]["cost_usd"]) == Decimal("0.0189")
    report = (await api.get("/api/reports/costs/2026-10", headers=auth(keys["finops"]))).json()
    assert report["total"]["cost_usd"] == "0.018900000" and report["by_cost_center"]
    csv_report = await api.get("/api/reports/costs/2026-Q4", params={"format": "csv"}, headers=auth(keys["finops"]))
    assert csv_report.text.splitlines()[0].startswith("department,cost_center,provider,model,cost_usd")
    assert (await api.get("/api/reports/costs/2026-13", headers=auth(keys["finops"]))).status_code == 400


async def test_budget_lifecycle_through_the_api(api, keys):
    finops, head = auth(keys["finops"]), auth(keys["department_head"])
    created = await api.post(
        "/api/budgets",
        json={"name": "research-monthly", "amount": "500", "scope": {"department": "research"}, "action": "block"},
        headers=finops,
    )
    assert created.status_code == 201 and created.json()["amount_usd"] == "500.000000000"
    bad = await api.post("/api/budgets", json={"name": "x", "amount": "-1"}, headers=finops)
    assert bad.status_code == 400 and "amount: must be positive" in bad.json()["error"]["message"]
    assert (await api.post("/api/budgets", json={"name": "y", "amount": "1"}, headers=head)).status_code == 403
    no_reason = await api.patch(
        "/api/budgets/research-monthly", json={"amount": "600", "justification": ""}, headers=finops
    )
    assert no_reason.status_code == 422
    adjusted = await api.patch(
        "/api/budgets/research-monthly", json={"amount": "600", "justification": "Q4"}, headers=finops
    )
    assert adjusted.json()["new_amount"] == "600"
    request = await api.post(
        "/api/budgets/research-monthly/overage-requests",
        json={"amount": "100", "justification": "conference"},
        headers=head,
    )
    assert request.status_code == 201
    approval_id = request.json()["approval_id"]
    assert (await api.post(f"/api/approvals/{approval_id}/approve", json={}, headers=head)).status_code == 403
    approved = await api.post(f"/api/approvals/{approval_id}/approve", json={"note": "ok"}, headers=finops)
    assert approved.json()["status"] == "approved"
    status = (await api.get("/api/budget/status", headers=head)).json()
    assert status[0]["limit_usd"] == "700.000000000" and status[0]["status"] == "green"
    history = (await api.get("/api/budgets/research-monthly/history", headers=finops)).json()
    assert [h["kind"] for h in history] == ["created", "adjusted", "overage_requested", "overage_approved"]
    audit = (await api.get("/api/audit", headers=auth(keys["admin"]))).json()
    assert {"budget.created", "budget.adjusted", "approval.overage_requested", "approval.approved"} <= {
        a["action"] for a in audit
    }


async def test_pricing_quote_and_overrides(api, keys):
    quote = (
        await api.get(
            "/api/pricing/quote",
            params={"provider": "openai", "model": "gpt-4o", "input_tokens": 1000},
            headers=auth(keys["viewer"]),
        )
    ).json()
    assert quote["total_usd"] == "0.002500000"
    made = await api.post(
        "/api/pricing/overrides",
        json={"provider": "vllm", "model": "acme-*", "prices": {"input_mtok": "0.4"}},
        headers=auth(keys["finops"]),
    )
    assert made.status_code == 201
    priced = (
        await api.get(
            "/api/pricing/quote",
            params={"provider": "vllm", "model": "acme-1", "input_tokens": 1_000_000},
            headers=auth(keys["finops"]),
        )
    ).json()
    assert priced["total_usd"] == "0.400000000" and priced["source"] == "override"


async def test_keys_and_metrics(api, keys):
    made = await api.post("/api/keys", json={"role": "viewer", "departments": ["sales"]}, headers=auth(keys["admin"]))
    assert made.status_code == 201 and made.json()["key"].startswith("tl_")
    assert (await api.post("/api/keys", json={"role": "viewer"}, headers=auth(keys["admin"]))).status_code == 400
    assert (await api.get("/api/keys", headers=auth(keys["finops"]))).status_code == 403
    await api.post("/api/v1/events", json=EVENTS, headers=auth(keys["ingest"]))
    metrics = (await api.get("/metrics", headers=auth(keys["viewer"]))).text
    assert 'fleetledger_events_total{outcome="accepted"} 2.0' in metrics
    assert 'fleetledger_spend_usd_total{provider="openai"} 0.0045' in metrics
    assert "fleetledger_http_request_duration_seconds_bucket" in metrics
    health = (await api.get("/healthz")).json()
    assert health["status"] == "ok"


async def test_database_down_is_503_with_retry_after(api, keys, server_ledger, monkeypatch):
    from fleetledger.core.errors import StorageUnavailable

    def down(*args, **kwargs):
        raise StorageUnavailable("database unavailable: connection refused")

    monkeypatch.setattr(server_ledger, "ingest", down)
    response = await api.post("/api/v1/events", json=EVENTS[:1], headers=auth(keys["ingest"]))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "storage_unavailable"


async def test_insight_endpoints_answer_honestly(api, keys):
    for path in ("/api/roi/current", "/api/reports/roi/2026-10", "/api/reports/optimization/2026-10"):
        body = (await api.get(path, headers=auth(keys["finops"]))).json()
        assert body["available"] is False and "no figures are invented" in body["reason"]


async def test_savings_come_only_from_recommendations(api, keys):
    summary = (await api.get("/api/savings/summary", headers=auth(keys["finops"]))).json()
    assert summary["realized_monthly_usd"] == "0.000000000" and summary["implemented_measured"] == 0
    impact = (await api.get("/api/optimization/impact", headers=auth(keys["finops"]))).json()
    assert impact["implemented"] == []
