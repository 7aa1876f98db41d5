"""The CLI as a user runs it: the issue's example, every format, schedules."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from fleetledger import Ledger, Settings
from fleetledger.cli import app
from fleetledger.core.money import nanos_to_usd

from .conftest import october_total_nanos, record_known_ledger

runner = CliRunner()


@pytest.fixture
def cli_db(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETLEDGER_SPOOL_DIR", str(tmp_path / "spool"))
    with Ledger(settings=Settings(database_url=db_url, spool_dir=tmp_path / "spool"), background=False) as ledger:
        record_known_ledger(ledger)
        total = october_total_nanos(ledger)
    return db_url, total


def run(db: str, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["--db", db, *args])
    assert result.exit_code == code, result.output
    return result.output


def test_the_issue_example_writes_an_excel_report(cli_db, tmp_path):
    db, total = cli_db
    out = tmp_path / "october.xlsx"
    output = run(db, "report", "--format", "xlsx", "--period", "2026-10", "--out", str(out))
    assert f"Wrote {out}" in output and f"exact {nanos_to_usd(total):f} USD" in output
    workbook = load_workbook(out)
    assert workbook.sheetnames == ["Summary", "Detailed", "Chart data", "Budgets"]


@pytest.mark.parametrize("fmt", ["pdf", "csv", "focus"])
def test_other_formats_and_scopes(cli_db, tmp_path, fmt):
    db, total = cli_db
    out = tmp_path / f"r.{fmt}"
    run(db, "report", "-f", fmt, "-p", "2026-10", "-o", str(out), "--kind", "detailed", "--department", "research")
    content = out.read_bytes()
    if fmt == "pdf":
        assert content.startswith(b"%PDF")
    else:
        rows = list(csv.DictReader(io.StringIO(content.decode())))
        column = "BilledCost" if fmt == "focus" else "cost_usd_exact"
        assert 0 < sum(Decimal(r[column]) for r in rows) < nanos_to_usd(total)


def test_bad_options_fail_with_the_parameter_named(cli_db, tmp_path):
    db, _ = cli_db
    assert "period" in run(db, "report", "--format", "csv", "--period", "2026-13", code=2)
    assert "--period" in run(db, "report", "--format", "csv", code=2)
    assert "docx" in run(db, "report", "--format", "docx", "--period", "2026-10", code=2)


def test_schedule_commands(cli_db, tmp_path):
    db, _ = cli_db
    added = run(
        db,
        "report",
        "schedule",
        "add",
        "--name",
        "monthly-finance",
        "--recurrence",
        "monthly",
        "--format",
        "pdf",
        "--folder",
        str(tmp_path / "reports"),
        "--output",
        "json",
    )
    schedule = json.loads(added)
    assert schedule["name"] == "monthly-finance" and schedule["format"] == "pdf"
    listed = json.loads(run(db, "report", "schedule", "list", "--output", "json"))
    assert [s["name"] for s in listed] == ["monthly-finance"]
    # created now: the last complete month ended before it existed, so nothing is due yet
    assert "Nothing due." in run(db, "report", "schedule", "run-due")
    assert "channels: no alert channel named 'nope'" in run(
        db, "report", "schedule", "add", "--name", "x", "--recurrence", "weekly", "--channel", "nope", code=2
    )
    run(db, "report", "schedule", "delete", "monthly-finance")
    assert json.loads(run(db, "report", "schedule", "list", "--output", "json")) == []
