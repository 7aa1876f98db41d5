"""Import prices from LiteLLM's price map and from our own price lists (negotiated rates).

**Why this exists.** genai-prices is the curated default catalog; LiteLLM's
``model_prices_and_context_window.json`` knows many more model names (regional deployments,
self-hosted fine-tunes, fresh releases). Importing it fills the gaps without replacing the catalog:

* ``import_litellm(..., only_missing=True)`` (the default) writes overrides only for models the
  catalog does not know, so a model genai-prices prices keeps its curated, time-aware prices
  (historic prices, tiers, service tiers). Pass ``only_missing=False`` to let LiteLLM win for every
  model it lists, which you rarely want; :func:`fleetledger.pricing.diff.diff_prices` shows where the
  two disagree first.
* A price override a person stored (any note other than :data:`IMPORT_NOTE`) that covers the model
  is never replaced by an import. Re-importing the same file writes nothing (identical overrides are
  recognised), and a changed LiteLLM price is written as a new override that supersedes the old.

**Exactness.** LiteLLM states prices per token as JSON numbers (``2.5e-06``). Read as floats they
become ``2.4999999999999998e-06``; so the file is parsed with ``json.loads(parse_float=Decimal)`` and
converted with :meth:`Decimal.scaleb` (a shift of the exponent, no rounding at all), giving exactly
``Decimal("2.5")`` per million tokens. No float is ever involved.

Field mapping (LiteLLM -> genai-prices price key):

=============================================  =========================
``input_cost_per_token``                       ``input_mtok``
``output_cost_per_token``                      ``output_mtok``
``cache_read_input_token_cost``                ``cache_read_mtok``
``cache_creation_input_token_cost``            ``cache_write_mtok`` (5-minute writes)
``cache_creation_input_token_cost_above_1hr``  ``cache_write_1h_mtok``
``output_cost_per_reasoning_token``            ``output_reasoning_mtok``
``input_cost_per_audio_token``                 ``input_audio_mtok``
``output_cost_per_audio_token``                ``output_audio_mtok``
``cache_read_input_audio_token_cost``          ``cache_audio_read_mtok``
``input_cost_per_image_token``                 ``input_image_mtok``
``output_cost_per_image_token``                ``output_image_mtok``
``search_context_cost_per_query`` (medium)     ``web_searches_kcount``
``input_cost_per_query`` (rerank models)       ``rerank_searches_kcount``
``<any of the above>_above_<N>k_tokens``       a tier starting at N*1000 input tokens
``input/output_cost_per_token_batches``        the ``batch`` service-tier override
=============================================  =========================

Other cost fields (per image, per second, per pixel, per character, priority/flex tiers, LiteLLM's
range-based ``tiered_pricing``) are not token prices; they are listed in
:attr:`LiteLLMPrice.unmapped`. Per-character prices in particular are an *alternative* billing basis
for the same request, so importing them next to token prices would charge twice. An entry with none
of the mapped prices (image or audio models priced per image or per second) is *skipped* with its
reason; so is one whose prices are all zero (LiteLLM lists free and self-hosted models at 0, and an
unpriced model must never silently cost $0: set your own rate with a price list). A malformed entry
is *rejected* with its reason and the rest import.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from genai_prices.types import Tier, TieredPrices

from fleetledger.core.errors import InvalidInput
from fleetledger.core.usage import ServiceTier, normalize_provider
from fleetledger.pricing.engine import REGISTRY, PriceOverride, Pricer, parse_unit_prices
from fleetledger.pricing.overrides import add_override, load_overrides, prices_to_json
from fleetledger.storage.store import Store

__all__ = [
    "IMPORT_NOTE",
    "LiteLLMPrice",
    "LiteLLMImport",
    "PriceList",
    "litellm_provider_id",
    "load_litellm_prices",
    "import_litellm",
    "load_price_list",
    "import_price_list",
]

#: The note on every override written by :func:`import_litellm`; overrides with any other note are
#: treated as set by a person and never replaced by an import.
IMPORT_NOTE = "imported from LiteLLM price map"

#: LiteLLM field -> (genai-prices price key, power of ten from LiteLLM's unit to the key's unit).
_PRICE_FIELDS: dict[str, tuple[str, int]] = {
    "input_cost_per_token": ("input_mtok", 6),
    "output_cost_per_token": ("output_mtok", 6),
    "cache_read_input_token_cost": ("cache_read_mtok", 6),
    "cache_creation_input_token_cost": ("cache_write_mtok", 6),
    "cache_creation_input_token_cost_above_1hr": ("cache_write_1h_mtok", 6),
    "output_cost_per_reasoning_token": ("output_reasoning_mtok", 6),
    "input_cost_per_audio_token": ("input_audio_mtok", 6),
    "output_cost_per_audio_token": ("output_audio_mtok", 6),
    "cache_read_input_audio_token_cost": ("cache_audio_read_mtok", 6),
    "input_cost_per_image_token": ("input_image_mtok", 6),
    "output_cost_per_image_token": ("output_image_mtok", 6),
    "search_context_cost_per_query": ("web_searches_kcount", 3),
}
#: Fields mapped only for some modes.
_MODE_FIELDS: dict[str, dict[str, tuple[str, int]]] = {
    "rerank": {"input_cost_per_query": ("rerank_searches_kcount", 3)},
}
_BATCH_FIELDS: dict[str, str] = {
    "input_cost_per_token_batches": "input_mtok",
    "output_cost_per_token_batches": "output_mtok",
}
_TIER_FIELD = re.compile(r"^(?P<base>.+)_above_(?P<thousands>\d+)k_tokens$")
_SEARCH_SIZES = ("search_context_size_medium", "search_context_size_low", "search_context_size_high")

#: LiteLLM ``litellm_provider`` -> our provider id (see also :data:`_PROVIDER_FAMILIES`).
_PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "chatgpt": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
    "google": "google",
    "azure": "azure",
    "azure_ai": "azure",
    "azure_text": "azure",
    "mistral": "mistral",
    "codestral": "mistral",
    "text-completion-codestral": "mistral",
    "deepseek": "deepseek",
    "groq": "groq",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "xai": "x-ai",
    "perplexity": "perplexity",
    "openrouter": "openrouter",
    # LiteLLM's OpenAI-compatible vLLM server; fleetledger records vLLM-served calls as "vllm".
    "hosted_vllm": "vllm",
    "vllm": "vllm",
}
#: Prefixes naming a family of LiteLLM providers (``vertex_ai-language-models``, ``bedrock_converse``).
_PROVIDER_FAMILIES: tuple[tuple[str, str], ...] = (
    ("vertex_ai", "google"),
    ("bedrock", "aws"),
    ("sagemaker", "aws"),
    ("fireworks_ai", "fireworks"),
    ("together_ai", "together"),
    ("azure", "azure"),
)


def litellm_provider_id(name: str) -> str:
    """Our provider id for a LiteLLM ``litellm_provider`` (unknown ones are kept, lowercased)."""
    key = name.strip().lower()
    if key in _PROVIDERS:
        return _PROVIDERS[key]
    for prefix, provider in _PROVIDER_FAMILIES:
        if key.startswith(prefix):
            return provider
    return normalize_provider(key)


@dataclass(frozen=True)
class LiteLLMPrice:
    """One model's prices from LiteLLM, converted to genai-prices units.

    ``batch_prices``, when LiteLLM lists batch prices, holds the complete batch price set: the
    standard prices with LiteLLM's batch input/output prices in place (the way genai-prices resolves
    its own batch variants).
    """

    provider: str
    model: str
    prices: dict[str, Decimal | TieredPrices]
    batch_prices: dict[str, Decimal | TieredPrices] | None = None
    mode: str | None = None
    #: The key in LiteLLM's file (``bedrock/anthropic.claude-...``); ``model`` has the prefix stripped.
    key: str = ""
    #: Cost fields of the entry that have no genai-prices equivalent and were not imported.
    unmapped: tuple[str, ...] = ()


@dataclass
class LiteLLMImport:
    """What :func:`load_litellm_prices` read: importable prices, skipped and rejected entries."""

    prices: list[LiteLLMPrice] = field(default_factory=list)
    #: (LiteLLM key, reason) for entries that are fine but have nothing to import.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: (LiteLLM key, reason) for malformed entries.
    rejected: list[tuple[str, str]] = field(default_factory=list)


class _Rejected(Exception):
    pass


# -- reading LiteLLM's file ------------------------------------------------------------------------


def _read_text(source: str | os.PathLike[str] | bytes) -> str:
    if isinstance(source, bytes):
        return source.decode("utf-8-sig")
    if isinstance(source, os.PathLike):
        return Path(source).read_text(encoding="utf-8-sig")
    if source.lstrip().startswith(("{", "[")):
        return source
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"LiteLLM price map {source!r}: cannot read it ({exc.strerror})") from None


def _number(value: Any, field_name: str) -> Decimal:
    """A non-negative, finite Decimal from a JSON value; never via float arithmetic."""
    if isinstance(value, bool):
        raise _Rejected(f"{field_name}: {value!r} is not a number")
    if isinstance(value, float):  # only when handed an already-parsed mapping: its shortest repr
        value = repr(value)
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise _Rejected(f"{field_name}: {value!r} is not a number") from None
    else:
        raise _Rejected(f"{field_name}: {type(value).__name__} {value!r} is not a number")
    if not number.is_finite():
        raise _Rejected(f"{field_name}: {value!r} is not a finite number")
    if number < 0:
        raise _Rejected(f"{field_name}: {value} is negative")
    return number


def _scale(value: Decimal, power: int) -> Decimal:
    """``value * 10**power`` exactly, without exponent notation (``2.5E-6`` -> ``2.5``)."""
    scaled = value.scaleb(power).normalize()
    if scaled.as_tuple().exponent > 0:  # type: ignore[operator]
        scaled = scaled.quantize(Decimal(1))
    return scaled


def _search_price(value: Any, field_name: str) -> Decimal | None:
    if not isinstance(value, Mapping):
        return _number(value, field_name)
    for size in _SEARCH_SIZES:
        if size in value:
            return _number(value[size], f"{field_name}.{size}")
    return None


def _convert(key: str, entry: Any) -> LiteLLMPrice | str:
    """One entry -> a price, or the reason it has nothing to import; raises _Rejected if malformed."""
    if not isinstance(entry, Mapping):
        raise _Rejected(f"expected a JSON object, got {type(entry).__name__}")
    raw_provider = entry.get("litellm_provider")
    if raw_provider is not None and (not isinstance(raw_provider, str) or not raw_provider.strip()):
        raise _Rejected(f"litellm_provider: {raw_provider!r} is not a provider name")
    prefix, _, rest = key.partition("/")
    if raw_provider is None:
        if not rest:
            raise _Rejected("litellm_provider: missing (and the key has no provider/ prefix)")
        raw_provider = prefix
    provider = litellm_provider_id(raw_provider)
    model = rest if rest and litellm_provider_id(prefix) == provider else key
    if not model.strip():
        raise _Rejected("the model name is empty")
    mode = entry.get("mode")
    mode = mode if isinstance(mode, str) else None

    fields = dict(_PRICE_FIELDS)
    fields.update(_MODE_FIELDS.get(mode or "", {}))
    flat: dict[str, Decimal] = {}
    tiers: dict[str, list[Tier]] = {}
    batch: dict[str, Decimal] = {}
    unmapped: list[str] = []
    for name, value in entry.items():
        if name in fields:
            price_key, power = fields[name]
            number = _search_price(value, name) if name == "search_context_cost_per_query" else _number(value, name)
            if number is None:
                unmapped.append(name)
                continue
            flat[price_key] = _scale(number, power)
        elif name in _BATCH_FIELDS:
            batch[_BATCH_FIELDS[name]] = _scale(_number(value, name), 6)
        elif (match := _TIER_FIELD.match(name)) and match.group("base") in fields:
            price_key, power = fields[match.group("base")]
            start = int(match.group("thousands")) * 1000
            tiers.setdefault(price_key, []).append(Tier(start=start, price=_scale(_number(value, name), power)))
        elif "cost" in name or name == "tiered_pricing":
            unmapped.append(name)

    prices: dict[str, Decimal | TieredPrices] = {}
    for price_key, base in flat.items():
        prices[price_key] = TieredPrices(base=base, tiers=tiers.pop(price_key)) if price_key in tiers else base
    if tiers:
        names = ", ".join(sorted(tiers))
        raise _Rejected(f"long-context prices for {names} without the base price they raise")
    if not prices:
        costs = ", ".join(sorted(unmapped)) or "no cost fields"
        return f"no token prices ({mode or 'unknown'} mode: {costs})"
    if all(_is_zero(p) for p in prices.values()) and all(not p for p in batch.values()):
        return "all prices are 0 (LiteLLM lists free and self-hosted models at 0); set your own with a price list"
    batch_prices: dict[str, Decimal | TieredPrices] | None = {**prices, **batch} if batch else None
    return LiteLLMPrice(
        provider=provider,
        model=model,
        prices=prices,
        batch_prices=batch_prices,
        mode=mode,
        key=key,
        unmapped=tuple(sorted(unmapped)),
    )


def _is_zero(price: Decimal | TieredPrices) -> bool:
    if isinstance(price, TieredPrices):
        return not price.base and all(not t.price for t in price.tiers)
    return not price


def load_litellm_prices(path_or_text: str | os.PathLike[str] | bytes | Mapping[str, Any]) -> LiteLLMImport:
    """Read LiteLLM's ``model_prices_and_context_window.json`` (a path, its text, or its bytes).

    Prices stay exact (``parse_float=Decimal``). Duplicates (``gemini-1.5-pro`` and
    ``gemini/gemini-1.5-pro`` are the same Google model) keep the entry without a provider prefix,
    else the first, and report the other as skipped.
    """
    if isinstance(path_or_text, Mapping):
        data: Any = path_or_text
    else:
        text = _read_text(path_or_text)
        try:
            data = json.loads(text, parse_float=Decimal, parse_constant=lambda name: name)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"LiteLLM price map: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
    if not isinstance(data, Mapping):
        raise InvalidInput("LiteLLM price map: expected a JSON object of model name -> prices")

    result = LiteLLMImport()
    kept: dict[tuple[str, str], int] = {}
    for key, entry in data.items():
        if key == "sample_spec":
            continue  # LiteLLM's documentation of the fields, not a model
        try:
            converted = _convert(str(key), entry)
        except _Rejected as exc:
            result.rejected.append((str(key), str(exc)))
            continue
        if isinstance(converted, str):
            result.skipped.append((str(key), converted))
            continue
        ident = (converted.provider, converted.model.lower())
        index = kept.get(ident)
        if index is None:
            kept[ident] = len(result.prices)
            result.prices.append(converted)
            continue
        first = result.prices[index]
        winner, loser = first, converted
        if "/" in first.key and "/" not in converted.key:
            winner, loser = converted, first
            result.prices[index] = converted
        same = "the same" if _same_prices(winner.prices, loser.prices) else "different"
        result.skipped.append(
            (
                loser.key,
                f"duplicate of {winner.key} ({winner.provider}/{winner.model}, {same} prices); kept {winner.key}",
            )
        )
    return result


_Prices = Mapping[str, Decimal | TieredPrices]


def looks_like_litellm(path: str | os.PathLike[str]) -> bool:
    """A JSON object whose entries carry LiteLLM's ``*_cost_per_token`` fields."""
    try:
        data = json.loads(_read_text(path), parse_float=Decimal)
    except (ValueError, OSError):
        return False
    if not isinstance(data, dict):
        return False
    return any(
        isinstance(entry, dict) and any(str(k).endswith("_cost_per_token") for k in entry) for entry in data.values()
    )


def _same_prices(a: _Prices | None, b: _Prices | None) -> bool:
    if a is None or b is None:
        return a is b
    return dict(a) == dict(b)


# -- importing into the store ----------------------------------------------------------------------


def import_litellm(
    store: Store,
    imported: LiteLLMImport,
    *,
    only_missing: bool = True,
    pricer: Pricer | None = None,
    now: datetime,
    created_by: str | None = None,
) -> dict[str, int]:
    """Store LiteLLM prices as exact-match price overrides.

    With ``only_missing`` (the default) only models genai-prices does not know are imported, so the
    curated catalog stays the price of every model it has. Batch prices become a second override
    for ``service_tier="batch"``. Overrides a person stored for a model are kept; identical
    overrides are not written twice.

    Returns counts per model: ``imported`` (one or more overrides written), ``already_in_catalog``,
    ``unchanged`` (identical overrides already stored), ``kept_existing`` (a person's override
    covers it), ``skipped`` and ``rejected`` (from the file), and ``overrides_written``.
    """
    pricer = pricer or Pricer()
    existing = [o for o in load_overrides(store) if o.kind == "price"]
    counts = {
        "imported": 0,
        "already_in_catalog": 0,
        "unchanged": 0,
        "kept_existing": 0,
        "skipped": len(imported.skipped),
        "rejected": len(imported.rejected),
        "overrides_written": 0,
    }
    for item in imported.prices:
        if only_missing and not isinstance(pricer.catalog_model(item.provider, item.model), str):
            counts["already_in_catalog"] += 1
            continue
        outcome = "unchanged"
        wrote_standard = False
        for tier, prices in ((None, item.prices), ("batch", item.batch_prices)):
            if prices is None:
                continue
            rules = [
                o
                for o in existing
                if o.matches_model(item.provider, item.model) and o.service_tier in (None, tier) and o.active(now)
            ]
            if any(o.note != IMPORT_NOTE for o in rules):
                outcome = "kept_existing" if outcome == "unchanged" else outcome
                continue
            ours = [
                o
                for o in rules
                if o.service_tier == tier and o.match == "exact" and o.effective_from is None and o.effective_to is None
            ]
            current = max(ours, key=PriceOverride.specificity) if ours else None
            # A tier-named override must stay newer than the standard one it refines (the engine
            # prefers the newest of equally specific overrides), so it is rewritten with it.
            if current is not None and _same_prices(current.prices, prices) and not wrote_standard:
                continue
            add_override(
                store,
                provider=item.provider,
                model_pattern=item.model,
                match="exact",
                service_tier=tier,
                prices=prices_to_json(prices),
                note=IMPORT_NOTE,
                created_by=created_by,
                now=now,
            )
            counts["overrides_written"] += 1
            wrote_standard = wrote_standard or tier is None
            outcome = "imported"
        counts[outcome] += 1
    return counts


# -- our own price lists ---------------------------------------------------------------------------

_LIST_FIELDS = {
    "provider",
    "model",
    "match",
    "service_tier",
    "effective_from",
    "effective_to",
    "discount_percent",
    "multiplier",
    "note",
}
_ALIASES = {"model_pattern": "model"}


@dataclass
class PriceList:
    """A parsed price list: ``rows`` are :func:`add_override` keyword arguments (without ``now``)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    #: (row number, reason); CSV rows are numbered by file line (the header is line 1), JSON
    #: objects from 1.
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _moment(value: Any, field_name: str) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    else:
        text = str(value).strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                return datetime(day.year, day.month, day.day, tzinfo=UTC)
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"{field_name}: {text!r} is not a date (2026-01-01) or time (2026-01-01T00:00:00Z)"
            ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidInput(f"{field_name}: {value!r} needs a time zone, e.g. {value}Z")
    return parsed.astimezone(UTC)


def _bounded(value: Any, field_name: str) -> str:
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(f"{field_name}: {value!r} is not a number") from None
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(100):
        raise InvalidInput(f"{field_name}: must be between 0 and 100, got {value}")
    return f"{number:f}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _list_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    prices: dict[str, Any] = {}
    for name, value in raw.items():
        column = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if column == "prices" and isinstance(value, Mapping):
            prices.update(value)
        elif column in _LIST_FIELDS:
            row[column] = value
        elif column in REGISTRY._all_price_keys:  # noqa: SLF001
            prices[column] = value.strip() if isinstance(value, str) else value
        else:
            raise InvalidInput(
                f"{name}: unknown column (use provider, model, a price key such as input_mtok, "
                "service_tier, effective_from, effective_to, discount_percent, note)"
            )
    model = _text(row.get("model"))
    if not model:
        raise InvalidInput("model: required")
    kinds = [
        k
        for k, present in (
            ("prices", bool(prices)),
            ("discount_percent", "discount_percent" in row),
            ("multiplier", "multiplier" in row),
        )
        if present
    ]
    if len(kinds) != 1:
        raise InvalidInput(
            "give exactly one of: unit prices (input_mtok, output_mtok, ...), discount_percent, "
            f"multiplier (got {', '.join(kinds) or 'none'})"
        )
    out: dict[str, Any] = {
        "model_pattern": model,
        "provider": None,
        "match": None,
        "service_tier": None,
        "effective_from": None,
        "effective_to": None,
        "prices": None,
        "discount_percent": None,
        "multiplier": None,
        "note": _text(row.get("note")),
    }
    provider = _text(row.get("provider"))
    out["provider"] = normalize_provider(provider) if provider else None
    match = _text(row.get("match"))
    if match is not None:
        match = match.lower()
        if match not in ("exact", "glob"):
            raise InvalidInput(f"match: {match!r} must be exact or glob")
        out["match"] = match
    tier = _text(row.get("service_tier"))
    if tier is not None:
        try:
            out["service_tier"] = ServiceTier(tier.lower()).value
        except ValueError:
            raise InvalidInput(f"service_tier: {tier!r} must be standard, batch, flex or priority") from None
    out["effective_from"] = _moment(row.get("effective_from"), "effective_from")
    out["effective_to"] = _moment(row.get("effective_to"), "effective_to")
    if out["effective_from"] and out["effective_to"] and out["effective_to"] <= out["effective_from"]:
        raise InvalidInput("effective_to: must be after effective_from")
    if kinds == ["prices"]:
        out["prices"] = prices_to_json(parse_unit_prices(prices))
    elif kinds == ["discount_percent"]:
        out["discount_percent"] = _bounded(row["discount_percent"], "discount_percent")
    else:
        if out["service_tier"] is None:
            raise InvalidInput("multiplier: name the service_tier it applies to (batch, flex, priority)")
        out["multiplier"] = _bounded(row["multiplier"], "multiplier")
    return out


def _list_records(text: str, json_format: bool) -> Iterable[tuple[int, Any]]:
    if json_format:
        try:
            data = json.loads(text, parse_float=Decimal, parse_constant=lambda name: name)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"price list: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        if isinstance(data, Mapping) and isinstance(data.get("prices"), list):
            data = data["prices"]
        if not isinstance(data, list):
            raise InvalidInput('price list: expected a JSON array of objects (or {"prices": [...]})')
        return enumerate(data, start=1)
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise InvalidInput("price list: the CSV file is empty (it needs a header row: provider,model,input_mtok,...)")
    records: list[tuple[int, Any]] = []
    for record in reader:
        extra = record.pop(None, None)  # type: ignore[call-overload]
        if extra and any(str(cell).strip() for cell in extra):
            records.append((reader.line_num, ValueError(f"{len(extra)} more cells than the header has columns")))
        else:
            records.append((reader.line_num, record))
    return records


def load_price_list(path: str | os.PathLike[str]) -> PriceList:
    """Read a CSV or JSON price list of negotiated rates.

    One row (CSV) or object (JSON) per override: ``provider``, ``model``, any genai-prices price key
    (``input_mtok``, ``output_mtok``, ``cache_read_mtok``, ``cache_write_mtok``, ... as decimal
    strings, per million tokens), or ``discount_percent``, or ``multiplier`` with ``service_tier``;
    optionally ``service_tier``, ``match``, ``effective_from``, ``effective_to`` (a date is midnight
    UTC; a time needs its zone) and ``note``. Good rows are returned ready for :func:`add_override`,
    bad ones collected with their row number and the reason.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"price list {str(path)!r}: cannot read it ({exc.strerror})") from None
    suffix = file.suffix.lower()
    json_format = suffix == ".json" or (suffix != ".csv" and text.lstrip().startswith(("[", "{")))
    result = PriceList()
    for number, record in _list_records(text, json_format):
        if isinstance(record, Exception):
            result.rejected.append((number, str(record)))
            continue
        if not isinstance(record, Mapping):
            result.rejected.append((number, f"expected an object, got {type(record).__name__}"))
            continue
        try:
            result.rows.append(_list_row(record))
        except InvalidInput as exc:
            result.rejected.append((number, exc.message))
    return result


def _same_override(existing: PriceOverride, row: Mapping[str, Any]) -> bool:
    match = row["match"] or ("glob" if any(ch in row["model_pattern"] for ch in "*?[") else "exact")
    prices = parse_unit_prices(row["prices"]) if row["prices"] else None
    discount = Decimal(row["discount_percent"]) if row["discount_percent"] is not None else None
    multiplier = Decimal(row["multiplier"]) if row["multiplier"] is not None else None
    return (
        existing.provider == row["provider"]
        and existing.model_pattern.lower() == row["model_pattern"].lower()
        and existing.match == match
        and existing.service_tier == row["service_tier"]
        and existing.effective_from == row["effective_from"]
        and existing.effective_to == row["effective_to"]
        and _same_prices(existing.prices, prices)
        and existing.discount_percent == discount
        and existing.multiplier == multiplier
    )


def import_price_list(
    store: Store, price_list: PriceList, *, now: datetime, created_by: str | None = None
) -> dict[str, int]:
    """Store a price list's rows as overrides; a row identical to a stored override is not repeated."""
    existing = load_overrides(store)
    counts = {"imported": 0, "unchanged": 0, "rejected": len(price_list.rejected)}
    for row in price_list.rows:
        if any(_same_override(o, row) for o in existing):
            counts["unchanged"] += 1
            continue
        existing.append(add_override(store, **row, created_by=created_by, now=now))
        counts["imported"] += 1
    return counts
