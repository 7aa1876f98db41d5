"""A small known ledger for report tests: October 2026, three departments, two providers,
cache reads and writes, reasoning tokens and a shared infrastructure line item."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from alerts.conftest import Mailbox, Receiver, receiver, smtp_server  # noqa: F401  (real SMTP and HTTP receivers)
from server.conftest import anyio_backend, api, auth, keys, server_ledger  # noqa: F401  (in-process API)
from support import record_all

EVENTS_PER_DAY = [
    # department, cost center, project, agent, provider, model, input, cache read, cache write, output, reasoning
    ("research", "CC-100", "search", "summarizer", "openai", "gpt-4o", 1200, 200, 0, 300, 0),
    ("research", "CC-100", "search", "planner", "openai", "o3-mini", 900, 0, 0, 2000, 1500),
    ("support", "CC-200", "helpdesk", "triage", "anthropic", "claude-sonnet-4-20250514", 5000, 3000, 1000, 700, 0),
    ("support", "CC-200", None, "triage", "openai", "gpt-4o-mini", 333, 0, 0, 77, 0),
]


def record_known_ledger(ledger, days: int = 10) -> None:
    record_all(ledger, _known_events(days), prefix="known")


def _known_events(days: int):
    start = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    for day in range(days):
        for n, (dept, cc, project, agent, provider, model, inp, cr, cw, out, rs) in enumerate(EVENTS_PER_DAY):
            for repeat in range(1 + (day + n) % 3):
                yield dict(
                    timestamp=start + timedelta(days=day, minutes=7 * n + repeat),
                    department=dept,
                    cost_center=cc,
                    project=project,
                    agent=agent,
                    provider=provider,
                    model=model,
                    input_tokens=inp + day,
                    cache_read_tokens=cr,
                    cache_write_tokens=cw,
                    output_tokens=out + repeat,
                    reasoning_tokens=rs,
                    environment="production",
                    tags={"team_lead": "ada"},
                )
        # a shared infrastructure line item booked to the platform cost center every day
        yield dict(
            timestamp=start + timedelta(days=day, hours=3),
            department="platform",
            cost_center="CC-900",
            agent="infra-billing",
            provider="aws",
            category="infrastructure",
            cost_usd=Decimal("0.023456789"),
        )
    # outside the period: must not be counted
    yield dict(
        timestamp=datetime(2026, 11, 1, 0, 0, tzinfo=UTC),
        department="research",
        provider="openai",
        model="gpt-4o",
        input_tokens=10**6,
    )


@pytest.fixture
def known(ledger, clock):
    record_known_ledger(ledger)
    clock.now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    return ledger


def october_total_nanos(ledger) -> int:
    return int(
        ledger.costs(since=datetime(2026, 10, 1, tzinfo=UTC), until=datetime(2026, 11, 1, tzinfo=UTC)).total[
            "cost_nanos"
        ]
    )
