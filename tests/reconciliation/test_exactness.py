"""Per-request exactness (seed DA3.1): our cost of real provider usage equals the provider's bill.

Each payload in tests/providers/fixtures is a real-shaped provider response. The bill is computed
here, independently of the pricing engine, from the unit prices the providers publish (USD per
million tokens; web searches per thousand), written out below. Our per-request cost must equal it
within $0.0001; in fact it agrees to the nano-dollar.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from fleetledger import Ledger

from .conftest import DAY14, provider_payload

TOLERANCE = Decimal("0.0001")
M = Decimal(1_000_000)

# Published list prices, USD per 1M tokens (web search: USD per 1,000 searches).
# openai.com/api/pricing, docs.anthropic.com/en/docs/about-claude/pricing, mistral.ai/pricing.
O4_MINI = {"input": "1.10", "cached_input": "0.275", "output": "4.40"}
GPT_5 = {"input": "1.25", "cached_input": "0.125", "output": "10.00", "web_search_per_k": "10.00"}
GPT_41_BATCH = {"input": "1.00", "output": "4.00"}  # Batch API: half of $2.00 / $8.00
EMBEDDING_3_SMALL = {"input": "0.02"}
SONNET_45 = {"input": "3", "cache_write_5m": "3.75", "cache_write_1h": "6", "cache_read": "0.30", "output": "15"}
SONNET_45_WEB_SEARCH_PER_K = "10"
HAIKU_45_BATCH = {"input": "0.50", "output": "2.50"}  # Message Batches: half of $1 / $5
MISTRAL_MEDIUM = {"input": "0.40", "cached_input": "0.04", "output": "2"}


def _bill(parts: list[tuple[int, str]], per_k: list[tuple[int, str]] = ()) -> Decimal:
    return sum((Decimal(count) * Decimal(price) / M for count, price in parts), Decimal(0)) + sum(
        (Decimal(count) * Decimal(price) / 1000 for count, price in per_k), Decimal(0)
    )


CASES = [
    (
        "openai_chat_o4_mini_cached_reasoning.json",
        # 2150 prompt tokens of which 1920 cached; 912 completion tokens (640 reasoning, billed as output)
        _bill([(2150 - 1920, O4_MINI["input"]), (1920, O4_MINI["cached_input"]), (912, O4_MINI["output"])]),
    ),
    (
        "openai_responses_web_search.json",
        _bill(
            [(18342 - 9216, GPT_5["input"]), (9216, GPT_5["cached_input"]), (1457, GPT_5["output"])],
            [(2, GPT_5["web_search_per_k"])],
        ),
    ),
    ("openai_batch_output_line.json", _bill([(356, GPT_41_BATCH["input"]), (4, GPT_41_BATCH["output"])])),
    ("openai_embeddings.json", _bill([(17, EMBEDDING_3_SMALL["input"])])),
    (
        "anthropic_cache_web_search.json",
        # input_tokens (1843) excludes the cache: Anthropic bills each part at its own price
        _bill(
            [
                (1843, SONNET_45["input"]),
                (2048, SONNET_45["cache_write_5m"]),
                (3072, SONNET_45["cache_write_1h"]),
                (24576, SONNET_45["cache_read"]),
                (612, SONNET_45["output"]),
            ],
            [(2, SONNET_45_WEB_SEARCH_PER_K)],
        ),
    ),
    ("anthropic_batch_result.json", _bill([(4210, HAIKU_45_BATCH["input"]), (96, HAIKU_45_BATCH["output"])])),
    (
        "mistral_chat.json",
        _bill(
            [
                (3104 - 2048, MISTRAL_MEDIUM["input"]),
                (2048, MISTRAL_MEDIUM["cached_input"]),
                (287, MISTRAL_MEDIUM["output"]),
            ]
        ),
    ),
]


@pytest.mark.parametrize(("fixture", "billed"), CASES, ids=[name for name, _ in CASES])
def test_per_request_cost_matches_the_published_price_bill(recon_ledger: Ledger, fixture: str, billed: Decimal):
    priced = recon_ledger.record_response(provider_payload(fixture), timestamp=DAY14)
    assert abs(priced.cost_usd - billed) <= TOLERANCE, (fixture, priced.cost_usd, billed)
    assert priced.cost_usd == billed  # to the nano-dollar, in fact
