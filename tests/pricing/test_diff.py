"""Price diffs between the genai-prices catalog, stored overrides and a LiteLLM import."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from genai_prices.types import Tier, TieredPrices

from fleetledger.pricing.diff import (
    CatalogSource,
    LiteLLMSource,
    OverrideSource,
    PriceDifference,
    diff_prices,
    differences_to_rows,
)
from fleetledger.pricing.engine import PriceOverride
from fleetledger.pricing.litellm import LiteLLMImport, import_litellm, load_litellm_prices
from fleetledger.pricing.overrides import load_overrides
from fleetledger.storage.store import Store

FIXTURE = Path(__file__).parent / "fixtures" / "litellm_prices.json"
AT = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)

#: The fixture's deliberate change (gpt-4o output $12 instead of $10), and the one real disagreement:
#: LiteLLM charges Claude Sonnet 4 a long-context rate above 200k input tokens; the catalog does not.
EXPECTED = {
    ("openai", "gpt-4o", "output_mtok", None): (Decimal("10"), Decimal("12"), Decimal("20.00")),
    ("anthropic", "claude-sonnet-4-20250514", "input_mtok", 200_000): (Decimal("3"), Decimal("6"), Decimal("100.00")),
    ("anthropic", "claude-sonnet-4-20250514", "cache_write_mtok", 200_000): (
        Decimal("3.75"),
        Decimal("7.5"),
        Decimal("100.00"),
    ),
    ("anthropic", "claude-sonnet-4-20250514", "cache_read_mtok", 200_000): (
        Decimal("0.3"),
        Decimal("0.6"),
        Decimal("100.00"),
    ),
    ("anthropic", "claude-sonnet-4-20250514", "output_mtok", 200_000): (
        Decimal("15"),
        Decimal("22.5"),
        Decimal("50.00"),
    ),
}


@pytest.fixture(scope="module")
def imported() -> LiteLLMImport:
    return load_litellm_prices(FIXTURE)


def keyed(diffs: list[PriceDifference]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        (d.provider, d.model, d.price_key, d.tier_start): (d.a_price, d.b_price, d.difference_percent) for d in diffs
    }


def override(
    id: int, model: str, prices: dict[str, Any], provider: str | None = "acme", match: str = "exact", **fields: Any
) -> PriceOverride:
    return PriceOverride(id=id, model_pattern=model, provider=provider, match=match, prices=prices, **fields)


def test_catalog_vs_litellm_finds_exactly_the_changed_prices(imported: LiteLLMImport) -> None:
    diffs = diff_prices(CatalogSource(), LiteLLMSource(imported), at=AT)
    assert keyed(diffs) == EXPECTED
    gpt4o = next(d for d in diffs if d.model == "gpt-4o")
    assert gpt4o == PriceDifference(
        "openai", "gpt-4o", "output_mtok", Decimal("10"), Decimal("12"), Decimal("20.00"), None, "gpt-4o", "gpt-4o"
    )
    assert gpt4o.status == "changed"
    percents = [abs(d.difference_percent) for d in diffs if d.difference_percent is not None]
    assert percents == sorted(percents, reverse=True)
    # Names are matched the way the pricer matches them: the dated name finds the catalog model.
    sonnet = next(d for d in diffs if d.model == "claude-sonnet-4-20250514")
    assert sonnet.a_model == "claude-sonnet-4-0" and sonnet.b_model == "claude-sonnet-4-20250514"


def test_matching_prices_and_tiers_are_not_reported(imported: LiteLLMImport) -> None:
    diffs = diff_prices(CatalogSource(), LiteLLMSource(imported), at=AT)
    reported = {d.model for d in diffs}
    # Same prices (flat, cached, tiered at 128k, prefixed names, other providers) give no rows.
    for model in (
        "gpt-4o-mini",
        "claude-3-5-sonnet-20241022",
        "gemini-1.5-pro",
        "gemini-2.5-flash",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "mistral-large-latest",
        "text-embedding-3-small",
    ):
        assert model not in reported
    # They were compared, not merely unmatched: none is listed as missing either.
    missing = diff_prices(CatalogSource(), LiteLLMSource(imported), at=AT, include_missing=True)
    only_b_models = {d.model for d in missing if d.status == "only_b"}
    assert only_b_models == {"acme-llama-70b-ft", "text-embedding-3-small", "gemini-2.5-flash"}
    only_b_keys = {(d.model, d.price_key) for d in missing if d.status == "only_b"}
    assert ("text-embedding-3-small", "output_mtok") in only_b_keys  # LiteLLM lists $0 output, the catalog none
    assert ("gemini-2.5-flash", "output_reasoning_mtok") in only_b_keys


def test_a_changed_price_on_a_dated_name_is_found_through_is_match(imported: LiteLLMImport) -> None:
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"), parse_float=Decimal)
    raw["claude-3-5-sonnet-20241022"]["input_cost_per_token"] = Decimal("3.3e-06")
    diffs = diff_prices(CatalogSource(), LiteLLMSource(load_litellm_prices(raw)), at=AT, providers={"anthropic"})
    changed = [d for d in diffs if d.model == "claude-3-5-sonnet-20241022"]
    assert changed == [
        PriceDifference(
            "anthropic",
            "claude-3-5-sonnet-20241022",
            "input_mtok",
            Decimal("3"),
            Decimal("3.3"),
            Decimal("10.00"),
            None,
            "claude-3-5-sonnet",
            "claude-3-5-sonnet-20241022",
        )
    ]


def test_tolerance_and_provider_filters(imported: LiteLLMImport) -> None:
    loose = diff_prices(CatalogSource(), LiteLLMSource(imported), at=AT, tolerance_percent=Decimal("20"))
    assert {d.model for d in loose} == {"claude-sonnet-4-20250514"}  # 20% is not more than 20%
    assert len(diff_prices(CatalogSource(), LiteLLMSource(imported), at=AT, tolerance_percent=Decimal("19.99"))) == 5
    openai_only = diff_prices(CatalogSource(), LiteLLMSource(imported), at=AT, providers={"openai"})
    assert [(d.model, d.price_key) for d in openai_only] == [("gpt-4o", "output_mtok")]


def test_reversed_sources_give_the_percent_from_the_other_side(imported: LiteLLMImport) -> None:
    diffs = diff_prices(LiteLLMSource(imported), CatalogSource(), at=AT, providers={"openai"})
    assert len(diffs) == 1
    assert (diffs[0].a_price, diffs[0].b_price, diffs[0].difference_percent) == (
        Decimal("12"),
        Decimal("10"),
        Decimal("-16.67"),
    )
    assert diffs[0].model == "gpt-4o"


def test_include_missing_lists_models_only_one_source_has(imported: LiteLLMImport) -> None:
    diffs = diff_prices(
        CatalogSource(), LiteLLMSource(imported), at=AT, providers={"openai", "vllm"}, include_missing=True
    )
    acme = [d for d in diffs if d.model == "acme-llama-70b-ft"]
    assert {(d.price_key, d.a_price, d.b_price) for d in acme} == {
        ("input_mtok", None, Decimal("0.6")),
        ("output_mtok", None, Decimal("1.2")),
        ("cache_read_mtok", None, Decimal("0.15")),
    }
    assert all(d.status == "only_b" and d.difference_percent is None for d in acme)
    web = next(d for d in diffs if d.model == "gpt-4o" and d.price_key == "web_searches_kcount")
    assert (web.a_price, web.b_price, web.status) == (Decimal("10"), None, "only_a")
    assert any(d.model == "o3" and d.status == "only_a" for d in diffs)  # catalog-only model
    assert diffs[0].model == "gpt-4o" and diffs[0].status == "changed"  # real changes sort first


def test_flat_and_tiered_prices_compare_tier_by_tier() -> None:
    a = OverrideSource([override(1, "m", {"input_mtok": Decimal("3"), "output_mtok": Decimal("15")})])
    b = OverrideSource(
        [
            override(
                2,
                "m",
                {
                    "input_mtok": TieredPrices(Decimal("3"), [Tier(200_000, Decimal("6"))]),
                    "output_mtok": TieredPrices(
                        Decimal("15"), [Tier(128_000, Decimal("15")), Tier(200_000, Decimal("20"))]
                    ),
                },
            )
        ]
    )
    assert keyed(diff_prices(a, b, at=AT)) == {
        ("acme", "m", "input_mtok", 200_000): (Decimal("3"), Decimal("6"), Decimal("100.00")),
        ("acme", "m", "output_mtok", 200_000): (Decimal("15"), Decimal("20"), Decimal("33.33")),
    }

    # Different thresholds: the rate in force above each threshold either side has.
    def long_context(start: int) -> TieredPrices:
        return TieredPrices(Decimal("1.25"), [Tier(start, Decimal("2.5"))])

    c = OverrideSource([override(3, "m", {"input_mtok": long_context(128_000)})])
    d = OverrideSource([override(4, "m", {"input_mtok": long_context(200_000)})])
    assert keyed(diff_prices(c, d, at=AT)) == {
        ("acme", "m", "input_mtok", 128_000): (Decimal("2.5"), Decimal("1.25"), Decimal("-50.00"))
    }


def test_a_change_from_zero_has_no_percent_and_sorts_first() -> None:
    a = OverrideSource([override(1, "m", {"input_mtok": Decimal("0"), "output_mtok": Decimal("1")})])
    b = OverrideSource([override(2, "m", {"input_mtok": Decimal("0.1"), "output_mtok": Decimal("3")})])
    diffs = diff_prices(a, b, at=AT, tolerance_percent=Decimal("1000"))
    assert [(d.price_key, d.difference_percent) for d in diffs] == [("input_mtok", None)]
    both = diff_prices(a, b, at=AT)
    assert [(d.price_key, d.difference_percent) for d in both] == [
        ("input_mtok", None),
        ("output_mtok", Decimal("200.00")),
    ]


def test_overrides_by_glob_any_provider_and_effective_dates(imported: LiteLLMImport) -> None:
    overrides = OverrideSource(
        [
            override(1, "acme-*", {"input_mtok": Decimal("0.5")}, provider="vllm", match="glob"),
            override(2, "gpt-4o", {"output_mtok": Decimal("12")}, provider=None),
            override(
                3,
                "gpt-4o-mini",
                {"output_mtok": Decimal("1")},
                provider="openai",
                effective_to=datetime(2026, 1, 1, tzinfo=UTC),
            ),  # expired: not compared
            override(4, "gpt-4o-mini", {"output_mtok": Decimal("2")}, provider="openai", service_tier="batch"),
        ]
    )
    diffs = diff_prices(overrides, LiteLLMSource(imported), at=AT)
    assert keyed(diffs) == {("vllm", "acme-*", "input_mtok", None): (Decimal("0.5"), Decimal("0.6"), Decimal("20.00"))}
    assert diffs[0].b_model == "acme-llama-70b-ft"
    catalog = diff_prices(CatalogSource(), overrides, at=AT)
    assert keyed(catalog) == {
        ("openai", "gpt-4o", "output_mtok", None): (Decimal("10"), Decimal("12"), Decimal("20.00"))
    }


def test_rows_are_exact_decimal_strings(imported: LiteLLMImport) -> None:
    rows = differences_to_rows(diff_prices(CatalogSource(), LiteLLMSource(imported), at=AT))
    gpt4o = next(r for r in rows if r["model"] == "gpt-4o")
    assert gpt4o == {
        "provider": "openai",
        "model": "gpt-4o",
        "price_key": "output_mtok",
        "tier_start": None,
        "a_price": "10",
        "b_price": "12",
        "difference_percent": "20.00",
        "status": "changed",
        "a_model": "gpt-4o",
        "b_model": "gpt-4o",
    }
    json.dumps(rows)  # JSON-ready as they are
    for row in rows:
        for name in ("a_price", "b_price", "difference_percent"):
            assert isinstance(row[name], str) and "e" not in row[name].lower()  # no floats, no exponents


def test_stored_overrides_round_trip_exactly(db_url: str, clock, imported: LiteLLMImport) -> None:
    store = Store(db_url)
    try:
        import_litellm(store, imported, only_missing=False, now=clock())
        stored = OverrideSource(load_overrides(store))
        # Through the database and back, every price (tiers included) is still exactly LiteLLM's.
        assert diff_prices(stored, LiteLLMSource(imported), at=AT, include_missing=True) == []
        assert keyed(diff_prices(CatalogSource(), stored, at=AT)) == EXPECTED
    finally:
        store.dispose()
