"""The role matrix: every route x every role, against a table written independently of the policy."""

from __future__ import annotations

import pytest

from .conftest import auth

pytestmark = pytest.mark.anyio

R = {"admin", "finops", "department_head", "viewer"}  # readers
M = {"admin", "finops"}  # managers
W = {"admin", "finops", "ingest"}  # event writers

EVENT = {
    "timestamp": "2026-10-15T10:00:00Z",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 10,
    "department": "research",
    "request_id": "req-r",
}
# (method, path, json body or None, roles allowed)
MATRIX = [
    ("POST", "/api/v1/events", [EVENT], W),
    ("GET", "/api/costs?by=department", None, R),
    ("GET", "/api/costs/request/req-r", None, R),
    ("GET", "/api/costs/daily/2026-10-15", None, R),
    ("GET", "/api/budget/status", None, R),
    ("GET", "/api/currencies", None, R),
    ("GET", "/api/roi/current", None, R),
    ("GET", "/api/savings/summary", None, R),
    ("GET", "/api/optimization/impact", None, R),
    ("GET", "/api/reports/costs/2026-10", None, R),
    ("GET", "/api/reports/roi/2026-10", None, R),
    ("GET", "/api/reports/optimization/2026-10", None, R),
    ("GET", "/api/budgets", None, R),
    ("POST", "/api/budgets", {"name": "{role}-b", "amount": "5", "scope": {"department": "research"}}, M),
    ("GET", "/api/budgets/research", None, R),
    ("PATCH", "/api/budgets/research", {"amount": "11", "justification": "more"}, M),
    ("GET", "/api/budgets/research/history", None, R),
    (
        "POST",
        "/api/budgets/research/overage-requests",
        {"amount": "1", "justification": "x"},
        {"admin", "finops", "department_head"},
    ),
    ("GET", "/api/approvals", None, R),
    ("POST", "/api/approvals/{approval}/approve", {}, M),
    ("POST", "/api/approvals/{approval}/decline", {}, M),
    ("GET", "/api/alerts/channels", None, R),
    (
        "POST",
        "/api/alerts/channels",
        {"name": "{role}-c", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
        M,
    ),
    ("GET", "/api/alerts/rules", None, R),
    (
        "POST",
        "/api/alerts/rules",
        {"name": "{role}-r", "kind": "absolute_spend", "params": {"amount_usd": "5", "period": "day"}},
        M,
    ),
    ("PATCH", "/api/alerts/rules/base-rule?enabled=true", None, M),
    ("GET", "/api/alerts/history", None, R),
    ("GET", "/api/pricing/overrides", None, R),
    ("POST", "/api/pricing/overrides", {"model": "{role}-model", "prices": {"input_mtok": "1"}}, M),
    ("GET", "/api/pricing/quote?model=gpt-4o&provider=openai&input_tokens=5", None, R),
    ("GET", "/api/matrix/models", None, R),
    ("GET", "/api/matrix/providers?y=quality", None, R),
    ("GET", "/api/pricing/models?provider=openai&q=gpt-4o&requests_per_month=10&input_tokens=100", None, R),
    ("GET", "/api/pricing/tco?model=gpt-4o&requests_per_month=10&input_tokens=1&output_tokens=1", None, R),
    ("GET", "/api/whatif/provider-shift?to_provider=azure&share_pct=50", None, R),
    ("GET", "/api/quality-catalog", None, R),
    ("PUT", "/api/quality-catalog", {"families": {"openai/{role}-model": {"score": 70}}}, M),
    ("GET", "/api/keys", None, {"admin"}),
    ("POST", "/api/keys", {"role": "ingest", "name": "{role}"}, {"admin"}),
    ("GET", "/api/audit", None, M),
    ("GET", "/metrics", None, R),
    ("GET", "/api/stream?timeout_s=0.3", None, R),
    ("POST", "/api/reconciliation/import/openai-costs", {"object": "page", "data": []}, M),
    ("GET", "/api/reconciliation?since=7d", None, M),
    ("DELETE", "/api/budgets/spare?justification=done", None, M),
    ("DELETE", "/api/alerts/rules/spare-rule", None, M),
    ("DELETE", "/api/pricing/overrides/{override}", None, M),
    ("DELETE", "/api/keys/{key_id}", None, {"admin"}),
    ("GET", "/api/gateway/policies", None, R),
    ("POST", "/api/gateway/policies", {"kind": "max_output_tokens", "params": {"max_output_tokens": 800}}, M),
    ("DELETE", "/api/gateway/policies/{policy}", None, M),
    ("GET", "/api/reports/export?format=csv&period=2026-10", None, R),
    ("GET", "/api/reports/schedules", None, M),
    ("POST", "/api/reports/schedules", {"name": "{role}-s", "recurrence": "monthly", "format": "csv"}, M),
    ("GET", "/api/reports/schedules/{schedule}/runs", None, M),
    ("DELETE", "/api/reports/schedules/{schedule}", None, M),
]
ROLES = ["admin", "finops", "department_head", "viewer", "ingest"]


async def _seed(api, keys, server_ledger) -> dict[str, str]:
    admin = auth(keys["admin"])
    await api.post("/api/v1/events", json=[EVENT], headers=admin)
    await api.post(
        "/api/budgets", json={"name": "research", "amount": "10", "scope": {"department": "research"}}, headers=admin
    )
    await api.post(
        "/api/budgets", json={"name": "spare", "amount": "1", "scope": {"department": "research"}}, headers=admin
    )
    await api.post(
        "/api/alerts/rules",
        json={"name": "base-rule", "kind": "absolute_spend", "params": {"amount_usd": "5", "period": "day"}},
        headers=admin,
    )
    await api.post(
        "/api/alerts/rules",
        json={"name": "spare-rule", "kind": "absolute_spend", "params": {"amount_usd": "5", "period": "day"}},
        headers=admin,
    )
    return {}


@pytest.mark.parametrize("role", ROLES)
async def test_every_route_for_every_role(api, keys, server_ledger, role):
    await _seed(api, keys, server_ledger)
    admin = auth(keys["admin"])
    for method, path, body, allowed in MATRIX:
        if "{approval}" in path:
            made = await api.post(
                "/api/budgets/research/overage-requests", json={"amount": "1", "justification": "m"}, headers=admin
            )
            path = path.replace("{approval}", str(made.json()["approval_id"]))
        if "{override}" in path:
            made = await api.post(
                "/api/pricing/overrides",
                json={"model": f"x-{role}-{method}", "prices": {"input_mtok": "1"}},
                headers=admin,
            )
            path = path.replace("{override}", str(made.json()["id"]))
        if "{policy}" in path:
            made = await api.post(
                "/api/gateway/policies", json={"kind": "cache", "params": {"mode": "exact"}}, headers=admin
            )
            path = path.replace("{policy}", str(made.json()["id"]))
        if "{key_id}" in path:
            made = await api.post("/api/keys", json={"role": "ingest"}, headers=admin)
            path = path.replace("{key_id}", made.json()["key_id"])
        if "{schedule}" in path:
            made = await api.post(
                "/api/reports/schedules",
                json={"name": f"x-{role}-{method}", "recurrence": "weekly", "format": "csv"},
                headers=admin,
            )
            path = path.replace("{schedule}", str(made.json()["id"]))
        payload = None
        if body is not None:
            payload = (
                [dict(EVENT, request_id=f"{role}-{i}") for i, _ in enumerate(body)]
                if isinstance(body, list)
                else {k: (v.replace("{role}", role) if isinstance(v, str) else v) for k, v in body.items()}
            )
        response = await api.request(method, path, json=payload, headers=auth(keys[role]))
        if role in allowed:
            assert response.status_code < 400, (role, method, path, response.status_code, response.text[:300])
        else:
            assert response.status_code == 403, (role, method, path, response.status_code, response.text[:300])
            assert response.json()["error"]["code"] == "forbidden"
    if role in ("department_head", "viewer"):
        # scoped keys see only their department's budgets
        names = {b["name"] for b in (await api.get("/api/budgets", headers=auth(keys[role]))).json()}
        assert names and all("research" in n or n.endswith("-b") or n == "spare" for n in names)


async def test_no_key_on_loopback_is_local_admin_until_a_key_exists(server_ledger):
    import httpx

    from fleetledger.access.keys import create_key
    from fleetledger.server import create_app

    app = create_app(server_ledger, local_only=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/api/budget/status")).status_code == 200
        create_key(server_ledger.store, role="admin", now=server_ledger.clock())
        app.state.keys_checked_at = 0
        assert (await client.get("/api/budget/status")).status_code == 401
