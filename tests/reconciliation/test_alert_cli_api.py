"""The drift alert through a real webhook receiver; the CLI and REST round trips."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from fleetledger.cli import app
from fleetledger.core.errors import InvalidInput

from .conftest import EXPORTS, FIXTURES, KEYS, meter_fixture_traffic
from .test_report import _constructed


def test_drift_alert_fires_once_through_the_webhook(recon_ledger, receiver):
    _constructed(recon_ledger)  # drift: 1.011 provider vs 0.7504 ledger
    alerts = recon_ledger.alerts
    alerts.add_channel("finops-hook", "webhook", {"url": receiver.url, "secret": "s3cret"})
    rule = alerts.add_rule(
        "invoice-drift",
        "reconciliation_drift",
        params={"threshold_percent": "2", "days": 3, "provider": "openai"},
        channels=["finops-hook"],
    )
    assert rule.params == {"severity": "warning", "threshold_percent": "2", "days": 3, "provider": "openai"}
    alerts.add_rule("quiet", "reconciliation_drift", params={"threshold_usd": "1000"}, channels=["finops-hook"])

    fired = alerts.evaluate()
    assert [a.rule for a in fired] == ["invoice-drift"]
    alert = fired[0]
    assert alert.data["drift_usd"] == "0.260600000"  # 1.011 - (0.55 + 0.135 + 0.0154 + 0.05)
    assert alert.data["drift_percent"] == "25.78"
    assert alert.data["by_class_usd"]["price_mismatch"] == "0.030000000"
    assert "mostly unmetered traffic" in alert.message
    assert alerts.evaluate() == []  # the same window does not fire twice

    report = alerts.deliver()
    assert [o.status for o in report.outcomes] == ["delivered"]
    assert len(receiver.requests) == 1
    body = json.loads(receiver.requests[0].body)
    assert body["data"]["drift_usd"] == "0.260600000"
    assert "X-FleetLedger-Signature" in receiver.requests[0].headers  # signed with the channel's secret


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "threshold_usd or threshold_percent"),
        ({"threshold_percent": 2.5}, "decimal string"),
        ({"threshold_usd": "5", "days": 0}, "days"),
        ({"threshold_usd": "1e30"}, "at most 1000000000"),  # was accepted, then failed at every evaluation
        ({"threshold_usd": "5", "window": "1h"}, "not a reconciliation_drift rule parameter"),
    ],
)
def test_drift_rule_params_are_checked(recon_ledger, params, message):
    with pytest.raises(InvalidInput, match=message):
        recon_ledger.alerts.add_rule("bad", "reconciliation_drift", params=params)


def test_cli_import_and_report(recon_ledger, db_url, tmp_path, monkeypatch):
    meter_fixture_traffic(recon_ledger)
    monkeypatch.setenv("FLEETLEDGER_RECONCILIATION_KEYS", json.dumps(KEYS))
    monkeypatch.setenv("FLEETLEDGER_SPOOL_DIR", str(tmp_path / "cli-spool"))
    runner = CliRunner()
    base = ["--db", db_url, "reconcile"]
    for kind, name in EXPORTS.items():
        result = runner.invoke(app, [*base, "import", "--kind", kind, str(FIXTURES / name), "--format", "json"])
        assert result.exit_code == 1, result.output  # each fixture holds bad lines on purpose
        [counts] = json.loads(result.stdout)
        assert counts["inserted"] > 0 and counts["rejected"] == len(counts["rejections"]) > 0
    again = runner.invoke(app, [*base, "import", "--kind", "openai-costs", str(FIXTURES / "openai_costs.json")])
    assert "0 new lines" in again.stdout and "7 unchanged" in again.stdout and "3 rejected" in again.stdout
    assert "openai_costs.json:data[1].results[5]: line_item: null" in again.stdout
    bad_kind = runner.invoke(app, [*base, "import", "--kind", "langfuse", str(FIXTURES / "invoice.csv")])
    assert bad_kind.exit_code == 2

    window = ["--since", "2026-10-13", "--until", "2026-10-15"]
    as_json = runner.invoke(app, [*base, "report", *window, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["totals"]["drift_usd"] == "0.000000000"
    assert data["totals"]["provider_usd"] == data["totals"]["ledger_usd"] == "1.446171200"
    assert data["totals"]["cells_by_class"]["matched"] == 7

    as_csv = runner.invoke(app, [*base, "report", *window, "--provider", "openai", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["day"], r["model"], r["classification"]) for r in rows] == [
        ("2026-10-13", "gpt-4o", "matched"),
        ("2026-10-14", "gpt-4o", "matched"),
        ("2026-10-14", "gpt-4o-mini", "matched"),
    ]
    table = runner.invoke(app, [*base, "report", *window])
    assert "Reconciliation 2026-10-13 to 2026-10-15" in table.stdout and "drift 0.000000000 USD" in table.stdout
    assert table.stdout.count("matched") == 7


@pytest.mark.anyio
async def test_rest_import_and_report(recon_api, recon_ledger, role_keys):
    meter_fixture_traffic(recon_ledger)

    def auth(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {role_keys[role]}"}

    for kind, name in EXPORTS.items():
        content_type = "text/csv" if name.endswith(".csv") else "application/json"
        body = (FIXTURES / name).read_bytes()
        response = await recon_api.post(
            f"/api/reconciliation/import/{kind}", content=body, headers={**auth("finops"), "content-type": content_type}
        )
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["inserted"] > 0 and data["rejected"] == len(data["rejections"]) > 0
        assert all(r["location"].startswith(("data[", "body:")) for r in data["rejections"]), data["rejections"]
    again = await recon_api.post(
        "/api/reconciliation/import/openai-costs",
        content=(FIXTURES / "openai_costs.json").read_bytes(),
        headers=auth("admin"),
    )
    assert (again.json()["inserted"], again.json()["unchanged"]) == (0, 7)
    for role in ("department_head", "ingest"):
        denied = await recon_api.post("/api/reconciliation/import/openai-costs", content=b"{}", headers=auth(role))
        assert denied.status_code == 403
        assert (await recon_api.get("/api/reconciliation", headers=auth(role))).status_code == 403
    unknown = await recon_api.post("/api/reconciliation/import/langfuse", content=b"{}", headers=auth("admin"))
    assert unknown.status_code == 400 and "not an export kind" in unknown.json()["error"]["message"]

    report = await recon_api.get(
        "/api/reconciliation", params={"since": "2026-10-13", "until": "2026-10-15"}, headers=auth("finops")
    )
    assert report.status_code == 200
    totals = report.json()["totals"]
    assert (totals["provider_usd"], totals["ledger_usd"], totals["drift_usd"], totals["unexplained_usd"]) == (
        "1.446171200",
        "1.446171200",
        "0.000000000",
        "0.000000000",
    )
    audit = await recon_api.get("/api/audit", headers=auth("admin"))
    assert sum(entry["action"] == "reconciliation.imported" for entry in audit.json()) == len(EXPORTS) + 1


def test_cli_alerts_evaluate_runs_the_drift_rule(db_url, tmp_path, monkeypatch, receiver):
    """`fleetledger alerts evaluate` evaluates plug-in rule kinds too (real clock: data two days back)."""
    from datetime import UTC, datetime, timedelta

    from fleetledger import Ledger, Settings
    from fleetledger.core.time import floor_day

    day = floor_day(datetime.now(UTC)) - timedelta(days=2)
    monkeypatch.setenv("FLEETLEDGER_SPOOL_DIR", str(tmp_path / "spool"))
    with Ledger(settings=Settings(database_url=db_url, spool_dir=tmp_path / "spool"), background=False) as ledger:
        ledger.record(
            timestamp=day + timedelta(hours=3), provider="openai", model="gpt-4o", input_tokens=1000, project="p1"
        )  # $0.0025 metered
    page = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": int(day.timestamp()),
                "end_time": int((day + timedelta(days=1)).timestamp()),
                "results": [
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": "1.0025", "currency": "usd"},
                        "line_item": "gpt-4o-2024-08-06, input",
                        "project_id": "p1",
                    }
                ],
            }
        ],
    }
    export = tmp_path / "costs.json"
    export.write_text(json.dumps(page))
    runner = CliRunner()
    base = ["--db", db_url]
    assert runner.invoke(app, [*base, "reconcile", "import", "--kind", "openai-costs", str(export)]).exit_code == 0
    hook = runner.invoke(app, [*base, "alerts", "channel-add", "hook", "--kind", "webhook", "--url", receiver.url])
    assert hook.exit_code == 0, hook.output
    added = runner.invoke(
        app,
        [*base, "alerts", "add", "drift", "--kind", "reconciliation_drift"]
        + ["--param", "threshold_usd=0.5", "--param", "days=3", "--channel", "hook"],
    )
    assert added.exit_code == 0, added.output
    fired = runner.invoke(app, [*base, "alerts", "evaluate", "--format", "json"])
    assert fired.exit_code == 0, fired.output
    [alert] = json.loads(fired.stdout)
    assert alert["data"]["drift_usd"] == "1.000000000"  # billed 1.0025, metered 0.0025
    assert json.loads(runner.invoke(app, [*base, "alerts", "evaluate", "--format", "json"]).stdout) == []
