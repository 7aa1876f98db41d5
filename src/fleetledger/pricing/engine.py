"""Pricing: turn a usage event into an exact, itemised cost.

Where a price comes from, in order:

1. **Price overrides** stored in the database (negotiated rates, custom and self-hosted models).
   An override with unit prices replaces the catalog's prices for the models it matches; one with a
   ``discount_percent`` takes that percentage off whatever price applies; one with a ``multiplier``
   for a ``service_tier`` fills the gap when the catalog has no price for that tier (batch, flex,
   priority). The most specific matching override of each kind wins (exact model over pattern,
   named provider over any, then the latest ``effective_from``, then the newest).
2. **genai-prices**, the default catalog: prices by request time (historic prices), long-context
   tiers, cache read and write prices, batch and service-tier variants.

A model found in neither is *unpriced*: the event is kept with cost 0 and ``priced=False`` and every
report counts it; it is never dropped and never silently $0.

The arithmetic follows genai-prices exactly: usage is decomposed into leaf units (uncached input =
input - cache reads - cache writes, and so on for every unit the price defines), each leaf is priced
(tiers apply to the whole request once *input* passes the threshold, boundary exclusive), and each
component is rounded half-even once to integer nano-USD; the total is the sum of the components.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import genai_prices
from genai_prices import data_snapshot
from genai_prices.data_units import unit_data
from genai_prices.types import ModelInfo, ModelPrice, Provider, Tier, TieredPrices, TimeOfDateConstraint
from genai_prices.units import UnitDef, UnitRegistry

from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import NANOS_PER_USD, usd_to_nanos
from fleetledger.core.usage import UsageEvent

__all__ = [
    "Cost",
    "PriceOverride",
    "PriceTable",
    "Pricer",
    "CATALOG_VERSION",
    "BUCKETS",
    "REGISTRY",
    "parse_unit_prices",
    "event_usage",
]

CATALOG_VERSION = f"genai-prices {genai_prices.__version__}"
REGISTRY = UnitRegistry(unit_data)
#: Where each component's cost is summed for storage and rollups.
BUCKETS = ("input", "cache_read", "cache_write", "output", "other")
_NANO = Decimal(1)
_BUCKET_INDEX = {name: i for i, name in enumerate(("input", "cache_read", "cache_write", "output", "other"))}

#: Request context genai-prices uses to pick a service-tier price variant.
_TIER_CONTEXT: dict[str, dict[str, str]] = {
    "batch": {"processing": "batch"},
    "flex": {"service_tier": "flex"},
    "priority": {"service_tier": "priority"},
}


def _bucket(unit: UnitDef) -> str:
    dims = unit.dimensions
    if dims.get("family") != "tokens":
        return "other"
    token_type = dims.get("token_type")
    if token_type == "cache_read":
        return "cache_read"
    if token_type == "cache_write":
        return "cache_write"
    return "output" if dims.get("direction") == "output" else "input"


@dataclass(slots=True)
class Cost:
    """The exact cost of one event. ``components`` maps genai-prices price keys to nano-USD."""

    total_nanos: int
    components: dict[str, int]
    buckets: tuple[int, int, int, int, int]
    priced: bool
    source: str
    version: str
    provider: str
    model_id: str | None = None
    reason: str | None = None

    @property
    def total_usd(self) -> Decimal:
        return Decimal(self.total_nanos) / NANOS_PER_USD

    def as_dict(self) -> dict[str, Any]:
        from fleetledger.core.money import format_usd

        return {
            "total_usd": format_usd(self.total_nanos),
            "components": {key: format_usd(value) for key, value in self.components.items()},
            "priced": self.priced,
            "source": self.source,
            "version": self.version,
            "provider": self.provider,
            "model_id": self.model_id,
            **({"reason": self.reason} if self.reason else {}),
        }


@dataclass(frozen=True)
class PriceOverride:
    """A stored price rule. Exactly one of ``prices``, ``discount_percent``, ``multiplier`` is set."""

    id: int
    model_pattern: str
    provider: str | None = None
    match: str = "exact"  # exact | glob
    service_tier: str | None = None
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    prices: dict[str, Decimal | TieredPrices] | None = None
    discount_percent: Decimal | None = None
    multiplier: Decimal | None = None
    note: str | None = None

    @property
    def kind(self) -> str:
        if self.prices is not None:
            return "price"
        return "discount" if self.discount_percent is not None else "multiplier"

    def matches_model(self, provider: str, model: str) -> bool:
        if self.provider is not None and self.provider != provider:
            return False
        if self.match == "glob":
            return fnmatch.fnmatchcase(model.lower(), self.model_pattern.lower())
        return model.lower() == self.model_pattern.lower()

    def active(self, at: datetime) -> bool:
        if self.effective_from is not None and at < self.effective_from:
            return False
        return not (self.effective_to is not None and at >= self.effective_to)

    def specificity(self) -> tuple[bool, bool, bool, datetime, int]:
        """Sort key: a rule naming the tier, then an exact model, then a named provider win."""
        start = self.effective_from or datetime(1970, 1, 1, tzinfo=UTC)
        return (self.service_tier is not None, self.match == "exact", self.provider is not None, start, self.id)


def parse_unit_prices(raw: dict[str, Any]) -> dict[str, Decimal | TieredPrices]:
    """Validate ``{"input_mtok": "2.5", "output_mtok": {"base": "10", "tiers": [...]}}``."""
    if not raw:
        raise InvalidInput("prices: give at least one unit price, e.g. input_mtok=2.5")
    out: dict[str, Decimal | TieredPrices] = {}
    for key, value in raw.items():
        try:
            REGISTRY.unit_for_price_key(key)
        except KeyError:
            known = ", ".join(sorted(u.price_key for u in REGISTRY.units.values())[:12])
            raise InvalidInput(f"prices.{key}: unknown price key (e.g. {known}, ...)") from None
        if isinstance(value, dict):
            try:
                tiers = [Tier(start=int(t["start"]), price=_price(t["price"], key)) for t in value.get("tiers", [])]
                out[key] = TieredPrices(base=_price(value["base"], key), tiers=tiers)
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidInput(f"prices.{key}: tiered price needs base and tiers[start, price] ({exc})") from None
        else:
            out[key] = _price(value, key)
    return out


def _price(value: Any, key: str) -> Decimal:
    if isinstance(value, float):
        value = repr(value)
    try:
        price = Decimal(str(value))
    except Exception:
        raise InvalidInput(f"prices.{key}: {value!r} is not a decimal number") from None
    if not price.is_finite() or price < 0:
        raise InvalidInput(f"prices.{key}: must be a non-negative number, got {value!r}")
    return price


def event_usage(event: UsageEvent) -> dict[str, int]:
    """The event's counts under genai-prices usage keys (our convention is theirs)."""
    usage = {
        "input_tokens": event.input_tokens,
        "output_tokens": event.output_tokens,
        "cache_read_tokens": event.cache_read_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "output_reasoning_tokens": event.reasoning_tokens,
    }
    one_hour = event.cache_write_1h_tokens or 0
    # Writes not reported as one-hour are five-minute writes (the default TTL everywhere).
    usage["cache_write_1h_tokens"] = one_hour
    usage["cache_write_5m_tokens"] = event.cache_write_tokens - one_hour
    for name, value in event.extra_units().items():
        if name != "cache_write_1h_tokens":
            usage[name] = value
    return usage


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Resolved unit prices for one model at one moment, ready to price many events fast."""

    units: tuple[tuple[UnitDef, Decimal | TieredPrices, str], ...]
    descendants: tuple[tuple[int, ...], ...]
    factor: Decimal
    source: str
    version: str
    provider: str
    model_id: str
    has_tiers: bool = False
    #: nano-USD per unit for flat prices as exact (numerator, denominator) integers, so the hot
    #: path rounds with integer arithmetic; tiered prices are resolved per event.
    nano_rates: tuple[tuple[int, int], ...] = ()

    @classmethod
    def build(
        cls, model_price: ModelPrice, *, factor: Decimal, source: str, version: str, provider: str, model_id: str
    ) -> PriceTable:
        priced = [
            (REGISTRY.unit_for_price_key(key), value)
            for key, value in model_price.__dict__.items()
            if not key.startswith("_") and value is not None and key in REGISTRY._all_price_keys  # noqa: SLF001
        ]
        # Most specific first, the order genai-prices decomposes in.
        priced.sort(key=lambda item: (-len(item[0].dimensions), item[0].usage_key))
        units = tuple((unit, price, _bucket(unit)) for unit, price in priced)
        descendants = tuple(
            tuple(
                j
                for j, (other, _, _) in enumerate(units)
                if j != i and unit.dimensions.items() <= other.dimensions.items()
            )
            for i, (unit, _, _) in enumerate(units)
        )
        has_tiers = any(isinstance(price, TieredPrices) for _, price, _ in units)
        nano_rates = tuple(
            (0, 1) if isinstance(price, TieredPrices) else _ratio(price * factor * NANOS_PER_USD, unit.per)
            for unit, price, _ in units
        )
        return cls(units, descendants, factor, source, version, provider, model_id, has_tiers, nano_rates)

    def leaves(self, usage: dict[str, int]) -> list[int]:
        """Billable count of each unit: a unit's usage minus its more specific priced parts."""
        leaves: list[int] = [0] * len(self.units)
        for i, (unit, _, _) in enumerate(self.units):
            if unit.usage_key == "requests":
                leaves[i] = 1
                continue
            leaf = usage.get(unit.usage_key, 0)
            for j in self.descendants[i]:
                leaf -= leaves[j]
            if leaf < 0:
                raise InvalidInput(f"usage does not add up for {unit.usage_key}: its parts exceed it by {-leaf}")
            leaves[i] = leaf
        return leaves

    def rate(self, index: int, total_input: int) -> Decimal:
        """The unit price (before ``factor``) that applies at this request's input size."""
        price = self.units[index][1]
        if not isinstance(price, TieredPrices):
            return price
        for tier in reversed(price.tiers):
            if total_input > tier.start:  # the whole request moves to the tier; boundary exclusive
                return tier.price
        return price.base

    def price(self, usage: dict[str, int]) -> Cost:
        leaves = self.leaves(usage)
        total_input = usage.get("input_tokens", 0)
        components: dict[str, int] = {}
        buckets = [0, 0, 0, 0, 0]
        for i, ((unit, price, bucket), count) in enumerate(zip(self.units, leaves, strict=True)):
            if not count:
                continue
            if isinstance(price, TieredPrices):
                numerator, denominator = _ratio(self.rate(i, total_input) * self.factor * NANOS_PER_USD, unit.per)
            else:
                numerator, denominator = self.nano_rates[i]
            nanos = _round_half_even(count * numerator, denominator)
            components[unit.price_key] = nanos
            buckets[_BUCKET_INDEX[bucket]] += nanos
        return Cost(
            total_nanos=sum(buckets),
            components=components,
            buckets=tuple(buckets),  # type: ignore[arg-type]
            priced=True,
            source=self.source,
            version=self.version,
            provider=self.provider,
            model_id=self.model_id,
        )


def _ratio(value: Decimal, per: int) -> tuple[int, int]:
    """``value / per`` as an exact integer fraction."""
    numerator, denominator = value.as_integer_ratio()
    return numerator, denominator * per


def _round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-even, in integers (exact, and faster than Decimal)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


@dataclass(slots=True)
class _Entry:
    """What a (provider, model, tier) resolves to, with its price tables by moment."""

    provider: str
    catalog: tuple[Provider, ModelInfo, bool] | str
    candidates: tuple[PriceOverride, ...]
    timed: bool
    tables: dict[Any, PriceTable | Cost]


class Pricer:
    """Prices events against the catalog and a set of overrides. Thread-safe; caches price tables.

    ``overrides`` is replaced wholesale by :meth:`set_overrides` when the stored rules change.
    """

    def __init__(self, overrides: Iterable[PriceOverride] = ()) -> None:
        self._lock = threading.Lock()
        self._catalog: dict[tuple[str | None, str], tuple[Provider, ModelInfo, bool] | str] = {}
        self.set_overrides(overrides)

    def set_overrides(self, overrides: Iterable[PriceOverride]) -> None:
        with self._lock:
            self._overrides = tuple(overrides)
            self._entries: dict[tuple[str | None, str, str], _Entry] = {}

    @property
    def overrides(self) -> Sequence[PriceOverride]:
        return self._overrides

    # -- lookups -----------------------------------------------------------------------------

    def catalog_model(self, provider: str | None, model: str) -> tuple[Provider, ModelInfo, bool] | str:
        """(provider, model info, has time-of-day prices) from genai-prices, or the reason it has none."""
        key = (provider, model)
        found = self._catalog.get(key)
        if found is None:
            snapshot = data_snapshot.get_snapshot()
            try:
                prov, info = snapshot.find_provider_model(model, None, provider, None)
            except LookupError as exc:
                found = f"{exc} in {CATALOG_VERSION}"
            else:
                conditional = info.prices if isinstance(info.prices, list) else []
                timed = any(isinstance(c.constraint, TimeOfDateConstraint) for c in conditional)
                found = (prov, info, timed)
            self._catalog[key] = found
        return found

    def price(self, event: UsageEvent) -> Cost:
        """The exact cost of ``event``; never raises for an unknown model (returns unpriced)."""
        if event.cost_usd is not None:
            nanos = usd_to_nanos(event.cost_usd)
            return Cost(
                nanos,
                {"line_item": nanos},
                (0, 0, 0, 0, nanos),
                True,
                "line-item",
                "cost_usd as reported",
                event.provider or "unknown",
                event.model,
            )
        table = self.table_for(event.provider, event.model or "", event.service_tier, event.timestamp)
        if isinstance(table, Cost):
            return table
        return table.price(event_usage(event))

    def table_for(self, provider: str | None, model: str, tier: str, at: datetime) -> PriceTable | Cost:
        """The price table for a model at a moment, or an unpriced :class:`Cost` saying why."""
        entry = self._entries.get((provider, model, tier))
        if entry is None:
            entry = self._entry(provider, model, tier)
        # Catalog prices change by UTC date (or minute, for time-of-day prices); overrides by instant.
        moment: date | datetime = at.replace(second=0, microsecond=0) if entry.timed else at.date()
        key: Any = moment
        if entry.candidates:
            key = (moment, tuple(o.id for o in entry.candidates if o.active(at)))
        table = entry.tables.get(key)
        if table is None:
            active = [o for o in entry.candidates if o.active(at)]
            table = self._resolve(entry.provider, model, tier, at, entry.catalog, active)
            with self._lock:
                entry.tables[key] = table
        return table

    def _entry(self, provider: str | None, model: str, tier: str) -> _Entry:
        catalog = self.catalog_model(provider, model)
        provider_id = provider or (catalog[0].id if not isinstance(catalog, str) else "unknown")
        candidates = tuple(
            o
            for o in self._overrides
            if o.matches_model(provider_id, model) and (o.service_tier is None or o.service_tier == tier)
        )
        timed = not isinstance(catalog, str) and catalog[2]
        entry = _Entry(provider_id, catalog, candidates, timed, {})
        with self._lock:
            self._entries[(provider, model, tier)] = entry
        return entry

    def _resolve(
        self,
        provider: str,
        model: str,
        tier: str,
        at: datetime,
        catalog: tuple[Provider, ModelInfo, bool] | str,
        overrides: list[PriceOverride],
    ) -> PriceTable | Cost:
        def best(kind: str) -> PriceOverride | None:
            found = [o for o in overrides if o.kind == kind]
            return max(found, key=PriceOverride.specificity) if found else None

        price_rule, discount, multiplier = best("price"), best("discount"), best("multiplier")
        factor = Decimal(1)
        notes = []
        if price_rule is not None:
            assert price_rule.prices is not None
            model_price = ModelPrice(**price_rule.prices)
            # A price override states the tier's price only when it names the tier.
            tier_priced = price_rule.service_tier == tier or tier == "standard"
            source, version, model_id = "override", f"override #{price_rule.id}", model
        elif isinstance(catalog, str):
            return Cost(
                0,
                {},
                (0, 0, 0, 0, 0),
                False,
                "unpriced",
                CATALOG_VERSION,
                provider,
                None,
                reason=f"{catalog}; add one with `fleetledger pricing set`",
            )
        else:
            _, info, _ = catalog
            context = _TIER_CONTEXT.get(tier)
            model_price = info.get_prices(at, context)
            tier_priced = context is None or any(
                all(context.get(k) == v for k, v in variant.when.items())
                and (variant.constraint is None or variant.constraint.active(at))
                for variant in info.price_variants or ()
            )
            source, version, model_id = "genai-prices", CATALOG_VERSION, info.id
        if not tier_priced and multiplier is not None and multiplier.multiplier is not None:
            factor *= multiplier.multiplier
            notes.append(f"tier x{multiplier.multiplier} (#{multiplier.id})")
        if discount is not None and discount.discount_percent is not None:
            factor *= (Decimal(100) - discount.discount_percent) / Decimal(100)
            notes.append(f"-{discount.discount_percent}% (#{discount.id})")
        if notes:
            version = f"{version}; " + "; ".join(notes)
        return PriceTable.build(
            model_price, factor=factor, source=source, version=version, provider=provider, model_id=model_id
        )
