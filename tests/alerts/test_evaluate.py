"""Spend rules evaluated against a real ledger: each fires once per period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetledger import Ledger, Settings
from fleetledger.alerts import AlertEngine
from fleetledger.alerts.rules import period_start, previous_period_start

DAY = datetime(2026, 10, 15, tzinfo=UTC)  # the clock fixture's day; it reads 12:00


def event(at: datetime, input_tokens: int, department: str = "research") -> tuple[str, dict]:
    return (
        at.isoformat(),
        {
            "timestamp": at.isoformat(),
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": input_tokens,
            "output_tokens": 0,
            "department": department,
        },
    )


@pytest.fixture
def ledger(db_url, clock, tmp_path):
    with Ledger(settings=Settings(database_url=db_url, spool_dir=tmp_path / "s"), background=False, clock=clock) as it:
        yield it


@pytest.fixture
def alerting(ledger, clock, http):
    engine = AlertEngine(ledger.store, clock=clock, http=http)
    yield engine
    engine.close()


def test_absolute_spend_fires_once_per_day(ledger, alerting, clock):
    # gpt-4o input is $2.50 per million tokens.
    ledger.ingest(
        [
            event(DAY.replace(hour=9), 1_000_000),
            event(DAY.replace(hour=10), 1_000_000),
            event(DAY.replace(hour=11), 1_000_000, department="support"),
        ]
    )
    alerting.add_rule("research-daily", "absolute_spend", scope={"department": "research"}, params={"amount_usd": "6"})
    alerting.add_rule("all-daily", "absolute_spend", params={"amount_usd": "7", "severity": "critical"})
    [alert] = alerting.evaluate()
    assert alert.rule == "all-daily" and alert.severity == "critical"
    assert alert.data["spent_usd"] == "7.500000000" and alert.data["requests"] == 3
    assert alert.dedup_key.endswith(":day:2026-10-15")
    assert alert.title == "all-daily: $7.50 spent this day"

    ledger.ingest([event(DAY.replace(hour=11, minute=30), 1_000_000)])
    clock.now = DAY.replace(hour=13)
    [alert] = alerting.evaluate()  # research now at $7.50; all-daily already fired today
    assert alert.rule == "research-daily" and "department=research" in alert.message
    clock.now = DAY.replace(hour=23)
    assert alerting.evaluate() == []

    clock.now = DAY + timedelta(days=1, hours=10)
    assert alerting.evaluate() == []  # a new day starts from zero
    ledger.ingest([event(DAY + timedelta(days=1, hours=9), 3_200_000)])
    fired = alerting.evaluate()
    assert sorted(a.rule for a in fired) == ["all-daily", "research-daily"]
    assert all(a.dedup_key.endswith(":2026-10-16") for a in fired)


def test_cost_per_request_fires_once_per_window(ledger, alerting, clock):
    ledger.ingest([event(DAY.replace(hour=11, minute=30), 100_000), event(DAY.replace(hour=11, minute=40), 100_000)])
    ledger.ingest([event(DAY.replace(hour=11, minute=45), 1_000)])  # cheap: average stays $0.1668
    alerting.add_rule("expensive-calls", "cost_per_request", params={"amount_usd": "0.05", "window": "1h"})
    alerting.add_rule("never", "cost_per_request", params={"amount_usd": "1", "window": "24h"})
    [alert] = alerting.evaluate()
    assert alert.data["requests"] == 3 and alert.data["average_usd"] == "0.167500000"
    assert alert.dedup_key.endswith(":1h:2026-10-15T12:00:00+00:00")

    clock.now = DAY.replace(hour=12, minute=30)
    assert alerting.evaluate() == []  # same hour bucket
    clock.now = DAY.replace(hour=13, minute=20)
    assert alerting.evaluate() == []  # the window [12:20, 13:20) is empty
    ledger.ingest([event(DAY.replace(hour=13, minute=10), 50_000)])
    [again] = alerting.evaluate()
    assert again.dedup_key.endswith(":1h:2026-10-15T13:00:00+00:00")


def test_percent_increase_compares_like_for_like(ledger, alerting, clock):
    yesterday = DAY - timedelta(days=1)
    ledger.ingest([event(yesterday.replace(hour=9), 1_000_000), event(yesterday.replace(hour=15), 9_000_000)])
    ledger.ingest([event(DAY.replace(hour=9), 1_400_000)])
    alerting.add_rule("growth", "percent_increase", params={"percent": "50", "period": "day"})
    assert alerting.evaluate() == []  # +40% on yesterday's morning; yesterday afternoon does not count
    ledger.ingest([event(DAY.replace(hour=10), 200_000)])
    [alert] = alerting.evaluate()
    assert alert.data["increase_percent"] == "60.0"
    assert alert.data["previous_usd"] == "2.500000000"
    assert alerting.evaluate() == []


def test_periods():
    moment = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)  # a Wednesday
    assert period_start("day", moment) == datetime(2026, 3, 18, tzinfo=UTC)
    assert period_start("week", moment) == datetime(2026, 3, 16, tzinfo=UTC)
    assert period_start("month", moment) == datetime(2026, 3, 1, tzinfo=UTC)
    assert previous_period_start("month", datetime(2026, 3, 1, tzinfo=UTC)) == datetime(2026, 2, 1, tzinfo=UTC)
    assert previous_period_start("week", datetime(2026, 3, 16, tzinfo=UTC)) == datetime(2026, 3, 9, tzinfo=UTC)
