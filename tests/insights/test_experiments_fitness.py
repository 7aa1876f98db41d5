"""Cost experiments (Welch's interval, sample size, verdicts) and agent fitness bounds."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from fleetledger.analytics import experiments, fitness
from fleetledger.core.errors import Conflict, NotFound


def test_welch_detects_a_known_difference_and_not_a_missing_one():
    rng = random.Random(7)
    control = [rng.gauss(10.0, 1.0) for _ in range(200)]
    cheaper = [rng.gauss(8.0, 1.0) for _ in range(200)]
    same = [rng.gauss(10.0, 1.0) for _ in range(200)]
    found = experiments.welch(control, cheaper)
    assert found is not None and found.high < 0 and found.low < -2.0 < found.high
    assert found.p_value < 1e-6
    nothing = experiments.welch(control, same)
    assert nothing is not None and nothing.low < 0 < nothing.high
    assert experiments.welch([1.0], [2.0, 3.0]) is None


def test_own_t_quantile_matches_the_tables():
    # Student's t table: t(0.975, 1) = 12.706, t(0.975, 10) = 2.228, t(0.95, 30) = 1.697.
    for p, df, expected in ((0.975, 1, 12.706), (0.975, 10, 2.228), (0.95, 30, 1.697), (0.025, 10, -2.228)):
        assert experiments._t_quantile_own(p, df) == pytest.approx(expected, abs=5e-4)
        assert experiments.t_quantile(p, df) == pytest.approx(expected, abs=5e-4)


def test_required_sample_size_is_the_textbook_one():
    # (1.96 + 0.8416)^2 x (1 + 1) / 0.5^2 = 62.8 -> 63 per arm.
    assert experiments.required_sample_size(1.0, 1.0, 0.5) == 63
    assert experiments.required_sample_size(1.0, 1.0, 0.0) is None


def _run_arms(ledger, clock, name, control_mean, treatment_mean, n=40, seed=3):
    rng = random.Random(seed)
    for i in range(n):
        for arm, mean in (("control", control_mean), ("treatment", treatment_mean)):
            cost = max(0.0001, rng.gauss(mean, mean / 10))
            ledger.record(
                provider="openai", model="line", category="other", cost_usd=f"{cost:.6f}", latency_ms=100 + i,
                tags={"experiment": name, "arm": arm, "quality": "0.9" if arm == "control" else "0.85"},
                timestamp=clock.now - timedelta(hours=1, seconds=i),
            )  # fmt: skip


def test_analyze_finds_a_cheaper_treatment(ledger, clock):
    experiments.create(ledger, "exp-cheap", control="gpt-4o", treatment="gpt-4o-mini", hypothesis="-30% cost")
    _run_arms(ledger, clock, "exp-cheap", 0.010, 0.007)
    result = experiments.analyze(ledger, "exp-cheap", since="7d")
    assert result["verdict"] == "treatment_cheaper"
    assert result["arms"]["control"]["requests"] == 40 and result["arms"]["treatment"]["quality"] == 0.85
    assert result["definition"]["control"] == "gpt-4o"
    assert result["quality_difference"]["mean"] == pytest.approx(-0.05)
    assert float(result["difference"]["ci_high_usd"]) < 0


def test_analyze_without_a_difference_is_inconclusive(ledger, clock):
    _run_arms(ledger, clock, "exp-same", 0.010, 0.010, n=15)
    result = experiments.analyze(ledger, "exp-same", since="7d")
    assert result["verdict"] == "inconclusive"
    assert result["needed_per_arm"] is None or result["more_needed_per_arm"] >= 0
    with pytest.raises(NotFound):
        experiments.analyze(ledger, "exp-unknown", since="7d")


def test_definitions_are_kept_in_meta(ledger):
    experiments.create(ledger, "exp-a", control="v1", treatment="v2")
    with pytest.raises(Conflict):
        experiments.create(ledger, "exp-a", control="v1", treatment="v2")
    assert [e["name"] for e in experiments.list_experiments(ledger)] == ["exp-a"]
    assert experiments.analyze(ledger, "exp-a")["verdict"] == "insufficient_data"


def test_fitness_is_between_zero_and_one_and_ranks_the_better_agent_first(ledger, clock):
    at = clock.now - timedelta(hours=2)
    for i in range(10):
        ledger.record(provider="x", model="m", category="other", cost_usd="0.01", agent="lean", latency_ms=100,
                      timestamp=at)  # fmt: skip
        ledger.record(provider="x", model="m", category="other", cost_usd="0.05", agent="costly", latency_ms=400,
                      status="error" if i < 5 else "success", timestamp=at)  # fmt: skip
        ledger.record(provider="x", model="m", category="other", cost_usd="0.02", agent="judged",
                      tags={"quality": "0.5"}, timestamp=at)  # fmt: skip
        ledger.record(provider="x", model="m", category="other", cost_usd="0.03", agent="broken", latency_ms=50,
                      status="error", timestamp=at)  # fmt: skip
    ledger.record(provider="aws", model="gpu", category="infrastructure", cost_usd="9", agent="infra", timestamp=at)
    rows = fitness.agent_fitness(ledger, since="1d")
    by_agent = {r["agent"]: r for r in rows}
    assert set(by_agent) == {"lean", "costly", "judged", "broken"}
    for row in rows:
        for name in ("fitness", "effectiveness", "cost_efficiency"):
            assert 0.0 <= row[name] <= 1.0
        assert row["efficiency"] is None or 0.0 <= row["efficiency"] <= 1.0
    assert rows[0]["agent"] == "lean" and by_agent["lean"]["cost_efficiency"] == 1.0
    assert by_agent["judged"]["effectiveness_source"] == "quality" and by_agent["judged"]["effectiveness"] == 0.5
    assert by_agent["broken"]["cost_efficiency"] == 0.0 and by_agent["broken"]["effectiveness"] == 0.0
    # costly: effectiveness 0.5; latency: fastest (broken, 50 ms) / 400 ms; cost per effective
    # request 0.10 against lean's 0.01.
    assert by_agent["costly"]["fitness"] == pytest.approx(0.4 * 0.5 + 0.3 * 0.125 + 0.3 * 0.1, abs=1e-4)
    only_cost = fitness.agent_fitness(ledger, since="1d", weights=(0, 0, 1))
    assert {r["agent"]: r["fitness"] for r in only_cost}["lean"] == 1.0
