"""Insight routes in-process: ROI, allocation, chargeback, experiments, fitness; roles and scoping."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleetledger.server.routes import insights as api_insights

from .conftest import auth

pytestmark = pytest.mark.anyio


@pytest.fixture
async def insights_api(api):
    app = api._transport.app  # type: ignore[attr-defined]
    if not any(getattr(route, "path", None) == "/api/allocation" for route in app.routes):
        app.include_router(api_insights.router)
    return api


@pytest.fixture
def spend(server_ledger, clock):
    at = clock.now - timedelta(days=1)
    for department, cost_center, category, cost in (
        ("research", "cc-100", "tool_use", "60"),
        ("sales", "cc-200", "tool_use", "30"),
        ("platform", "cc-900", "infrastructure", "10"),
    ):
        server_ledger.record(
            provider="aws", model="line-item", department=department, cost_center=cost_center, category=category,
            cost_usd=cost, agent=f"{department}-bot", latency_ms=100, timestamp=at,
        )  # fmt: skip
    return server_ledger


async def test_roi_query(insights_api, keys):
    response = await insights_api.get(
        "/api/roi",
        params={"baseline_monthly": "50000", "optimized_monthly": "25000", "investment": "100000"},
        headers=auth(keys["viewer"]),
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["monthly_savings"], body["payback_months"], body["roi_3y_pct"]) == ("25000", "4.00", "800.00")
    table = await insights_api.get("/api/roi", params={"scenarios": "true"}, headers=auth(keys["finops"]))
    assert [row["roi_3y_pct"] for row in table.json()] == ["800.00", "1580.00", "3140.00"]
    bad = await insights_api.get("/api/roi", params={"baseline_monthly": "x"}, headers=auth(keys["finops"]))
    assert bad.status_code == 400
    denied = await insights_api.get("/api/roi", headers=auth(keys["ingest"]))
    assert denied.status_code == 403


async def test_allocation_and_chargeback_are_scoped(insights_api, keys, spend):
    everything = (await insights_api.get("/api/allocation", headers=auth(keys["finops"]))).json()
    assert everything["total"]["fully_loaded_usd"] == "100.000000000"
    scoped = (await insights_api.get("/api/allocation", headers=auth(keys["viewer"]))).json()
    assert [(r["department"], r["fully_loaded_usd"]) for r in scoped["rows"]] == [("research", "66.666666667")]
    charge = (await insights_api.get("/api/chargeback/2026-10", headers=auth(keys["finops"]))).json()
    assert charge["total_usd"] == "100.000000000"
    mine = (await insights_api.get("/api/chargeback/2026-10", headers=auth(keys["department_head"]))).json()
    assert [r["cost_center"] for r in mine["rows"]] == ["cc-100"]


async def test_experiments_and_fitness(insights_api, keys, spend):
    definition = {"name": "exp-prompt-v2", "control": "prompt v1", "treatment": "prompt v2"}
    denied = await insights_api.post("/api/experiments", json=definition, headers=auth(keys["viewer"]))
    assert denied.status_code == 403
    created = await insights_api.post("/api/experiments", json=definition, headers=auth(keys["finops"]))
    assert created.status_code == 201 and created.json()["name"] == "exp-prompt-v2"
    again = await insights_api.post("/api/experiments", json=definition, headers=auth(keys["finops"]))
    assert again.status_code == 409
    listed = (await insights_api.get("/api/experiments", headers=auth(keys["viewer"]))).json()
    assert [e["name"] for e in listed] == ["exp-prompt-v2"]
    analysis = (await insights_api.get("/api/experiments/exp-prompt-v2", headers=auth(keys["viewer"]))).json()
    assert analysis["verdict"] == "insufficient_data"
    fitness = (await insights_api.get("/api/agents/fitness", headers=auth(keys["finops"]))).json()
    assert {row["agent"] for row in fitness} == {"research-bot", "sales-bot"}
    scoped = (await insights_api.get("/api/agents/fitness", headers=auth(keys["viewer"]))).json()
    assert [row["agent"] for row in scoped] == ["research-bot"]
