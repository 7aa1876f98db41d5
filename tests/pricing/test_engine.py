"""Pricing agrees with genai-prices to the nano-dollar, itemises, and handles overrides and gaps."""

from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest

from fleetledger.core.usage import parse_event
from fleetledger.pricing import PriceOverride, Pricer, parse_unit_prices

AT = datetime(2026, 10, 1, tzinfo=UTC)


def event(provider, model, **fields):
    return parse_event({"timestamp": AT, "provider": provider, "model": model, **fields})


def genai_total(provider, model, *, reasoning_tokens=0, cache_write_1h_tokens=0, **usage):
    if reasoning_tokens:
        usage["output_reasoning_tokens"] = reasoning_tokens
    if usage.get("cache_write_tokens"):
        usage["cache_write_1h_tokens"] = cache_write_1h_tokens
        usage["cache_write_5m_tokens"] = usage["cache_write_tokens"] - cache_write_1h_tokens
    return genai_prices.calc_price(
        genai_prices.Usage(**usage), model, provider_id=provider, genai_request_timestamp=AT
    ).total_price


@pytest.mark.parametrize(
    ("provider", "model", "usage"),
    [
        ("openai", "gpt-4o", {"input_tokens": 12_345, "cache_read_tokens": 2_000, "output_tokens": 777}),
        ("openai", "gpt-5", {"input_tokens": 5_000, "output_tokens": 1_000, "reasoning_tokens": 600}),
        (
            "anthropic",
            "claude-sonnet-4-5",
            {
                "input_tokens": 9_000,
                "cache_read_tokens": 4_000,
                "cache_write_tokens": 3_000,
                "cache_write_1h_tokens": 1_000,
                "output_tokens": 500,
            },
        ),
        ("anthropic", "claude-opus-4-1", {"input_tokens": 1, "output_tokens": 1}),
        ("google", "gemini-2.5-pro", {"input_tokens": 300_000, "cache_read_tokens": 10_000, "output_tokens": 5_000}),
        ("google", "gemini-2.5-flash", {"input_tokens": 1_000, "output_tokens": 3_000, "reasoning_tokens": 2_500}),
        ("mistral", "mistral-large-latest", {"input_tokens": 7, "output_tokens": 3}),
        ("openai", "text-embedding-3-small", {"input_tokens": 81_920}),
    ],
)
def test_matches_genai_prices_exactly(provider, model, usage):
    cost = Pricer().price(event(provider, model, **usage))
    expected = genai_total(provider, model, **usage)
    assert cost.priced and cost.source == "genai-prices"
    assert abs(cost.total_usd - expected) <= Decimal("0.0000000005") * len(cost.components)
    assert sum(cost.components.values()) == cost.total_nanos == sum(cost.buckets)


def test_long_context_tier_boundary_is_exclusive():
    pricer = Pricer()
    at_threshold = pricer.price(event("anthropic", "claude-sonnet-4-5", input_tokens=200_000, output_tokens=1_000))
    above = pricer.price(event("anthropic", "claude-sonnet-4-5", input_tokens=200_001, output_tokens=1_000))
    # $3/$15 per MTok up to 200K input tokens; the whole request at $6/$22.50 once input passes it.
    assert at_threshold.components == {"input_mtok": 600_000_000, "output_mtok": 15_000_000}
    assert above.components == {"input_mtok": 1_200_006_000, "output_mtok": 22_500_000}


def test_cache_decomposition_anthropic():
    cost = Pricer().price(
        event(
            "anthropic",
            "claude-sonnet-4-5",
            input_tokens=10_000,
            cache_read_tokens=6_000,
            cache_write_tokens=2_000,
            cache_write_1h_tokens=500,
            output_tokens=0,
        )
    )
    # 2,000 uncached x $3, 6,000 reads x $0.30, 1,500 5m writes x $3.75, 500 1h writes x $6 (per MTok)
    assert cost.components == {
        "input_mtok": 6_000_000,
        "cache_read_mtok": 1_800_000,
        "cache_write_mtok": 5_625_000,
        "cache_write_1h_mtok": 3_000_000,
    }
    assert cost.buckets == (6_000_000, 1_800_000, 8_625_000, 0, 0)


def test_unknown_model_is_unpriced_not_dropped_and_says_why():
    cost = Pricer().price(event("vllm", "acme-llama-70b-ft", input_tokens=100, output_tokens=10))
    assert not cost.priced and cost.total_nanos == 0 and cost.source == "unpriced"
    assert "fleetledger pricing set" in cost.reason


def test_price_override_for_self_hosted_model_and_effective_window():
    override = PriceOverride(
        id=1,
        provider="vllm",
        model_pattern="acme-*",
        match="glob",
        prices=parse_unit_prices({"input_mtok": "0.4", "output_mtok": "0.8"}),
        effective_from=datetime(2026, 9, 1, tzinfo=UTC),
        effective_to=datetime(2026, 11, 1, tzinfo=UTC),
    )
    pricer = Pricer([override])
    inside = pricer.price(event("vllm", "acme-llama-70b-ft", input_tokens=1_000_000, output_tokens=1_000_000))
    assert inside.total_nanos == 1_200_000_000 and inside.source == "override" and inside.version == "override #1"
    outside = pricer.price(
        parse_event(
            {"timestamp": "2026-11-02T00:00:00Z", "provider": "vllm", "model": "acme-llama-70b-ft", "input_tokens": 1}
        )
    )
    assert not outside.priced


def test_discount_and_batch_multiplier_where_catalog_lacks_the_tier():
    discount = PriceOverride(
        id=2, provider="anthropic", model_pattern="claude-opus-4-1", discount_percent=Decimal("12.5")
    )
    batch = PriceOverride(
        id=3, provider="anthropic", model_pattern="*", match="glob", service_tier="batch", multiplier=Decimal("0.5")
    )
    pricer = Pricer([discount, batch])
    standard = pricer.price(event("anthropic", "claude-opus-4-1", input_tokens=1_000_000))
    assert standard.total_nanos == 13_125_000_000  # $15 - 12.5%
    batched = pricer.price(event("anthropic", "claude-opus-4-1", input_tokens=1_000_000, service_tier="batch"))
    assert batched.total_nanos == 6_562_500_000
    # gpt-4o has a batch price in the catalog: the multiplier must not apply on top of it
    gpt = Pricer(
        [PriceOverride(id=4, model_pattern="*", match="glob", service_tier="batch", multiplier=Decimal("0.5"))]
    )
    assert (
        gpt.price(event("openai", "gpt-4o", input_tokens=1_000_000, service_tier="batch")).total_nanos == 1_250_000_000
    )


def test_historic_price_by_request_time():
    # gpt-4o's catalog price changed over time; pricing follows the event's timestamp, not today.
    pricer = Pricer()
    old = pricer.price(
        parse_event(
            {"timestamp": "2024-06-01T00:00:00Z", "provider": "openai", "model": "gpt-4o", "input_tokens": 1_000_000}
        )
    )
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1_000_000),
        "gpt-4o",
        provider_id="openai",
        genai_request_timestamp=datetime(2024, 6, 1, tzinfo=UTC),
    ).total_price
    assert old.total_usd == expected


def test_line_item_is_charged_as_reported():
    cost = Pricer().price(
        parse_event(
            {
                "timestamp": AT,
                "provider": "aws",
                "model": "gpu-a100-hour",
                "category": "infrastructure",
                "cost_usd": "3.210000001",
            }
        )
    )
    assert cost.total_nanos == 3_210_000_001 and cost.source == "line-item"


def test_bad_unit_prices_are_refused():
    from fleetledger.core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="prices.input_mtokk: unknown price key"):
        parse_unit_prices({"input_mtokk": "1"})
    with pytest.raises(InvalidInput, match="non-negative"):
        parse_unit_prices({"input_mtok": "-1"})
