"""FOCUS 1.2 export (CSV): the ledger's spend as FinOps Open Cost and Usage Specification rows.

One row per **model x token type x day x attribution** (department, cost center, project, team,
agent, environment; plus the provider, service tier and category that decide the price). Token
types are the cost buckets the ledger stores with every event and keeps in its rollups, so the
rows are exact without reading raw events:

| x_TokenType | ConsumedQuantity | cost |
| --- | --- | --- |
| ``input`` | input tokens not read from or written to a cache | uncached input (text, audio, image) |
| ``cache_read`` | cache-read input tokens | cache reads |
| ``cache_write`` | cache-write input tokens | cache writes |
| ``output`` | output tokens (reasoning included; ``x_ReasoningTokens`` says how many) | output |
| ``other`` | requests (events) of the group, unit ``Requests`` | per-request fees, web searches, line items |

Costs are exact nine-place decimals; ``BilledCost`` summed over the file equals the ledger's total
for the period to the nano-dollar. ``BilledCost`` = ``EffectiveCost`` = ``ContractedCost`` =
``ListCost``: the ledger keeps the price it applied (catalog price, or a negotiated override), not a
separate list price (see docs/decisions/0009-reports.md). Unit prices are the row's average price
per ``PricingUnit`` (cost / quantity, rounded half-even to nine places), so they are informative;
the cost columns are authoritative.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

from fleetledger.core.money import nanos_to_usd
from fleetledger.core.time import from_us
from fleetledger.reports.data import MEASURES, TOKEN_TYPES, scope_where
from fleetledger.reports.periods import Period, parse_period

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["FOCUS_COLUMNS", "FOCUS_KEYS", "focus_rows", "render_focus"]

#: The grouping of a FOCUS row (before the token type).
FOCUS_KEYS = (
    "day",
    "provider",
    "model",
    "service_tier",
    "category",
    "department",
    "cost_center",
    "project",
    "team",
    "agent",
    "environment",
)
#: Attribution dimensions carried in ``Tags``.
TAG_KEYS = ("department", "cost_center", "project", "team", "agent", "environment")

FOCUS_COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_TokenType",
    "x_Model",
    "x_ServiceTier",
    "x_Category",
    "x_Requests",
    "x_InputTokens",
    "x_CacheReadTokens",
    "x_CacheWriteTokens",
    "x_OutputTokens",
    "x_ReasoningTokens",
    "x_CostExactNanoUSD",
)

_M = {name: i for i, name in enumerate(MEASURES)}
_MILLION = Decimal(1_000_000)
_NINE = Decimal("0.000000001")
_DESCRIPTIONS = {
    "input": "input tokens (uncached)",
    "cache_read": "cached input tokens (cache reads)",
    "cache_write": "cache write input tokens",
    "output": "output tokens",
    "other": "other charges (per-request fees, tool calls, line items)",
}
#: Display names of the providers the ledger normalises to (anything else is shown as stored).
_PROVIDER_NAMES = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "google": "Google",
    "azure": "Microsoft Azure",
    "aws": "Amazon Web Services",
    "bedrock": "Amazon Web Services",
    "mistral": "Mistral AI",
    "cohere": "Cohere",
    "groq": "Groq",
    "deepseek": "DeepSeek",
    "x-ai": "xAI",
}


@functools.lru_cache(maxsize=4096)
def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _month(moment: datetime) -> tuple[datetime, datetime]:
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _unit_price(nanos: int, quantity: int, per: Decimal) -> str:
    if not quantity:
        return ""
    price = (Decimal(nanos) * per / quantity / 1_000_000_000).quantize(_NINE, ROUND_HALF_EVEN)
    return f"{price:f}"


def focus_rows(
    ledger: Ledger,
    period: str | Period,
    *,
    departments: Sequence[str | None] | None = None,
    cost_centers: Sequence[str | None] | None = None,
) -> Iterator[dict[str, str]]:
    """The FOCUS rows of ``period`` (a running period ends now), scoped like the other reports."""
    period = period if isinstance(period, Period) else parse_period(period)
    now = ledger.clock()
    since = period.start
    until = min(period.end, now) if since < now else period.end
    if until <= since:
        return
    where = scope_where(departments or None, cost_centers or None)
    report = ledger.costs(by=list(FOCUS_KEYS), since=since, until=until, where=where)
    k = {name: i for i, name in enumerate(FOCUS_KEYS)}
    groups = sorted(report.groups, key=lambda r: [("" if v is None else str(v)) for v in r.keys])
    for row in groups:
        keys = row.keys
        m = [int(row.measures[name]) for name in MEASURES]
        day = from_us(keys[k["day"]])
        billing_start, billing_end = _month(day)
        provider = keys[k["provider"]] or "unknown"
        model = keys[k["model"]]
        tier = keys[k["service_tier"]] or "standard"
        category = keys[k["category"]] or "llm_inference"
        tags = {name: keys[k[name]] for name in TAG_KEYS if keys[k[name]] is not None}
        tags_json = json.dumps(tags, separators=(",", ":"), sort_keys=True)
        provider_name = _PROVIDER_NAMES.get(provider, provider)
        resource = model or f"{provider}:{category}"
        bucket_sum = sum(m[_M[cost]] for _, cost, _ in TOKEN_TYPES)
        drift = m[_M["cost_nanos"]] - bucket_sum  # 0 unless a row's buckets do not add up
        for label, cost_measure, tokens in TOKEN_TYPES:
            nanos = m[_M[cost_measure]] + (drift if label == "other" else 0)
            quantity = tokens(m) if label != "other" else m[_M["requests"]]
            if not nanos and not quantity:
                continue
            if label == "other" and not nanos:
                continue
            token_row = label != "other"
            cost = f"{nanos_to_usd(nanos):f}"
            unit = "1000000 Tokens" if token_row else "Requests"
            per = _MILLION if token_row else Decimal(1)
            unit_price = _unit_price(nanos, quantity, per)
            pricing_quantity = f"{(Decimal(quantity) / per).normalize():f}" if token_row else str(quantity)
            sku = f"{provider}/{resource}/{tier}"
            generative = category in ("llm_inference", "embedding") or token_row
            yield {
                "BilledCost": cost,
                "BillingAccountId": provider,
                "BillingAccountName": provider_name,
                "BillingCurrency": "USD",
                "BillingPeriodEnd": _iso(billing_end),
                "BillingPeriodStart": _iso(billing_start),
                "ChargeCategory": "Usage",
                "ChargeClass": "",
                "ChargeDescription": f"{resource} {_DESCRIPTIONS[label]}"
                + (f" ({tier} tier)" if tier != "standard" else ""),
                "ChargeFrequency": "Usage-Based",
                "ChargePeriodEnd": _iso(day + timedelta(days=1)),
                "ChargePeriodStart": _iso(day),
                "ConsumedQuantity": str(quantity),
                "ConsumedUnit": "Tokens" if token_row else "Requests",
                "ContractedCost": cost,
                "ContractedUnitPrice": unit_price,
                "EffectiveCost": cost,
                "InvoiceIssuerName": provider_name,
                "ListCost": cost,
                "ListUnitPrice": unit_price,
                "PricingCategory": "Standard",
                "PricingQuantity": pricing_quantity,
                "PricingUnit": unit,
                "ProviderName": provider_name,
                "PublisherName": provider_name,
                "RegionId": "",
                "RegionName": "",
                "ResourceId": resource,
                "ResourceName": resource,
                "ResourceType": "Model" if model else "Line item",
                "ServiceCategory": "AI and Machine Learning",
                "ServiceName": f"{provider_name} API",
                "ServiceSubcategory": "Generative AI" if generative else "Other (AI and Machine Learning)",
                "SkuId": f"{sku}/{label}",
                "SkuPriceId": f"{sku}/{label}/USD",
                "SubAccountId": tags.get("department", ""),
                "SubAccountName": tags.get("department", ""),
                "Tags": tags_json,
                "x_TokenType": label,
                "x_Model": model or "",
                "x_ServiceTier": tier,
                "x_Category": category,
                "x_Requests": str(m[_M["requests"]]),
                "x_InputTokens": str(m[_M["input_tokens"]]),
                "x_CacheReadTokens": str(m[_M["cache_read_tokens"]]),
                "x_CacheWriteTokens": str(m[_M["cache_write_tokens"]]),
                "x_OutputTokens": str(m[_M["output_tokens"]]),
                "x_ReasoningTokens": str(m[_M["reasoning_tokens"]]) if label == "output" else "0",
                "x_CostExactNanoUSD": str(nanos),
            }


def render_focus(
    ledger: Ledger,
    period: str | Period,
    *,
    departments: Sequence[str | None] | None = None,
    cost_centers: Sequence[str | None] | None = None,
) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FOCUS_COLUMNS)
    checked = False
    for row in focus_rows(ledger, period, departments=departments, cost_centers=cost_centers):
        if not checked:  # rows are built in column order; values() is then the row (much faster)
            if tuple(row) != FOCUS_COLUMNS:
                raise AssertionError("focus_rows() builds its columns out of FOCUS_COLUMNS order")
            checked = True
        writer.writerow(row.values())
    return buffer.getvalue().encode()
