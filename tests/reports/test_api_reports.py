"""REST: report downloads with department scoping, bad input named, schedules (admin/finops)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from fleetledger.core.money import nanos_to_usd
from fleetledger.reports.schedules import default_folder

from .conftest import auth, october_total_nanos, record_known_ledger

pytestmark = pytest.mark.anyio


@pytest.fixture
def known_server(server_ledger, clock):
    record_known_ledger(server_ledger)
    clock.now = datetime(2026, 11, 2, 8, tzinfo=UTC)
    return server_ledger


def _department_nanos(ledger, department):
    return int(
        ledger.costs(
            since=datetime(2026, 10, 1, tzinfo=UTC),
            until=datetime(2026, 11, 1, tzinfo=UTC),
            where={"department": [department]},
        ).total["cost_nanos"]
    )


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "pdf", "focus"])
async def test_export_downloads_each_format(api, keys, known_server, fmt):
    response = await api.get(
        "/api/reports/export", params={"format": fmt, "period": "2026-10"}, headers=auth(keys["finops"])
    )
    assert response.status_code == 200, response.text
    name = {"csv": "fleetledger-2026-10.csv", "xlsx": "fleetledger-2026-10.xlsx"}.get(fmt)
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    if name:
        assert name in disposition
    total = nanos_to_usd(october_total_nanos(known_server))
    assert response.headers["x-report-total-usd"] == f"{total:f}"
    if fmt == "xlsx":
        workbook = load_workbook(io.BytesIO(response.content))
        assert workbook.sheetnames == ["Summary", "Detailed", "Chart data", "Budgets"]
    elif fmt == "pdf":
        assert response.content.startswith(b"%PDF") and response.headers["content-type"] == "application/pdf"
    else:
        rows = list(csv.DictReader(io.StringIO(response.text)))
        column = "BilledCost" if fmt == "focus" else "cost_usd_exact"
        assert sum(Decimal(r[column]) for r in rows) == total


async def test_department_head_gets_only_its_department(api, keys, known_server):
    head = auth(keys["department_head"])  # covers research
    response = await api.get(
        "/api/reports/export", params={"format": "csv", "period": "2026-10", "kind": "detailed"}, headers=head
    )
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows and {r["department"] for r in rows} == {"research"}
    assert sum(Decimal(r["cost_usd_exact"]) for r in rows) == nanos_to_usd(_department_nanos(known_server, "research"))
    focus = await api.get("/api/reports/export", params={"format": "focus", "period": "2026-10"}, headers=head)
    assert "support" not in focus.text and "helpdesk" not in focus.text
    other = await api.get(
        "/api/reports/export", params={"format": "csv", "period": "2026-10", "department": "support"}, headers=head
    )
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"
    viewer = await api.get(
        "/api/reports/export",
        params={"format": "xlsx", "period": "2026-10", "department": "research"},
        headers=auth(keys["viewer"]),
    )
    assert viewer.status_code == 200
    denied = await api.get("/api/reports/export", params={"period": "2026-10"}, headers=auth(keys["ingest"]))
    assert denied.status_code == 403


@pytest.mark.parametrize(
    ("params", "status", "named"),
    [
        ({"format": "docx", "period": "2026-10"}, 422, "format"),
        ({"format": "csv", "period": "2026-10", "kind": "everything"}, 422, "kind"),
        ({"format": "csv"}, 422, "period"),
        ({"format": "csv", "period": "2026-13"}, 400, "period"),
        ({"format": "csv", "period": "last month"}, 400, "period"),
    ],
)
async def test_bad_input_names_the_parameter(api, keys, known_server, params, status, named):
    response = await api.get("/api/reports/export", params=params, headers=auth(keys["admin"]))
    assert response.status_code == status
    assert named in response.json()["error"]["message"]


async def test_schedules_crud(api, keys, server_ledger, tmp_path):
    admin = auth(keys["admin"])
    await api.post(
        "/api/alerts/channels",
        json={"name": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
        headers=admin,
    )
    body = {
        "name": "monthly-finance",
        "recurrence": "monthly",
        "format": "pdf",
        "kind": "chargeback",
        "departments": ["research"],
        "channels": ["hook"],
        "folder": "finance/monthly",
    }
    created = await api.post("/api/reports/schedules", json=body, headers=auth(keys["finops"]))
    assert created.status_code == 201, created.text
    schedule = created.json()
    # a remote caller picks a subfolder of the server's reports folder, never another place on its disk
    assert schedule["folder"] == str(Path(default_folder(server_ledger)) / "finance" / "monthly")
    for outside in (str(tmp_path / "out"), "../../etc", "~/x", "a/../../b", "0" * 5000):
        refused = await api.post("/api/reports/schedules", json={**body, "name": "z", "folder": outside}, headers=admin)
        assert refused.status_code in (400, 422), (outside, refused.text)
        assert "folder" in refused.json()["error"]["message"]
    assert schedule["recurrence"] == "monthly" and schedule["channels"] == ["hook"]
    assert schedule["created_by"] == "finops-key"
    listed = (await api.get("/api/reports/schedules", headers=admin)).json()["schedules"]
    assert [s["name"] for s in listed] == ["monthly-finance"]
    assert (await api.get(f"/api/reports/schedules/{schedule['id']}/runs", headers=admin)).json() == {"runs": []}
    duplicate = await api.post("/api/reports/schedules", json=body, headers=admin)
    assert duplicate.status_code == 409
    bad = await api.post("/api/reports/schedules", json={**body, "name": "x", "channels": ["nope"]}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("channels:")
    wrong = await api.post("/api/reports/schedules", json={**body, "name": "y", "recurrence": "daily"}, headers=admin)
    assert wrong.status_code == 422 and "recurrence" in wrong.json()["error"]["message"]
    for role in ("department_head", "viewer", "ingest"):
        assert (await api.get("/api/reports/schedules", headers=auth(keys[role]))).status_code == 403
    assert (await api.delete(f"/api/reports/schedules/{schedule['id']}", headers=admin)).status_code == 204
    assert (await api.delete(f"/api/reports/schedules/{schedule['id']}", headers=admin)).status_code == 404
    audit = (await api.get("/api/audit", headers=admin)).json()
    entries = audit if isinstance(audit, list) else audit.get("entries", [])
    assert any(e.get("entity") == "report_schedule" for e in entries)
