"""Compare two price sources: the genai-prices catalog, stored overrides, a LiteLLM import.

Use it before importing LiteLLM's map with ``only_missing=False``, to audit negotiated rates
against list prices, or to see what a catalog upgrade changes. The comparison is exact:
prices are Decimals end to end (LiteLLM's are parsed without floats, see
:mod:`fleetledger.pricing.litellm`), so two sources that agree never show a difference from
rounding, and ``difference_percent`` is ``(b - a) / a * 100`` quantized (half-even) to 0.01 only
for display.

Models are paired within a provider by case-insensitive id; the catalog also pairs any name its
own lookup accepts (``ModelInfo.is_match`` and genai-prices' provider fallbacks, the same lookup
the pricer uses), so LiteLLM's ``claude-3-5-sonnet-20241022`` is compared with the catalog's
``claude-3-5-sonnet``. A flat price is compared with a tiered one as a tiered price whose tiers all
equal the flat price: the base rates are compared, then the rate in force above every threshold
either side has (``tier_start``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from genai_prices import data_snapshot
from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id
from genai_prices.types import ModelInfo, TieredPrices

from fleetledger.pricing.engine import REGISTRY, PriceOverride
from fleetledger.pricing.litellm import LiteLLMImport

__all__ = [
    "PriceDifference",
    "PriceSource",
    "CatalogSource",
    "OverrideSource",
    "LiteLLMSource",
    "diff_prices",
    "differences_to_rows",
]

_CENT = Decimal("0.01")
Price = Decimal | TieredPrices


@dataclass(frozen=True, slots=True)
class PriceDifference:
    """One price that differs between source ``a`` and source ``b``.

    ``tier_start`` is None for the base price, else the input-token threshold above which the
    compared rates apply. ``a_price``/``b_price`` is None when that source has no such price (only
    reported with ``include_missing``); ``difference_percent`` is None then, and when ``a_price``
    is 0. ``model`` is the name as the non-catalog source spells it; ``a_model``/``b_model`` are
    each source's own id for it.
    """

    provider: str
    model: str
    price_key: str
    a_price: Decimal | None
    b_price: Decimal | None
    difference_percent: Decimal | None
    tier_start: int | None = None
    a_model: str | None = None
    b_model: str | None = None

    @property
    def status(self) -> str:
        if self.a_price is None:
            return "only_b"
        if self.b_price is None:
            return "only_a"
        return "changed"


@dataclass(frozen=True, slots=True)
class _Entry:
    provider: str | None  # None: any provider (an override without one)
    model: str
    prices: Mapping[str, Price]
    catalog: bool = False


class PriceSource:
    """A set of model prices at a moment, and the lookup that finds a model among them."""

    catalog = False

    def entries(self, at: datetime) -> list[_Entry]:
        raise NotImplementedError

    def find(self, provider: str | None, model: str, at: datetime) -> _Entry | None:
        raise NotImplementedError


def _registry_prices(raw: Mapping[str, Any]) -> dict[str, Price]:
    return {
        key: value
        for key, value in raw.items()
        if not key.startswith("_") and value is not None and key in REGISTRY._all_price_keys
    }  # noqa: SLF001


class CatalogSource(PriceSource):
    """The genai-prices catalog (the installed snapshot, or ``snapshot``), standard prices at ``at``."""

    catalog = True

    def __init__(self, snapshot: DataSnapshot | None = None) -> None:
        self._snapshot = snapshot
        self._cache: tuple[datetime, list[_Entry], dict[int, _Entry]] | None = None

    @property
    def snapshot(self) -> DataSnapshot:
        return self._snapshot or data_snapshot.get_snapshot()

    def _index(self, at: datetime) -> tuple[list[_Entry], dict[int, _Entry]]:
        if self._cache is None or self._cache[0] != at:
            entries: list[_Entry] = []
            by_info: dict[int, _Entry] = {}
            for provider in self.snapshot.providers:
                for info in provider.models:
                    prices = _registry_prices(info.get_prices(at).__dict__)
                    if prices:
                        entry = _Entry(provider.id, info.id, prices, catalog=True)
                        entries.append(entry)
                        by_info[id(info)] = entry
            self._cache = (at, entries, by_info)
        return self._cache[1], self._cache[2]

    def entries(self, at: datetime) -> list[_Entry]:
        return self._index(at)[0]

    def find(self, provider: str | None, model: str, at: datetime) -> _Entry | None:
        _, by_info = self._index(at)
        snapshot = self.snapshot
        info: ModelInfo | None
        if provider is None:
            try:
                _, info = snapshot.find_provider_model(model, None, None, None)
            except LookupError:
                return None
        else:
            found = find_provider_by_id(snapshot.providers, provider)
            if found is None:
                return None
            lowered = model.lower()
            info = next((m for m in found.models if m.id.lower() == lowered), None)
            if info is None:
                info = found.find_model(model, all_providers=snapshot.providers)
        return by_info.get(id(info)) if info is not None else None


class OverrideSource(PriceSource):
    """Stored price overrides with unit prices (standard tier, active at ``at``)."""

    def __init__(self, overrides: Iterable[PriceOverride]) -> None:
        self._overrides = [o for o in overrides if o.prices is not None and o.service_tier in (None, "standard")]
        self._cache: tuple[datetime, list[tuple[PriceOverride, _Entry]]] | None = None

    def _active(self, at: datetime) -> list[tuple[PriceOverride, _Entry]]:
        """The winning override for each (provider, pattern, match) at ``at``, with its entry."""
        if self._cache is None or self._cache[0] != at:
            best: dict[tuple[str | None, str, str], PriceOverride] = {}
            for override in self._overrides:
                if not override.active(at):
                    continue
                key = (override.provider, override.model_pattern.lower(), override.match)
                current = best.get(key)
                if current is None or override.specificity() > current.specificity():
                    best[key] = override
            self._cache = (at, [(o, _Entry(o.provider, o.model_pattern, o.prices or {})) for o in best.values()])
        return self._cache[1]

    def entries(self, at: datetime) -> list[_Entry]:
        return [entry for _, entry in self._active(at)]

    def find(self, provider: str | None, model: str, at: datetime) -> _Entry | None:
        candidates = [
            (o, entry)
            for o, entry in self._active(at)
            if (o.matches_model(provider, model) if provider is not None else _pattern_matches(o, model))
        ]
        return max(candidates, key=lambda item: item[0].specificity())[1] if candidates else None


def _pattern_matches(override: PriceOverride, model: str) -> bool:
    if override.match == "glob":
        return fnmatch.fnmatchcase(model.lower(), override.model_pattern.lower())
    return model.lower() == override.model_pattern.lower()


class LiteLLMSource(PriceSource):
    """Standard prices from a LiteLLM import (:func:`fleetledger.pricing.litellm.load_litellm_prices`)."""

    def __init__(self, imported: LiteLLMImport) -> None:
        self._entries = [_Entry(p.provider, p.model, p.prices) for p in imported.prices]
        self._by_name = {(e.provider, e.model.lower()): e for e in reversed(self._entries)}
        self._by_model = {e.model.lower(): e for e in reversed(self._entries)}

    def entries(self, at: datetime) -> list[_Entry]:
        return list(self._entries)

    def find(self, provider: str | None, model: str, at: datetime) -> _Entry | None:
        if provider is None:
            return self._by_model.get(model.lower())
        return self._by_name.get((provider, model.lower()))


# -- comparison ------------------------------------------------------------------------------------


def _base_and_tiers(price: Price) -> tuple[Decimal, list[tuple[int, Decimal]]]:
    if isinstance(price, TieredPrices):
        return price.base, sorted((t.start, t.price) for t in price.tiers)
    return price, []


def _rate_above(base: Decimal, tiers: Sequence[tuple[int, Decimal]], threshold: int) -> Decimal:
    """The rate charged when input exceeds ``threshold`` (and no higher threshold either side has)."""
    rate = base
    for start, price in tiers:
        if start <= threshold:
            rate = price
    return rate


def _expand(price: Price) -> list[tuple[int | None, Decimal]]:
    base, tiers = _base_and_tiers(price)
    return [(None, base), *tiers]


def _percent(a: Decimal, b: Decimal) -> Decimal | None:
    if a == 0:
        return None
    return (b - a) * 100 / a


def _compare(a: Price, b: Price) -> list[tuple[int | None, Decimal, Decimal]]:
    a_base, a_tiers = _base_and_tiers(a)
    b_base, b_tiers = _base_and_tiers(b)
    out: list[tuple[int | None, Decimal, Decimal]] = [(None, a_base, b_base)]
    for threshold in sorted({s for s, _ in a_tiers} | {s for s, _ in b_tiers}):
        out.append((threshold, _rate_above(a_base, a_tiers, threshold), _rate_above(b_base, b_tiers, threshold)))
    return out


def diff_prices(
    a: PriceSource,
    b: PriceSource,
    *,
    at: datetime,
    providers: set[str] | None = None,
    tolerance_percent: Decimal = Decimal(0),
    include_missing: bool = False,
) -> list[PriceDifference]:
    """Prices that differ between ``a`` and ``b`` at ``at``, largest relative difference first.

    A difference is reported when the prices are not equal and ``abs(difference_percent)`` exceeds
    ``tolerance_percent`` (a change from 0 always counts). With ``include_missing``, models only one
    source has, and price keys only one side of a pair has, are listed too (the other side None).
    Order: changes from 0 first, then by ``abs(difference_percent)`` descending, then the missing
    ones; ties by provider, model, price key, tier.
    """
    tolerance = Decimal(tolerance_percent)
    a_entries, b_entries = a.entries(at), b.entries(at)
    pairs: dict[tuple[int, int], tuple[_Entry, _Entry]] = {}
    for eb in b_entries:
        found_a = a.find(eb.provider, eb.model, at)
        if found_a is not None:
            pairs.setdefault((id(found_a), id(eb)), (found_a, eb))
    for ea in a_entries:
        found_b = b.find(ea.provider, ea.model, at)
        if found_b is not None:
            pairs.setdefault((id(ea), id(found_b)), (ea, found_b))

    wanted = {p.lower() for p in providers} if providers is not None else None
    out: list[PriceDifference] = []

    def add(
        provider: str,
        model: str,
        key: str,
        tier: int | None,
        pa: Decimal | None,
        pb: Decimal | None,
        a_model: str | None,
        b_model: str | None,
    ) -> None:
        if wanted is not None and provider.lower() not in wanted:
            return
        exact = _percent(pa, pb) if pa is not None and pb is not None else None
        shown = exact.quantize(_CENT, ROUND_HALF_EVEN) if exact is not None else None
        out.append(PriceDifference(provider, model, key, pa, pb, shown, tier, a_model, b_model))

    for ea, eb in pairs.values():
        preferred, other = (eb, ea) if ea.catalog and not eb.catalog else (ea, eb)
        provider = preferred.provider or other.provider or "*"
        model = preferred.model
        for key in sorted(set(ea.prices) | set(eb.prices)):
            if key in ea.prices and key in eb.prices:
                for tier, pa, pb in _compare(ea.prices[key], eb.prices[key]):
                    if pa == pb:
                        continue
                    exact = _percent(pa, pb)
                    if exact is not None and abs(exact) <= tolerance:
                        continue
                    add(provider, model, key, tier, pa, pb, ea.model, eb.model)
            elif include_missing:
                only_a = key in ea.prices
                for tier, price in _expand(ea.prices[key] if only_a else eb.prices[key]):
                    add(
                        provider,
                        model,
                        key,
                        tier,
                        price if only_a else None,
                        None if only_a else price,
                        ea.model,
                        eb.model,
                    )

    if include_missing:
        paired_a = {id(ea) for ea, _ in pairs.values()}
        paired_b = {id(eb) for _, eb in pairs.values()}
        for entries, paired, side in ((a_entries, paired_a, "a"), (b_entries, paired_b, "b")):
            for entry in entries:
                if id(entry) in paired:
                    continue
                for key in sorted(entry.prices):
                    for tier, price in _expand(entry.prices[key]):
                        add(
                            entry.provider or "*",
                            entry.model,
                            key,
                            tier,
                            price if side == "a" else None,
                            price if side == "b" else None,
                            entry.model if side == "a" else None,
                            entry.model if side == "b" else None,
                        )

    def order(d: PriceDifference) -> tuple[Any, ...]:
        if d.a_price is None or d.b_price is None:
            group, size = 2, Decimal(0)
        elif d.difference_percent is None:
            group, size = 0, Decimal(0)
        else:
            group, size = 1, -abs(d.difference_percent)
        return (
            group,
            size,
            d.provider,
            d.model,
            d.price_key,
            -1 if d.tier_start is None else d.tier_start,
            d.a_model or "",
            d.b_model or "",
        )

    out.sort(key=order)
    return out


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def differences_to_rows(differences: Iterable[PriceDifference]) -> list[dict[str, Any]]:
    """JSON/CSV-ready rows: prices and percentages as exact decimal strings (never floats)."""
    return [
        {
            "provider": d.provider,
            "model": d.model,
            "price_key": d.price_key,
            "tier_start": d.tier_start,
            "a_price": _decimal_text(d.a_price),
            "b_price": _decimal_text(d.b_price),
            "difference_percent": _decimal_text(d.difference_percent),
            "status": d.status,
            "a_model": d.a_model,
            "b_model": d.b_model,
        }
        for d in differences
    ]
