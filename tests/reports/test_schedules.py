"""Scheduled reports: written to a folder and sent once per period through real receivers (an
aiosmtpd SMTP server, an HTTP webhook receiver), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from fleetledger.core.errors import Conflict, InvalidInput
from fleetledger.core.money import nanos_to_usd
from fleetledger.reports.periods import parse_period
from fleetledger.reports.schedules import (
    add_schedule,
    claim_run,
    delete_schedule,
    get_schedule,
    list_runs,
    list_schedules,
    run_due,
)

from .conftest import october_total_nanos, record_known_ledger


@pytest.fixture
def channels(ledger, smtp_server, receiver):
    _, port = smtp_server
    ledger.alerts.add_channel(
        "finance-mail",
        "email",
        {"smtp_host": "127.0.0.1", "smtp_port": port, "from": "ledger@example.com", "to": ["cfo@example.com"]},
    )
    ledger.alerts.add_channel("finance-hook", "webhook", {"url": f"{receiver.url}/reports", "secret": "s3cret"})
    return ledger


def _attachments(message) -> list[tuple[str, bytes]]:
    return [(part.get_filename(), part.get_payload(decode=True)) for part in message.walk() if part.get_filename()]


def test_monthly_report_is_written_and_sent_once(channels, clock, smtp_server, receiver, tmp_path):
    ledger = channels
    mailbox, _ = smtp_server
    folder = tmp_path / "reports"
    schedule = add_schedule(
        ledger,
        name="monthly finance",
        recurrence="monthly",
        format="xlsx",
        channels=["finance-mail", "finance-hook"],
        folder=str(folder),
    )
    record_known_ledger(ledger)
    assert run_due(ledger) == []  # 2026-10-15: October has not ended
    clock.now = datetime(2026, 11, 1, 0, 5, tzinfo=UTC)

    outcomes = run_due(ledger)
    assert [o["status"] for o in outcomes] == ["done"]
    path = Path(outcomes[0]["path"])
    assert path == folder / "monthly-finance-fleetledger-2026-10.xlsx" and path.exists()
    total = nanos_to_usd(october_total_nanos(ledger))
    assert outcomes[0]["total_usd"] == f"{total:f}"

    # the email carries the workbook, which opens and shows the exact total
    assert len(mailbox.envelopes) == 1
    message = mailbox.messages()[0]
    assert message["To"] == "cfo@example.com" and "2026-10" in message["Subject"]
    [(filename, content)] = _attachments(message)
    assert filename == path.name and content == path.read_bytes()
    summary = load_workbook(io.BytesIO(content))["Summary"]
    figures = {row[0]: row[1] for row in summary.iter_rows(min_col=1, max_col=2, values_only=True) if row[0]}
    assert Decimal(str(figures["Total spend (exact)"])) == total

    # the webhook gets a signed summary with the file's path
    assert len(receiver.requests) == 1
    body = json.loads(receiver.requests[0].body)
    assert body["event"] == "report.ready" and body["file"] == str(path) and body["period"] == "2026-10"
    assert body["total_usd"] == f"{total:f}" and "X-FleetLedger-Signature" in receiver.requests[0].headers

    # running again (or twice at once) sends nothing more
    assert run_due(ledger) == []
    clock.now += timedelta(days=3)
    assert run_due(ledger) == []
    assert len(mailbox.envelopes) == 1 and len(receiver.requests) == 1
    [run] = list_runs(ledger.store, schedule.id)
    assert run["status"] == "done" and run["attempts"] == 1
    assert {k: v["status"] for k, v in run["deliveries"].items()} == {
        "finance-mail": "delivered",
        "finance-hook": "delivered",
    }


def test_a_failed_channel_is_retried_without_resending_the_others(channels, clock, smtp_server, receiver, tmp_path):
    ledger = channels
    mailbox, _ = smtp_server
    add_schedule(
        ledger,
        name="weekly",
        recurrence="weekly",
        format="pdf",
        channels=["finance-mail", "finance-hook"],
        folder=str(tmp_path),
    )
    record_known_ledger(ledger)
    receiver.responses = [503]  # the webhook receiver is down for the first attempt
    clock.now = datetime(2026, 10, 19, 6, tzinfo=UTC)  # Monday: the week of 12-18 October has ended
    [first] = run_due(ledger)
    assert first["status"] == "pending" and first["period"] == "2026-10-12..2026-10-18"
    assert first["deliveries"]["finance-mail"]["status"] == "delivered"
    assert first["deliveries"]["finance-hook"]["status"] == "retrying"
    assert run_due(ledger) == []  # backing off
    clock.now += timedelta(minutes=5)
    [second] = run_due(ledger)
    assert second["status"] == "done" and second["attempt"] == 2
    assert len(mailbox.envelopes) == 1  # the email went out once
    assert [r.status for r in receiver.requests] == [503, 200]
    assert mailbox.messages()[0].get_content_type() == "multipart/mixed"
    [(filename, content)] = _attachments(mailbox.messages()[0])
    assert filename == "weekly-fleetledger-2026-10-12_2026-10-18.pdf" and content.startswith(b"%PDF")


def test_a_runner_that_crashed_half_way_is_taken_over_after_its_lease(channels, clock, smtp_server, tmp_path):
    ledger = channels
    mailbox, _ = smtp_server
    schedule = add_schedule(
        ledger, name="q", recurrence="quarterly", format="csv", channels=["finance-mail"], folder=str(tmp_path)
    )
    record_known_ledger(ledger)
    clock.now = datetime(2027, 1, 1, 1, tzinfo=UTC)
    # a runner claims 2026-Q4 and dies before sending anything
    assert claim_run(ledger.store, schedule, parse_period("2026-Q4"), now=clock.now, lease_s=600) is not None
    assert run_due(ledger) == []  # its lease is still live: nobody else runs it
    assert mailbox.envelopes == []
    clock.now += timedelta(minutes=11)
    [outcome] = run_due(ledger)
    assert outcome["status"] == "done" and outcome["attempt"] == 2
    assert len(mailbox.envelopes) == 1
    assert run_due(ledger) == [] and len(mailbox.envelopes) == 1


def test_a_permanent_refusal_fails_that_channel_only(channels, clock, receiver, smtp_server, tmp_path):
    ledger = channels
    mailbox, _ = smtp_server
    add_schedule(
        ledger,
        name="m",
        recurrence="monthly",
        format="focus",
        channels=["finance-hook", "finance-mail"],
        folder=str(tmp_path),
    )
    receiver.responses = [404]
    clock.now = datetime(2026, 11, 2, tzinfo=UTC)
    [outcome] = run_due(ledger)
    assert outcome["status"] == "failed"
    assert outcome["deliveries"]["finance-hook"]["status"] == "failed"
    assert outcome["deliveries"]["finance-mail"]["status"] == "delivered"
    assert run_due(ledger) == [] and len(receiver.requests) == 1 and len(mailbox.envelopes) == 1


def test_first_report_is_for_the_first_period_ending_after_creation(ledger, clock, tmp_path):
    clock.now = datetime(2026, 11, 2, tzinfo=UTC)
    add_schedule(ledger, name="late", recurrence="monthly", format="csv", folder=str(tmp_path))
    assert run_due(ledger) == []  # October ended before the schedule existed
    clock.now = datetime(2026, 12, 1, 0, 1, tzinfo=UTC)
    [outcome] = run_due(ledger)
    assert outcome["period"] == "2026-11" and outcome["status"] == "done"  # no channel: written only
    assert Path(outcome["path"]).read_text().startswith("department,cost_center")


def test_schedule_validation_and_management(ledger, tmp_path):
    ledger.alerts.add_channel("pager", "pagerduty", {"routing_key": "abc"})
    with pytest.raises(InvalidInput, match="^channels: no alert channel named 'nope'"):
        add_schedule(ledger, name="a", recurrence="monthly", channels=["nope"])
    with pytest.raises(InvalidInput, match="^channels: 'pager' is a pagerduty channel"):
        add_schedule(ledger, name="a", recurrence="monthly", channels=["pager"])
    with pytest.raises(InvalidInput, match="^recurrence:"):
        add_schedule(ledger, name="a", recurrence="daily")
    with pytest.raises(InvalidInput, match="^format:"):
        add_schedule(ledger, name="a", recurrence="monthly", format="docx")
    with pytest.raises(InvalidInput, match="^kind:"):
        add_schedule(ledger, name="a", recurrence="monthly", kind="everything")
    with pytest.raises(InvalidInput, match="^name:"):
        add_schedule(ledger, name="", recurrence="monthly")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match="^folder:"):
        add_schedule(ledger, name="a", recurrence="monthly", folder=str(tmp_path / "file"))
    made = add_schedule(ledger, name="a", recurrence="monthly", departments=["research"])
    if ledger.store.dialect == "sqlite":
        assert made.folder == str(tmp_path.resolve() / "reports")  # beside the SQLite file
    else:
        assert made.folder.endswith("fleetledger/reports")
    with pytest.raises(Conflict):
        add_schedule(ledger, name="a", recurrence="weekly")
    assert [s.name for s in list_schedules(ledger.store)] == ["a"]
    assert get_schedule(ledger.store, "a").departments == ("research",)
    delete_schedule(ledger.store, made.id)
    assert list_schedules(ledger.store) == []


def test_the_server_sends_due_reports_in_the_background(channels, clock, smtp_server, tmp_path):
    import time

    from fastapi.testclient import TestClient

    from fleetledger.server import create_app

    ledger = channels
    mailbox, _ = smtp_server
    add_schedule(
        ledger, name="served", recurrence="monthly", format="csv", channels=["finance-mail"], folder=str(tmp_path)
    )
    record_known_ledger(ledger)
    clock.now = datetime(2026, 11, 1, 0, 1, tzinfo=UTC)
    with TestClient(create_app(ledger, start_workers=True)):
        deadline = time.monotonic() + 20
        while not mailbox.envelopes and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(mailbox.envelopes) == 1
    [(filename, content)] = _attachments(mailbox.messages()[0])
    assert filename == "served-fleetledger-2026-10.csv" and content.startswith(b"department,cost_center")
    [run] = list_runs(ledger.store)
    assert run["status"] == "done"
