"""Matrices with Pareto frontiers, the pricing table with TCO, the provider-shift estimate (insights.matrix)."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from fleetledger.analytics import matrix
from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import format_usd, usd_to_nanos
from fleetledger.core.usage import parse_event
from fleetledger.pricing.overrides import add_override, load_overrides


def test_pareto_frontier_on_a_constructed_example():
    points = [
        ("cheap-weak", 1, 60),
        ("cheap-better", 1, 70),  # dominates cheap-weak (same cost, better)
        ("mid", 3, 80),
        ("mid-dominated", 4, 75),  # mid is cheaper and better
        ("pricey-best", 9, 95),
        ("pricey-same", 10, 95),  # as good as pricey-best but costs more
        ("twin", 3, 80),  # equal to mid on both axes: kept
    ]
    assert matrix.pareto_frontier(points) == ["cheap-better", "mid", "twin", "pricey-best"]
    # minimising y (latency): the lower the better
    latency = [("a", 1, 900), ("b", 2, 300), ("c", 3, 400), ("d", 5, 100)]
    assert matrix.pareto_frontier(latency, maximize_y=False) == ["a", "b", "d"]
    assert matrix.pareto_frontier([]) == []


def test_model_family():
    assert matrix.model_family("gpt-4o-mini") == "GPT-4o"
    assert matrix.model_family("claude-sonnet-4-5") == "Claude Sonnet"
    assert matrix.model_family("gemini-2.5-flash") == "Gemini"
    assert matrix.model_family("o4-mini") == "o-series"
    assert matrix.model_family("acme-internal") == "Custom"
    assert matrix.model_family("mistral-embed") == matrix.model_family("text-embedding-3-small") == "Embeddings"


def _price(ledger, provider, model, at, **tokens):
    return ledger.pricer.price(
        parse_event({"provider": provider, "model": model, "timestamp": at, **tokens})
    ).total_nanos


@pytest.fixture
def mixed(ledger, clock):
    # three models, 10 identical requests each, plus a GPU line item that is not a model
    for n in range(10):
        at = clock.now - timedelta(hours=n + 1)
        for provider, model in (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-opus-4-1")):
            ledger.record(provider=provider, model=model, input_tokens=1000, output_tokens=200, agent="a",
                          department="research", latency_ms=100.0 * (n + 1), timestamp=at)  # fmt: skip
    ledger.record(provider="aws", model="gpu-a100-hour", category="infrastructure", cost_usd="2.5",
                  timestamp=clock.now - timedelta(hours=1))  # fmt: skip
    return ledger


def test_model_matrix_is_exact_and_finds_the_frontier(mixed, clock):
    result = matrix.model_matrix(mixed, since="7d")
    rows = {r["model"]: r for r in result["models"]}
    assert set(rows) == {"gpt-4o", "gpt-4o-mini", "claude-opus-4-1"}  # the GPU line item is not a model
    for provider, model in (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-opus-4-1")):
        one = _price(mixed, provider, model, clock.now - timedelta(hours=1), input_tokens=1000, output_tokens=200)
        assert rows[model]["cost_per_request_usd"] == format_usd(one)
        assert rows[model]["cost_usd"] == format_usd(one * 10)
        assert rows[model]["cost_per_1k_tokens_usd"] == format_usd((one * 10 * 1000 + 6000) // 12_000)
        assert rows[model]["requests"] == 10
    assert rows["gpt-4o"]["quality"] == "84" and rows["claude-opus-4-1"]["quality"] == "92"
    assert rows["gpt-4o-mini"]["family"] == "GPT-4o"
    # mini is cheapest, opus the best: both on the frontier; gpt-4o (84) sits between them in cost
    # and quality, so it is on it too
    assert [f["model"] for f in result["frontier"]] == ["gpt-4o-mini", "gpt-4o", "claude-opus-4-1"]
    # editing the catalog moves gpt-4o below mini: it is now dominated
    matrix.set_model_quality(mixed, {"families": {"openai/gpt-4o": {"score": "70"}}})
    again = matrix.model_matrix(mixed, since="7d")
    assert [f["model"] for f in again["frontier"]] == ["gpt-4o-mini", "claude-opus-4-1"]
    assert {r["model"]: r["pareto"] for r in again["models"]}["gpt-4o"] is False
    # a null entry restores the built-in score
    matrix.set_model_quality(mixed, {"families": {"openai/gpt-4o": None}})
    assert {r["model"]: r["quality"] for r in matrix.model_matrix(mixed, since="7d")["models"]}["gpt-4o"] == "84"
    with pytest.raises(InvalidInput, match="x:"):
        matrix.model_matrix(mixed, x="bananas")


def test_quality_catalog_rejects_bad_input_and_keeps_the_rest(mixed):
    with pytest.raises(InvalidInput, match=r"families\['openai/gpt-4o'\]\.score"):
        matrix.set_model_quality(mixed, {"families": {"openai/gpt-4o": {"score": 130}}})
    with pytest.raises(InvalidInput, match="provider/family"):
        matrix.set_model_quality(mixed, {"families": {"gpt-4o": {"score": 80}}})
    with pytest.raises(InvalidInput, match="max_quality_drop"):
        matrix.set_model_quality(mixed, {"max_quality_drop": "lots"})
    assert mixed.store.get_meta("model_quality") is None  # nothing stored by the failed calls


def test_provider_matrix_quality_and_latency(mixed):
    by_latency = matrix.provider_matrix(mixed, since="7d")
    rows = {r["provider"]: r for r in by_latency["providers"]}
    assert set(rows) == {"openai", "anthropic"}
    # openai: request-weighted quality of gpt-4o (84) and mini (76) over 10 + 10 requests
    assert rows["openai"]["quality"] == "80.0" and rows["anthropic"]["quality"] == "92.0"
    assert rows["openai"]["reliability_pct"] == "100.00"
    assert Decimal(rows["openai"]["cost_per_request_usd"]) < Decimal(rows["anthropic"]["cost_per_request_usd"])
    # equal latency distributions: the cheaper provider dominates
    assert by_latency["frontier"] == ["openai"]
    by_quality = matrix.provider_matrix(mixed, since="7d", y="quality")
    assert by_quality["frontier"] == ["openai", "anthropic"]
    quadrants = {r["provider"]: r["quadrant"] for r in by_quality["providers"]}
    assert quadrants == {"openai": "budget", "anthropic": "premium"}


def test_tco_is_one_request_priced_by_the_engine_times_the_volume(ledger, clock):
    result = matrix.tco(ledger, provider="openai", model="gpt-4o", requests_per_month="250000",
                        input_tokens="3000", output_tokens="400", cache_hit_pct="33.3")  # fmt: skip
    cached = int((Decimal(3000) * Decimal("33.3") / 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    one = _price(ledger, "openai", "gpt-4o", clock.now, input_tokens=3000, output_tokens=400, cache_read_tokens=cached)
    assert result["profile"]["cache_read_tokens"] == 999
    assert result["per_request_usd"] == format_usd(one)
    assert result["monthly_usd"] == format_usd(one * 250_000)
    assert result["annual_usd"] == format_usd(one * 250_000 * 12)
    for bad, message in (({"cache_hit_pct": "120"}, "cache_hit_pct"), ({"input_tokens": "1.5"}, "input_tokens")):
        args = {"requests_per_month": 1, "input_tokens": 10, "output_tokens": 1, **bad}
        with pytest.raises(InvalidInput, match=message):
            matrix.tco(ledger, provider="openai", model="gpt-4o", **args)
    with pytest.raises(InvalidInput, match="no price"):
        matrix.tco(
            ledger, provider="openai", model="no-such-model", requests_per_month=1, input_tokens=1, output_tokens=1
        )


def test_a_profile_too_costly_to_print_is_a_clear_error_not_a_500(ledger):
    # each number within its bound (10^12), the product past what a decimal string of USD can hold:
    # this raised decimal.InvalidOperation
    huge = {"requests_per_month": 10**12, "input_tokens": 10**12, "output_tokens": 10**12}
    with pytest.raises(InvalidInput, match="past 10\\^18 USD a year"):
        matrix.tco(ledger, provider="openai", model="gpt-4o", **huge)
    with pytest.raises(InvalidInput, match="past 10\\^18 USD a year"):
        matrix.pricing_table(ledger, providers=["openai"], profile={**huge, "cache_hit_pct": 0}, limit=5)
    large = matrix.tco(
        ledger, provider="openai", model="gpt-4o", **{**huge, "input_tokens": 10**6, "output_tokens": 10**6}
    )
    assert Decimal(large["annual_usd"]) == Decimal(large["monthly_usd"]) * 12 > 10**13


def test_pricing_table_rates_overrides_and_best_value(ledger, clock):
    table = matrix.pricing_table(ledger, providers=["openai"], search="gpt-4o")
    rows = {r["model"]: r for r in table["models"]}
    gpt4o = rows["gpt-4o"]
    assert (gpt4o["input_per_1m_usd"], gpt4o["cached_input_per_1m_usd"], gpt4o["output_per_1m_usd"]) == (
        "2.500000000", "1.250000000", "10.000000000",
    )  # fmt: skip
    assert gpt4o["context_window"] and gpt4o["source"] == "catalog"
    day_ago = clock.now - timedelta(days=1)
    prices = {"input_mtok": "2", "output_mtok": "8"}
    add_override(
        ledger.store, model_pattern="gpt-4o", provider="openai", prices=prices, now=day_ago, effective_from=day_ago
    )
    ledger.pricer.set_overrides(load_overrides(ledger.store))
    overridden = {r["model"]: r for r in matrix.pricing_table(ledger, providers=["openai"], search="gpt-4o")["models"]}
    assert overridden["gpt-4o"]["input_per_1m_usd"] == "2.000000000" and overridden["gpt-4o"]["source"] == "override"
    profile = {"requests_per_month": "1000", "input_tokens": "2000", "output_tokens": "500", "cache_hit_pct": "0"}
    priced = matrix.pricing_table(ledger, providers=["openai"], search="gpt-4o", profile=profile)["models"]
    for row in priced:
        if row["tco_monthly_usd"] is not None:
            one = _price(ledger, "openai", row["model"], clock.now, input_tokens=2000, output_tokens=500)
            assert row["tco_monthly_usd"] == format_usd(one * 1000)
    embedding = matrix.pricing_table(ledger, providers=["openai"], search="text-embedding-3-small", profile=profile)
    assert [r["tco_monthly_usd"] for r in embedding["models"]] == [None]  # no output: cannot serve this profile
    best = [r for r in priced if r["best_value"]]
    assert len(best) == 1
    assert Decimal(best[0]["tco_monthly_usd"]) == min(
        Decimal(r["tco_monthly_usd"]) for r in priced if r["tco_monthly_usd"] and Decimal(r["tco_monthly_usd"]) > 0
    )


def test_provider_shift_reprices_the_real_token_mix(mixed, clock):
    at = clock.now
    result = matrix.provider_shift(mixed, to_provider="azure", share_pct="40", since="7d")
    groups = {g["model"]: g for g in result["groups"]}
    expected_saving = 0
    for model in ("gpt-4o", "gpt-4o-mini"):
        source = _price(mixed, "openai", model, at, input_tokens=1000, output_tokens=200)
        target = _price(mixed, "azure", model, at, input_tokens=1000, output_tokens=200)
        recorded = _price(mixed, "openai", model, at - timedelta(hours=1), input_tokens=1000, output_tokens=200) * 10
        now_part = int((Decimal(recorded) * 40 / 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        then_part = int((Decimal(recorded) * 40 / 100 * target / source).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        assert groups[model]["moved_current_usd"] == format_usd(now_part)
        assert groups[model]["moved_target_usd"] == format_usd(then_part)
        assert groups[model]["moved_requests"] == 4
        expected_saving += now_part - then_part
    opus = groups["claude-opus-4-1"]
    if "reason" not in opus:
        expected_saving += usd_to_nanos(opus["moved_current_usd"]) - usd_to_nanos(opus["moved_target_usd"])
    assert result["savings_usd"] == format_usd(expected_saving)
    nowhere = matrix.provider_shift(mixed, to_provider="mistral", share_pct="40", since="7d")
    assert nowhere["savings_usd"] == "0.000000000"  # mistral sells none of these: they stay, with the reason
    assert all(g["reason"].startswith("mistral has no price") for g in nowhere["groups"])
    total = Decimal(result["current_usd"])
    assert Decimal(result["projected_usd"]) == total - Decimal(result["savings_usd"])
    # moving everything to one named model
    to_mini = matrix.provider_shift(mixed, to_provider="openai", to_model="gpt-4o-mini", from_provider="anthropic")
    (opus,) = to_mini["groups"]
    assert opus["target_model"] == "gpt-4o-mini" and Decimal(to_mini["savings_usd"]) > 0
    # an embedding model is never "moved" onto a chat model: it stays, with the reason
    mixed.record(provider="openai", model="text-embedding-3-small", input_tokens=5000, category="embedding",
                 timestamp=clock.now - timedelta(hours=1))  # fmt: skip
    to_flash = matrix.provider_shift(mixed, to_provider="google", to_model="gemini-2.5-flash", from_provider="openai")
    embedding = next(g for g in to_flash["groups"] if g["model"] == "text-embedding-3-small")
    assert "moved_target_usd" not in embedding and "embedding model" in embedding["reason"]
    assert {g["model"] for g in to_flash["groups"] if "moved_target_usd" in g} == {"gpt-4o", "gpt-4o-mini"}
    with pytest.raises(InvalidInput, match="share_pct"):
        matrix.provider_shift(mixed, to_provider="azure", share_pct="150")
