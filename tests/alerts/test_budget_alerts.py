"""End to end: real budget spend crosses thresholds -> bus -> alert rule -> outbox -> signed webhook."""

from __future__ import annotations

import json
from datetime import timedelta

from fleetledger import Ledger, Settings
from fleetledger.alerts.channels import verify_signature
from fleetledger.core.errors import BudgetExceeded


def test_budget_thresholds_reach_a_webhook_once_per_level(db_url, tmp_path, clock, receiver, http):
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool")
    with Ledger(settings=settings, background=False, clock=clock) as ledger:
        ledger.alerts.add_channel("finops-hook", "webhook", {"url": receiver.url, "secret": "s3cret"})
        ledger.alerts.add_rule("research-budget", "budget", params={"budget": "*"}, channels=["finops-hook"])
        ledger.budgets.create(name="research", scope={"department": "research"}, amount="1.00", action="block")
        # $0.85 -> warning, $0.97 -> critical, then a refused request -> exceeded
        for tokens in (340_000, 48_000, 4_000):
            ledger.record(provider="openai", model="gpt-4o", input_tokens=tokens, department="research")
        try:
            ledger.reserve("0.50", department="research")
        except BudgetExceeded:
            pass
        try:
            ledger.reserve("0.50", department="research")  # again: suppressed by the cooldown
        except BudgetExceeded:
            pass
        ledger.alerts._http = http  # deliver with the test's client
        for _ in range(3):
            ledger.alerts.deliver()
            clock.now += timedelta(seconds=1)
        severities = [json.loads(r.body)["severity"] for r in receiver.requests]
        assert severities == ["warning", "critical", "exceeded"]
        for request in receiver.requests:
            assert verify_signature(
                "s3cret",
                request.headers["X-FleetLedger-Timestamp"],
                request.body,
                request.headers["X-FleetLedger-Signature"],
                now=clock(),
            )
        assert [a.severity for a in ledger.alerts.history()] == ["exceeded", "critical", "warning"]
