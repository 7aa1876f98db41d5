"""Stored price overrides: negotiated rates, custom and self-hosted models, tier multipliers.

See :mod:`fleetledger.pricing.engine` for how they combine with the genai-prices catalog.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from genai_prices.types import TieredPrices
from sqlalchemy import delete, select

from fleetledger.core.errors import InvalidInput, NotFound
from fleetledger.core.time import from_us, to_us
from fleetledger.core.usage import ServiceTier, normalize_provider
from fleetledger.pricing.engine import PriceOverride, parse_unit_prices
from fleetledger.storage.schema import price_overrides
from fleetledger.storage.store import Store

__all__ = [
    "prices_to_json",
    "load_overrides",
    "add_override",
    "delete_override",
    "override_to_dict",
    "DEFAULT_TIER_MULTIPLIERS",
]

#: Batch APIs are half price at OpenAI, Anthropic, Google and Mistral; where the catalog lacks a
#: model's batch price, these fill the gap (created by ``fleetledger init``; edit or delete them).
DEFAULT_TIER_MULTIPLIERS = [
    {
        "provider": provider,
        "model_pattern": "*",
        "match": "glob",
        "service_tier": "batch",
        "multiplier": "0.5",
        "note": f"{provider} Batch API: 50% of standard price",
    }
    for provider in ("openai", "anthropic", "google", "mistral")
]


def _decimal(value: Any, field: str, *, low: Decimal, high: Decimal | None = None) -> Decimal:
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(f"{field}: {value!r} is not a number") from None
    if not number.is_finite() or number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"{field}: must be {bound}, got {value}")
    return number


def _from_row(row: Any) -> PriceOverride:
    return PriceOverride(
        id=row.id,
        provider=row.provider,
        model_pattern=row.model_pattern,
        match=row.match,
        service_tier=row.service_tier,
        effective_from=from_us(row.effective_from_us) if row.effective_from_us is not None else None,
        effective_to=from_us(row.effective_to_us) if row.effective_to_us is not None else None,
        prices=parse_unit_prices(row.prices) if row.prices else None,
        discount_percent=Decimal(row.discount_percent) if row.discount_percent is not None else None,
        multiplier=Decimal(row.multiplier) if row.multiplier is not None else None,
        note=row.note,
    )


def load_overrides(store: Store) -> list[PriceOverride]:
    with store.read() as conn:
        rows = conn.execute(select(price_overrides).order_by(price_overrides.c.id)).all()
    return [_from_row(row) for row in rows]


def prices_to_json(prices: dict[str, Decimal | TieredPrices]) -> dict[str, Any]:
    """Unit prices as stored and shown: decimal strings (never exponent notation), tiers as dicts."""
    out: dict[str, Any] = {}
    for key, value in prices.items():
        if isinstance(value, TieredPrices):
            out[key] = {
                "base": f"{value.base:f}",
                "tiers": [{"start": t.start, "price": f"{t.price:f}"} for t in value.tiers],
            }
        else:
            out[key] = f"{value:f}"
    return out


def add_override(
    store: Store,
    *,
    model_pattern: str,
    provider: str | None = None,
    match: str | None = None,
    service_tier: str | None = None,
    effective_from: datetime | None = None,
    effective_to: datetime | None = None,
    prices: dict[str, Any] | None = None,
    discount_percent: Any = None,
    multiplier: Any = None,
    note: str | None = None,
    created_by: str | None = None,
    now: datetime,
) -> PriceOverride:
    """Validate and store one override; exactly one of prices / discount / multiplier."""
    model_pattern = (model_pattern or "").strip()
    if not model_pattern:
        raise InvalidInput("model: required (an exact model name or a pattern such as claude-*)")
    kinds = [
        k
        for k, v in (("prices", prices), ("discount_percent", discount_percent), ("multiplier", multiplier))
        if v not in (None, {}, "")
    ]
    if len(kinds) != 1:
        raise InvalidInput("give exactly one of: unit prices (e.g. input_mtok=2.5), --discount-percent, --multiplier")
    match = match or ("glob" if any(ch in model_pattern for ch in "*?[") else "exact")
    if match not in ("exact", "glob"):
        raise InvalidInput(f"match: {match!r} must be exact or glob")
    if service_tier is not None:
        try:
            service_tier = ServiceTier(service_tier).value
        except ValueError:
            raise InvalidInput(f"service_tier: {service_tier!r} must be standard, batch, flex or priority") from None
    if multiplier not in (None, "") and service_tier is None:
        raise InvalidInput("multiplier: name the --service-tier it applies to (batch, flex, priority)")
    if effective_from and effective_to and effective_to <= effective_from:
        raise InvalidInput("effective_to: must be after effective_from")
    parsed_prices = parse_unit_prices(prices) if kinds == ["prices"] and prices else None
    discount = (
        _decimal(discount_percent, "discount_percent", low=Decimal(0), high=Decimal(100))
        if kinds == ["discount_percent"]
        else None
    )
    factor = _decimal(multiplier, "multiplier", low=Decimal(0), high=Decimal(100)) if kinds == ["multiplier"] else None
    row = {
        "provider": normalize_provider(provider) if provider else None,
        "model_pattern": model_pattern,
        "match": match,
        "service_tier": service_tier,
        "effective_from_us": to_us(effective_from) if effective_from else None,
        "effective_to_us": to_us(effective_to) if effective_to else None,
        "prices": prices_to_json(parsed_prices) if parsed_prices else None,
        "discount_percent": str(discount) if discount is not None else None,
        "multiplier": str(factor) if factor is not None else None,
        "note": note,
        "created_by": created_by,
        "created_us": to_us(now),
    }
    with store.write() as conn:
        new_id = conn.execute(price_overrides.insert().values(**row).returning(price_overrides.c.id)).scalar_one()
        stored = conn.execute(select(price_overrides).where(price_overrides.c.id == new_id)).one()
    return _from_row(stored)


def delete_override(store: Store, override_id: int) -> None:
    with store.write() as conn:
        deleted = conn.execute(delete(price_overrides).where(price_overrides.c.id == override_id)).rowcount
    if not deleted:
        raise NotFound(f"price override #{override_id} does not exist (see `fleetledger pricing list`)")


def override_to_dict(override: PriceOverride) -> dict[str, Any]:
    return {
        "id": override.id,
        "kind": override.kind,
        "provider": override.provider,
        "model": override.model_pattern,
        "match": override.match,
        "service_tier": override.service_tier,
        "effective_from": override.effective_from.isoformat() if override.effective_from else None,
        "effective_to": override.effective_to.isoformat() if override.effective_to else None,
        "prices": prices_to_json(override.prices) if override.prices else None,
        "discount_percent": str(override.discount_percent) if override.discount_percent is not None else None,
        "multiplier": str(override.multiplier) if override.multiplier is not None else None,
        "note": override.note,
    }
