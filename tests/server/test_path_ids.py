"""Path ids outside 1 .. 2**63-1 are a 4xx on every route, never a 500 (driver overflow).

The integer-id routes are found in the OpenAPI document, so a new route with an unbounded
``int`` path id fails here without anyone listing it.
"""

from __future__ import annotations

import re

import pytest

from .conftest import auth

pytestmark = pytest.mark.anyio

TOO_BIG = str(2**63)
TOP = str(2**63 - 1)
#: A body each route accepts, so that only the id can be what a 4xx is about.
BODIES = {
    ("patch", "/api/recommendations/{rec_id}"): {"status": "approved"},
    ("patch", "/api/anomalies/{anomaly_id}"): {"status": "resolved"},
    ("post", "/api/approvals/{approval_id}/approve"): {},
    ("post", "/api/approvals/{approval_id}/decline"): {},
}
#: Every integer-id route today; the OpenAPI scan must find at least these.
KNOWN = {
    ("get", "/api/reports/schedules/{schedule_id}/runs"),
    ("delete", "/api/reports/schedules/{schedule_id}"),
    ("get", "/api/recommendations/{rec_id}"),
    ("patch", "/api/recommendations/{rec_id}"),
    ("post", "/api/recommendations/{rec_id}/realized"),
    ("post", "/api/approvals/{approval_id}/approve"),
    ("post", "/api/approvals/{approval_id}/decline"),
    ("delete", "/api/pricing/overrides/{override_id}"),
    ("patch", "/api/anomalies/{anomaly_id}"),
    ("delete", "/api/gateway/policies/{policy_id}"),
}


async def _integer_id_routes(api, key) -> list[tuple[str, str, str]]:
    spec = (await api.get("/openapi.json", headers=auth(key))).json()
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["schema"].get("type") == "integer":
                    found.append((method, path, parameter["name"]))
    return found


def _url(path: str, name: str, value: str) -> str:
    return path.replace("{" + name + "}", value)


async def test_every_integer_path_id_is_bounded(api, keys):
    admin = auth(keys["admin"])
    routes = await _integer_id_routes(api, keys["admin"])
    assert KNOWN <= {(method, path) for method, path, _ in routes}
    for method, path, name in routes:
        assert re.fullmatch(r"[^{}]*\{" + name + r"\}[^{}]*", path), f"{path}: one id per route expected"
        body = BODIES.get((method, path))
        for value in (TOO_BIG, "0", "-1", "1e3", "x"):
            response = await api.request(method, _url(path, name, value), json=body, headers=admin)
            where = f"{method.upper()} {_url(path, name, value)}"
            assert response.status_code == 422, f"{where}: {response.status_code} {response.text}"
            problems = response.json()["error"]["problems"]
            assert [p["where"] for p in problems] == [f"path.{name}"], f"{where}: {problems}"
        top = await api.request(method, _url(path, name, TOP), json=body, headers=admin)
        assert top.status_code == 404, f"{method.upper()} {_url(path, name, TOP)}: {top.status_code} {top.text}"


async def test_the_reported_schedule_route(api, keys):
    """The case that answered 500: a schedule id one past the largest 64-bit integer."""
    for method in ("get", "delete"):
        suffix = "/runs" if method == "get" else ""
        url = f"/api/reports/schedules/{TOO_BIG}{suffix}"
        response = await api.request(method, url, headers=auth(keys["admin"]))
        assert response.status_code == 422 and "schedule_id" in response.json()["error"]["message"]


#: The routes that take a budget by name or id; an all-digit key is an id and bounded like one.
BUDGET_ROUTES = [
    ("get", "/api/budgets/{key}", None, None),
    ("patch", "/api/budgets/{key}", {"amount": "10", "justification": "test"}, None),
    ("delete", "/api/budgets/{key}", None, {"justification": "test"}),
    ("get", "/api/budgets/{key}/history", None, None),
    ("post", "/api/budgets/{key}/overage-requests", {"amount": "10", "justification": "test"}, None),
    ("get", "/api/budgets/{key}/runway", None, None),
]


@pytest.mark.parametrize(("method", "path", "body", "params"), BUDGET_ROUTES)
async def test_budget_keys_out_of_range_are_4xx(api, keys, method, path, body, params):
    admin = auth(keys["admin"])
    for bad in (TOO_BIG, "0", "00"):
        response = await api.request(method, _url(path, "key", bad), json=body, params=params, headers=admin)
        assert response.status_code == 422, f"{method} {bad}: {response.status_code} {response.text}"
        assert [p["where"] for p in response.json()["error"]["problems"]] == ["path.key"]
    for missing in ("-1", TOP, "no-such-budget"):
        response = await api.request(method, _url(path, "key", missing), json=body, params=params, headers=admin)
        assert response.status_code == 404, f"{method} {missing}: {response.status_code} {response.text}"


async def test_string_keys_that_look_like_big_numbers_are_404(api, keys):
    admin = auth(keys["admin"])
    for method, path in (
        ("delete", "/api/keys/{id}"),
        ("delete", "/api/alerts/rules/{id}"),
        ("delete", "/api/alerts/channels/{id}"),
        ("get", "/api/costs/request/{id}"),
    ):
        response = await api.request(method, _url(path, "id", TOO_BIG), headers=admin)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
