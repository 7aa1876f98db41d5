"""Recommendations: savings equal an independent re-pricing; lifecycle; realized savings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tokenledger.errors import Conflict
from tokenledger.insights import recommendations as service
from tokenledger.usage import parse_event


@pytest.fixture
def busy(ledger, clock):
    # 40 standard calls of a background agent, half repeating a prompt: batch and caching apply.
    for n in range(40):
        ledger.record(
            provider="openai", model="gpt-4o", agent="nightly-summarizer", user="svc-nightly",
            operation="summarize", input_tokens=20_000 + n, output_tokens=800, prompt_hash=f"p{n % 20}",
            timestamp=clock.now - timedelta(hours=10, minutes=n),  # gpt-4o batch prices start 2026-10-14
        )  # fmt: skip
    return ledger


def test_batch_saving_equals_an_independent_repricing(busy, clock):
    found = service.scan(busy, min_monthly_savings_usd="0", kinds=["batch"])
    (batch,) = [r for r in found if r.scope["model"] == "gpt-4o"]
    expected = 0
    for n in range(40):
        event = parse_event(
            {"provider": "openai", "model": "gpt-4o", "service_tier": "batch",
             "input_tokens": 20_000 + n, "output_tokens": 800, "timestamp": clock.now - timedelta(hours=10, minutes=n)}
        )  # fmt: skip
        expected += busy.pricer.price(event).total_nanos
    assert batch.optimized_nanos == expected
    assert 0 < batch.savings_nanos < batch.current_nanos


def test_caching_and_lifecycle_and_realized(busy, clock):
    found = service.scan(busy, min_monthly_savings_usd="0", kinds=["caching"])
    (caching,) = found
    assert caching.savings_nanos > 0 and caching.scope["repeated_requests"] == 20
    with pytest.raises(Conflict):
        service.set_status(busy, caching.id, "implemented")
    service.set_status(busy, caching.id, "approved")
    done = service.set_status(busy, caching.id, "implemented")
    assert done.implemented_us is not None
    clock.now = clock.now + timedelta(days=3)
    realized = service.measure_realized(busy, caching.id).realized
    assert realized is not None and realized["before"]["requests"] == 40 and realized["after"]["requests"] == 0
    assert datetime.fromisoformat(realized["before"]["until"].replace("Z", "+00:00")).tzinfo == UTC

    summary = service.savings_summary(busy)
    assert summary["implemented_measured"] == 1
    assert summary["realized_monthly_usd"] == realized["realized_monthly_usd"]
    assert summary["by_status"]["implemented"]["count"] == 1
    assert [r["id"] for r in summary["implemented"]] == [caching.id]
    # a department-scoped caller sees only recommendations scoped to its departments
    assert service.savings_summary(busy, departments=["sales"])["implemented_measured"] == 0
