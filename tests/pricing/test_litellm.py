"""LiteLLM price-map import and our own price lists: exact conversion, tiers, store round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from genai_prices.types import Tier, TieredPrices

from fleetledger.core.errors import InvalidInput
from fleetledger.core.usage import UsageEvent
from fleetledger.pricing.engine import Pricer
from fleetledger.pricing.litellm import (
    IMPORT_NOTE,
    LiteLLMImport,
    LiteLLMPrice,
    import_litellm,
    import_price_list,
    litellm_provider_id,
    load_litellm_prices,
    load_price_list,
)
from fleetledger.pricing.overrides import add_override, load_overrides
from fleetledger.storage.store import Store

FIXTURE = Path(__file__).parent / "fixtures" / "litellm_prices.json"
AT = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def imported() -> LiteLLMImport:
    return load_litellm_prices(FIXTURE)


@pytest.fixture
def store(db_url: str):
    instance = Store(db_url)
    yield instance
    instance.dispose()


def by_model(result: LiteLLMImport) -> dict[tuple[str, str], LiteLLMPrice]:
    return {(p.provider, p.model): p for p in result.prices}


def event(provider: str, model: str, *, input_tokens: int = 0, output_tokens: int = 0, **fields: Any) -> UsageEvent:
    return UsageEvent(
        timestamp=AT, provider=provider, model=model, input_tokens=input_tokens, output_tokens=output_tokens, **fields
    )


def edited_fixture(**changes: Any) -> dict[str, Any]:
    """The fixture as parsed (exact Decimals), with some entries replaced or, given None, removed."""
    data = json.loads(FIXTURE.read_text(encoding="utf-8"), parse_float=Decimal)
    for key, entry in changes.items():
        if entry is None:
            data.pop(key)
        else:
            data[key] = entry
    return data


# -- reading ---------------------------------------------------------------------------------------


def test_per_token_prices_become_exact_per_million_prices(imported: LiteLLMImport) -> None:
    gpt4o = by_model(imported)[("openai", "gpt-4o")]
    assert gpt4o.prices == {
        "input_mtok": Decimal("2.5"),
        "output_mtok": Decimal("12"),
        "cache_read_mtok": Decimal("1.25"),
    }
    # Exact and plain: no float artefact (2.4999999999999996) and no exponent (1.2E+1).
    assert [str(gpt4o.prices[k]) for k in ("input_mtok", "output_mtok", "cache_read_mtok")] == ["2.5", "12", "1.25"]
    assert Decimal(2.5e-06) * 1_000_000 != Decimal("2.5")  # what going through a float would have stored
    mini = by_model(imported)[("openai", "gpt-4o-mini")]
    assert str(mini.prices["cache_read_mtok"]) == "0.075"
    assert str(by_model(imported)[("openai", "text-embedding-3-small")].prices["input_mtok"]) == "0.02"


def test_every_imported_price_equals_the_file_times_a_million(imported: LiteLLMImport) -> None:
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"), parse_float=Decimal)
    for price in imported.prices:
        entry = raw[price.key]
        expected = entry["input_cost_per_token"] * 1_000_000
        got = price.prices["input_mtok"]
        base = got.base if isinstance(got, TieredPrices) else got
        assert base == expected, price.key
        assert "E" not in str(base) and "e" not in str(base)


def test_long_context_prices_become_genai_prices_tiers(imported: LiteLLMImport) -> None:
    sonnet4 = by_model(imported)[("anthropic", "claude-sonnet-4-20250514")].prices
    assert sonnet4["input_mtok"] == TieredPrices(base=Decimal("3"), tiers=[Tier(start=200_000, price=Decimal("6"))])
    assert sonnet4["output_mtok"] == TieredPrices(Decimal("15"), [Tier(start=200_000, price=Decimal("22.5"))])
    assert sonnet4["cache_write_mtok"] == TieredPrices(Decimal("3.75"), [Tier(200_000, Decimal("7.5"))])
    assert sonnet4["cache_read_mtok"] == TieredPrices(Decimal("0.3"), [Tier(200_000, Decimal("0.6"))])
    assert sonnet4["cache_write_1h_mtok"] == Decimal("6")
    assert sonnet4["web_searches_kcount"] == Decimal("10")  # $0.01 per search -> $10 per thousand
    gemini = by_model(imported)[("google", "gemini-1.5-pro")]
    assert gemini.prices == {
        "input_mtok": TieredPrices(Decimal("1.25"), [Tier(128_000, Decimal("2.5"))]),
        "output_mtok": TieredPrices(Decimal("5"), [Tier(128_000, Decimal("10"))]),
    }
    # Per-character, per-image and per-second prices are another billing basis: listed, not imported.
    assert "input_cost_per_character" in gemini.unmapped
    assert "input_cost_per_image_above_128k_tokens" in gemini.unmapped


def test_reasoning_audio_and_batch_prices(imported: LiteLLMImport) -> None:
    flash = by_model(imported)[("google", "gemini-2.5-flash")]
    assert flash.prices["output_reasoning_mtok"] == Decimal("2.5")
    assert flash.prices["input_audio_mtok"] == Decimal("1")
    assert flash.batch_prices is None
    gpt4o = by_model(imported)[("openai", "gpt-4o")]
    # The full batch price set: the standard prices with LiteLLM's batch input/output in place.
    assert gpt4o.batch_prices == {
        "input_mtok": Decimal("1.25"),
        "output_mtok": Decimal("5"),
        "cache_read_mtok": Decimal("1.25"),
    }
    assert gpt4o.mode == "chat"
    assert set(gpt4o.unmapped) == {"input_cost_per_token_priority", "output_cost_per_token_priority"}
    embedding = by_model(imported)[("openai", "text-embedding-3-small")]
    assert embedding.mode == "embedding"
    assert embedding.batch_prices == {"input_mtok": Decimal("0.01"), "output_mtok": Decimal("0")}


def test_providers_are_mapped_and_prefixes_stripped(imported: LiteLLMImport) -> None:
    names = {p.key: (p.provider, p.model) for p in imported.prices}
    assert names["bedrock/anthropic.claude-3-haiku-20240307-v1:0"] == ("aws", "anthropic.claude-3-haiku-20240307-v1:0")
    assert names["azure/gpt-4o-mini"] == ("azure", "gpt-4o-mini")
    assert names["mistral/mistral-large-latest"] == ("mistral", "mistral-large-latest")
    assert names["gemini-1.5-pro"] == ("google", "gemini-1.5-pro")
    assert names["hosted_vllm/acme-llama-70b-ft"] == ("vllm", "acme-llama-70b-ft")
    assert "sample_spec" not in names


@pytest.mark.parametrize(
    ("litellm", "ours"),
    [
        ("openai", "openai"),
        ("anthropic", "anthropic"),
        ("vertex_ai-language-models", "google"),
        ("vertex_ai-anthropic_models", "google"),
        ("gemini", "google"),
        ("bedrock", "aws"),
        ("bedrock_converse", "aws"),
        ("azure", "azure"),
        ("azure_ai", "azure"),
        ("mistral", "mistral"),
        ("deepseek", "deepseek"),
        ("groq", "groq"),
        ("together_ai", "together"),
        ("fireworks_ai", "fireworks"),
        ("fireworks_ai-embedding-models", "fireworks"),
        ("cohere_chat", "cohere"),
        ("xai", "x-ai"),
        ("perplexity", "perplexity"),
        ("openrouter", "openrouter"),
        ("hosted_vllm", "vllm"),
        ("Nscale", "nscale"),
    ],
)
def test_litellm_provider_ids(litellm: str, ours: str) -> None:
    assert litellm_provider_id(litellm) == ours


def test_skipped_and_rejected_entries_are_reported(imported: LiteLLMImport) -> None:
    skipped = dict(imported.skipped)
    assert set(skipped) == {"dall-e-3", "whisper-1", "ollama/llama3.1", "gemini/gemini-1.5-pro"}
    assert "no token prices" in skipped["dall-e-3"] and "output_cost_per_image" in skipped["dall-e-3"]
    assert "input_cost_per_second" in skipped["whisper-1"]
    assert "all prices are 0" in skipped["ollama/llama3.1"]
    assert skipped["gemini/gemini-1.5-pro"].startswith("duplicate of gemini-1.5-pro")
    rejected = dict(imported.rejected)
    assert set(rejected) == {"broken-model-negative", "broken-model-text", "broken-model-not-an-object"}
    assert "negative" in rejected["broken-model-negative"]
    assert "'cheap' is not a number" in rejected["broken-model-text"]
    assert "expected a JSON object" in rejected["broken-model-not-an-object"]
    assert len(imported.prices) == 11


def test_text_bytes_and_path_inputs_agree(imported: LiteLLMImport) -> None:
    text = FIXTURE.read_text(encoding="utf-8")
    assert load_litellm_prices(text).prices == imported.prices
    assert load_litellm_prices(text.encode()).prices == imported.prices
    assert load_litellm_prices(str(FIXTURE)).prices == imported.prices


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ('{"litellm_provider": "openai", "input_cost_per_token": NaN}', "not a finite number"),
        ('{"litellm_provider": "openai", "input_cost_per_token": true}', "not a number"),
        (
            '{"litellm_provider": "openai", "output_cost_per_token": 1e-06, "input_cost_per_token_above_200k_tokens": 2e-06}',  # noqa: E501
            "without the base price",
        ),
        ('{"input_cost_per_token": 1e-06}', "litellm_provider: missing"),
        ('{"litellm_provider": 7, "input_cost_per_token": 1e-06}', "not a provider name"),
    ],
)
def test_malformed_entries_are_rejected_not_fatal(entry: str, reason: str) -> None:
    good = '{"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}'
    result = load_litellm_prices(f'{{"bad": {entry}, "good-model": {good}}}')
    assert [p.model for p in result.prices] == ["good-model"]
    assert len(result.rejected) == 1 and result.rejected[0][0] == "bad"
    assert reason in result.rejected[0][1]


def test_numeric_strings_are_accepted_exactly() -> None:
    result = load_litellm_prices(
        '{"m": {"litellm_provider": "acme", "input_cost_per_token": "3.3e-07", "output_cost_per_token": 0.0000013}}'
    )
    assert result.prices[0].prices == {"input_mtok": Decimal("0.33"), "output_mtok": Decimal("1.3")}
    assert result.prices[0].provider == "acme"


def test_unreadable_files_raise_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        load_litellm_prices('{"gpt-4o": ')
    with pytest.raises(InvalidInput, match="expected a JSON object"):
        load_litellm_prices("[1, 2]")
    with pytest.raises(InvalidInput, match="cannot read"):
        load_litellm_prices(str(tmp_path / "missing.json"))


# -- importing into the store ----------------------------------------------------------------------


def test_only_missing_keeps_catalog_models_on_the_catalog(store: Store, clock, imported: LiteLLMImport) -> None:
    counts = import_litellm(store, imported, now=clock())
    assert counts == {
        "imported": 1,
        "already_in_catalog": 10,
        "unchanged": 0,
        "kept_existing": 0,
        "skipped": 4,
        "rejected": 3,
        "overrides_written": 2,
    }
    overrides = load_overrides(store)
    assert {(o.provider, o.model_pattern, o.service_tier) for o in overrides} == {
        ("vllm", "acme-llama-70b-ft", None),
        ("vllm", "acme-llama-70b-ft", "batch"),
    }
    assert all(o.note == IMPORT_NOTE and o.match == "exact" for o in overrides)

    pricer = Pricer(overrides)
    gpt4o = pricer.price(event("openai", "gpt-4o", input_tokens=1_000_000, output_tokens=1_000_000))
    assert gpt4o.source == "genai-prices"
    assert gpt4o.components["output_mtok"] == 10_000_000_000  # the catalog's $10, not LiteLLM's $12

    acme = pricer.price(event("vllm", "acme-llama-70b-ft", input_tokens=1_000_000, output_tokens=1_000_000))
    assert acme.priced and acme.source == "override"
    assert acme.total_nanos == 1_800_000_000  # $0.60 + $1.20
    batch = pricer.price(
        event("vllm", "acme-llama-70b-ft", input_tokens=1_000_000, output_tokens=1_000_000, service_tier="batch")
    )
    assert batch.source == "override" and batch.total_nanos == 900_000_000
    cached = pricer.price(event("vllm", "acme-llama-70b-ft", input_tokens=1_000_000, cache_read_tokens=400_000))
    assert cached.components == {"input_mtok": 360_000_000, "cache_read_mtok": 60_000_000}


def test_imported_tiers_charge_the_tier_rate_above_the_threshold(store: Store, clock, imported: LiteLLMImport) -> None:
    counts = import_litellm(store, imported, only_missing=False, now=clock(), created_by="finance")
    assert counts["imported"] == 11 and counts["already_in_catalog"] == 0
    pricer = Pricer(load_overrides(store))
    at_threshold = pricer.price(
        event("anthropic", "claude-sonnet-4-20250514", input_tokens=200_000, output_tokens=1_000)
    )
    above = pricer.price(event("anthropic", "claude-sonnet-4-20250514", input_tokens=200_001, output_tokens=1_000))
    assert at_threshold.source == above.source == "override"
    assert at_threshold.components == {"input_mtok": 600_000_000, "output_mtok": 15_000_000}  # $3 and $15
    assert above.components == {"input_mtok": 1_200_006_000, "output_mtok": 22_500_000}  # $6 and $22.50
    # With only_missing=False LiteLLM's price wins over the catalog's.
    gpt4o = pricer.price(event("openai", "gpt-4o", output_tokens=1_000_000))
    assert gpt4o.source == "override" and gpt4o.total_nanos == 12_000_000_000


def test_reimporting_the_same_file_writes_nothing(store: Store, clock, imported: LiteLLMImport) -> None:
    first = import_litellm(store, imported, only_missing=False, now=clock())
    stored = load_overrides(store)
    second = import_litellm(store, load_litellm_prices(FIXTURE), only_missing=False, now=clock())
    assert first["overrides_written"] == len(stored) == 15  # 11 models, 4 with batch prices
    assert second["imported"] == 0 and second["overrides_written"] == 0
    assert second["unchanged"] == 11
    assert load_overrides(store) == stored


def test_a_changed_price_supersedes_the_previous_import(store: Store, clock, imported: LiteLLMImport) -> None:
    import_litellm(store, imported, now=clock())
    changed = edited_fixture(
        **{
            "hosted_vllm/acme-llama-70b-ft": {
                "litellm_provider": "hosted_vllm",
                "mode": "chat",
                "input_cost_per_token": Decimal("7e-07"),
                "output_cost_per_token": Decimal("1.4e-06"),
                "input_cost_per_token_batches": Decimal("3e-07"),
                "output_cost_per_token_batches": Decimal("6e-07"),
            }
        }
    )
    counts = import_litellm(store, load_litellm_prices(changed), now=clock())
    assert counts["imported"] == 1
    # The standard override changed; the batch one is rewritten too so it stays the newer rule.
    assert counts["overrides_written"] == 2
    pricer = Pricer(load_overrides(store))
    standard = pricer.price(event("vllm", "acme-llama-70b-ft", input_tokens=1_000_000, output_tokens=1_000_000))
    assert standard.total_nanos == 2_100_000_000
    batch = pricer.price(
        event("vllm", "acme-llama-70b-ft", input_tokens=1_000_000, output_tokens=1_000_000, service_tier="batch")
    )
    assert batch.total_nanos == 900_000_000


def test_a_price_a_person_set_is_never_replaced(store: Store, clock, imported: LiteLLMImport) -> None:
    add_override(
        store,
        provider="vllm",
        model_pattern="acme-*",
        prices={"input_mtok": "0.5", "output_mtok": "1"},
        note="our GPU cost",
        now=clock(),
    )
    counts = import_litellm(store, imported, now=clock())
    assert counts["kept_existing"] == 1 and counts["overrides_written"] == 0
    cost = Pricer(load_overrides(store)).price(event("vllm", "acme-llama-70b-ft", input_tokens=1_000_000))
    assert cost.total_nanos == 500_000_000


# -- price lists -----------------------------------------------------------------------------------


CSV_LIST = """\
provider,model,input_mtok,output_mtok,cache_read_mtok,service_tier,effective_from,effective_to,discount_percent,note
anthropic,claude-sonnet-4-20250514,2.7,13.5,0.27,,2026-01-01,,,negotiated 10% off list
openai,gpt-4o*,,,,,,,15,enterprise agreement
vllm,acme-llama-70b-ft,0.55,1.10,,batch,2026-01-01T00:00:00Z,2027-01-01T00:00:00+00:00,,
openai,gpt-4o-mini,abc,1,,,,,,
,,1,2,,,,,,
openai,gpt-4o-mini,0.1,0.4,,,,,10,
openai,gpt-4o-mini,0.1,0.4,,weekly,,,,
openai,gpt-4o-mini,0.1,0.4,,,2026-02-01,2026-01-01,,
openai,gpt-4o-mini,0.1,0.4,,,2026-02-01T10:00:00,,,
"""


def test_csv_price_list_rows_and_rejections(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(CSV_LIST, encoding="utf-8")
    result = load_price_list(path)
    assert len(result.rows) == 3
    negotiated, discount, batch = result.rows
    assert negotiated == {
        "model_pattern": "claude-sonnet-4-20250514",
        "provider": "anthropic",
        "match": None,
        "service_tier": None,
        "effective_from": datetime(2026, 1, 1, tzinfo=UTC),
        "effective_to": None,
        "prices": {"input_mtok": "2.7", "output_mtok": "13.5", "cache_read_mtok": "0.27"},
        "discount_percent": None,
        "multiplier": None,
        "note": "negotiated 10% off list",
    }
    assert discount["discount_percent"] == "15" and discount["prices"] is None
    assert batch["service_tier"] == "batch"
    assert batch["effective_to"] == datetime(2027, 1, 1, tzinfo=UTC)
    assert batch["prices"] == {"input_mtok": "0.55", "output_mtok": "1.10"}
    rejected = dict(result.rejected)
    assert sorted(rejected) == [5, 6, 7, 8, 9, 10]  # file line numbers; the header is line 1
    assert "input_mtok" in rejected[5] and "not a decimal number" in rejected[5]
    assert "model: required" in rejected[6]
    assert "exactly one of" in rejected[7]
    assert "service_tier" in rejected[8]
    assert "effective_to" in rejected[9]
    assert "time zone" in rejected[10]


def test_json_price_list_with_tiers(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text(
        json.dumps(
            {
                "prices": [
                    {
                        "provider": "google",
                        "model": "gemini-2.5-pro",
                        "note": "committed use",
                        "prices": {"input_mtok": {"base": "1.1", "tiers": [{"start": 200000, "price": "2.2"}]}},
                        "output_mtok": "9",
                    },
                    {"provider": "openai", "model": "gpt-4o", "colour": "blue", "input_mtok": "2"},
                    "not an object",
                ]
            }
        ),
        encoding="utf-8",
    )
    result = load_price_list(path)
    assert result.rows[0]["prices"] == {
        "input_mtok": {"base": "1.1", "tiers": [{"start": 200000, "price": "2.2"}]},
        "output_mtok": "9",
    }
    rejected = dict(result.rejected)
    assert "unknown column" in rejected[2]
    assert "expected an object" in rejected[3]


def test_price_list_import_prices_events_and_is_idempotent(store: Store, clock, tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(CSV_LIST, encoding="utf-8")
    price_list = load_price_list(path)
    assert import_price_list(store, price_list, now=clock(), created_by="finance") == {
        "imported": 3,
        "unchanged": 0,
        "rejected": 6,
    }
    assert import_price_list(store, load_price_list(path), now=clock()) == {
        "imported": 0,
        "unchanged": 3,
        "rejected": 6,
    }
    pricer = Pricer(load_overrides(store))
    sonnet = pricer.price(event("anthropic", "claude-sonnet-4-20250514", input_tokens=1_000_000))
    assert sonnet.source == "override" and sonnet.total_nanos == 2_700_000_000
    gpt4o = pricer.price(event("openai", "gpt-4o", input_tokens=1_000_000))
    assert gpt4o.source == "genai-prices" and gpt4o.total_nanos == 2_125_000_000  # $2.50 - 15%


def test_price_list_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InvalidInput, match="empty"):
        load_price_list(empty)
    with pytest.raises(InvalidInput, match="cannot read"):
        load_price_list(tmp_path / "missing.csv")
    broken = tmp_path / "broken.json"
    broken.write_text('{"prices": ', encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        load_price_list(broken)
