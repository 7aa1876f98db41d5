"""Cost/quality and cost/performance matrices, the pricing table with TCO, and the provider-shift estimate.

The analytics behind dashboard charts 3.7 (model cost/quality matrix), 3.14 (provider
cost-performance matrix), 3.17 (model pricing table with a TCO calculator) and the 3.6 "what if we
moved X% to provider B" estimator. Money is exact: nano-USD integers and ``Decimal`` inside, decimal
strings out; every re-pricing goes through ``ledger.pricer`` (catalog, tiers, overrides).

Quality scores come from the editable catalog of :mod:`.recommendations` (meta ``model_quality``);
:func:`set_model_quality` validates and stores edits. The Pareto frontier minimises cost and
maximises quality (or minimises latency): a point is on it when no other point is at least as good
on both axes and strictly better on one.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from genai_prices import data_snapshot

from fleetledger.analytics.providers import provider_comparison
from fleetledger.analytics.recommendations.engine import DEFAULT_MODEL_QUALITY, SWITCH_PROVIDERS, model_quality
from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.money import format_usd, usd_to_nanos
from fleetledger.core.time import parse_range, to_us
from fleetledger.core.usage import parse_event
from fleetledger.pricing import PriceTable
from fleetledger.storage.query import grouped_costs

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "pareto_frontier",
    "model_family",
    "model_matrix",
    "provider_matrix",
    "pricing_table",
    "tco",
    "provider_shift",
    "set_model_quality",
    "TOKEN_FIELDS",
]

Where = Mapping[str, Sequence[str | None]]
TOKEN_FIELDS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
_PROBE = 10_000  # tokens priced to read a per-1M rate: below every tier threshold, exact at nano-USD
_HUNDRED = Decimal(100)

_FAMILIES = (
    (r"embed", "Embeddings"),
    (r"^(gpt-5)", "GPT-5"),
    (r"^(gpt-4\.1)", "GPT-4.1"),
    (r"^(gpt-4o|chatgpt-4o)", "GPT-4o"),
    (r"^(gpt-4)", "GPT-4"),
    (r"^(gpt-3\.5)", "GPT-3.5"),
    (r"^(o\d)(-|$)", "o-series"),
    (r"claude-(opus|3-opus|3-5-opus)", "Claude Opus"),
    (r"claude-(sonnet|3-5-sonnet|3-7-sonnet|3-sonnet)", "Claude Sonnet"),
    (r"claude-(haiku|3-5-haiku|3-haiku)", "Claude Haiku"),
    (r"claude", "Claude"),
    (r"gemini", "Gemini"),
    (r"llama", "Llama"),
    (r"mistral|mixtral|codestral|ministral", "Mistral"),
    (r"deepseek", "DeepSeek"),
    (r"grok", "Grok"),
    (r"command", "Cohere Command"),
)


def model_family(model: str | None) -> str:
    """A coarse family for colour and filtering: GPT-4o, Claude Sonnet, Gemini, Llama... else Custom."""
    name = (model or "").lower().rsplit("/", 1)[-1]
    for pattern, family in _FAMILIES:
        if re.search(pattern, name):
            return family
    return "Custom"


def pareto_frontier(
    points: Sequence[tuple[Hashable, Decimal | int | float, Decimal | int | float]], *, maximize_y: bool = True
) -> list[Hashable]:
    """Keys of the points no other point dominates, by ascending cost (x is always minimised).

    ``(key, x, y)``: a point is dominated when another has ``x' <= x`` and ``y'`` at least as good
    (``>=`` when maximising y, ``<=`` when minimising), strictly better on one of the two. Points
    equal on both axes are all kept.
    """
    sign = 1 if maximize_y else -1
    ordered = sorted(points, key=lambda p: (p[1], -sign * p[2]))
    frontier: list[Hashable] = []
    best: Any = None
    best_x: Any = None
    for key, x, y in ordered:
        score = sign * y
        if best is None or score > best or (score == best and x == best_x):
            frontier.append(key)
            if best is None or score > best:
                best, best_x = score, x
    return frontier


def _range(ledger: Ledger, since: Any, until: Any) -> tuple[datetime, datetime, int, int]:
    start, end = parse_range(since, until, now=ledger.clock())
    return start, end, to_us(start), to_us(end)


def _quality(catalog: Mapping[str, Any], provider: str | None, model: str | None) -> tuple[str | None, Decimal | None]:
    family, score, _ = _quality_entry(catalog, provider, model)
    return family, score


def _quality_entry(
    catalog: Mapping[str, Any], provider: str | None, model: str | None
) -> tuple[str | None, Decimal | None, str]:
    """The longest catalog family prefixing ``model``; a cloud reseller falls back to any maker's entry."""
    best: tuple[str, Any] | None = None
    lowered = (model or "").lower().rsplit("/", 1)[-1]
    for exact in (True, False):
        for key, info in catalog["families"].items():
            prov, _, family = key.partition("/")
            if exact and prov != provider:
                continue
            if lowered.startswith(family.lower()) and (best is None or len(family) > len(best[0])):
                best = (family, info)
        if best is not None:
            break
    if best is None:
        return None, None, "embedding" if "embed" in lowered else "chat"
    return best[0], Decimal(str(best[1]["score"])), str(best[1].get("kind", "chat"))


def _priced_calls(where: Where | None) -> dict[str, Sequence[str | None]]:
    """Token-priced calls only (line items such as GPU hours have no per-request quality or latency)."""
    scoped: dict[str, Sequence[str | None]] = dict(where or {})
    scoped.setdefault("category", ["llm_inference", "embedding"])
    return scoped


def _per(nanos: int, count: int) -> int | None:
    return None if count <= 0 else (nanos + count // 2) // count if nanos >= 0 else -((-nanos + count // 2) // count)


def model_matrix(
    ledger: Ledger, *, since: Any = "30d", until: Any = None, where: Where | None = None, x: str = "request"
) -> dict[str, Any]:
    """Per provider and model: cost per request and per 1K tokens, quality, volume, family, Pareto flag.

    ``x`` (``request`` or ``1k_tokens``) picks the cost axis the frontier is computed on. Chat and
    embedding models (the catalog's ``kind``) each get their own frontier (``frontiers``; ``frontier``
    is the chat one). Models without a quality score are listed (``quality`` null), off the frontier.
    """
    if x not in ("request", "1k_tokens"):
        raise InvalidInput(f"x: {x!r} must be 'request' or '1k_tokens'")
    start, end, s_us, e_us = _range(ledger, since, until)
    ledger.flush()
    rows = grouped_costs(ledger.store, ["provider", "model"], s_us, e_us, _priced_calls(where))
    catalog = model_quality(ledger)
    models = []
    for row in sorted(rows, key=lambda r: (-int(r.measures["cost_nanos"]), str(r.keys))):
        provider, model = row.keys
        m = row.measures
        requests, cost = int(m["requests"]), int(m["cost_nanos"])
        tokens = int(m["input_tokens"]) + int(m["output_tokens"])
        if requests == 0:
            continue
        family_key, score, kind = _quality_entry(catalog, provider, model)
        per_request = _per(cost, requests)
        per_1k = _per(cost * 1000, tokens)
        latency = float(m.get("latency_ms_sum") or 0) / requests
        models.append(
            {
                "provider": provider,
                "model": model,
                "family": model_family(model),
                "quality_family": family_key,
                "quality": None if score is None else f"{score:f}",
                "kind": kind,
                "requests": requests,
                "tokens": tokens,
                "cost_usd": format_usd(cost),
                "cost_per_request_usd": None if per_request is None else format_usd(per_request),
                "cost_per_1k_tokens_usd": None if per_1k is None else format_usd(per_1k),
                "avg_latency_ms": round(latency, 1) if m.get("latency_ms_sum") else None,
                "_x": per_request if x == "request" else per_1k,
                "_y": score,
            }
        )
    # chat and embedding models answer different needs: each kind has its own frontier
    frontiers = {
        kind: pareto_frontier(
            [
                (i, r["_x"], r["_y"])
                for i, r in enumerate(models)
                if r["kind"] == kind and r["_x"] is not None and r["_y"] is not None
            ]
        )
        for kind in sorted({r["kind"] for r in models})
    }
    frontier = frontiers.get("chat", [])
    on = {i for found in frontiers.values() for i in found}
    for i, item in enumerate(models):
        item["pareto"] = i in on
        del item["_x"], item["_y"]
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "x": x,
        "models": models,
        "frontier": [{"provider": models[int(i)]["provider"], "model": models[int(i)]["model"]} for i in frontier],  # type: ignore[call-overload]
        "frontiers": {
            kind: [{"provider": models[int(i)]["provider"], "model": models[int(i)]["model"]} for i in found]  # type: ignore[call-overload]
            for kind, found in frontiers.items()
        },
    }


def provider_matrix(
    ledger: Ledger, *, since: Any = "30d", until: Any = None, where: Where | None = None, y: str = "p90_latency"
) -> dict[str, Any]:
    """Per provider: cost per request, p90 latency, request-weighted quality, volume, reliability, quadrant.

    ``y`` is ``p90_latency`` (minimised) or ``quality`` (maximised). Quadrants split at the median
    cost and median y: ``optimal`` (cheap and good), ``premium`` (costly and good), ``budget``
    (cheap, slow or weaker), ``avoid`` (costly, slow or weaker).
    """
    if y not in ("p90_latency", "quality"):
        raise InvalidInput(f"y: {y!r} must be 'p90_latency' or 'quality'")
    where = _priced_calls(where)
    compared = provider_comparison(ledger, since=since, until=until, where=where)
    start, end, s_us, e_us = _range(ledger, since, until)
    rows = grouped_costs(ledger.store, ["provider", "model"], s_us, e_us, where)
    catalog = model_quality(ledger)
    weighted: dict[str, list[Decimal]] = {}
    families: dict[str, dict[str, int]] = {}
    for row in rows:
        provider, model = row.keys
        requests = int(row.measures["requests"])
        _, score = _quality(catalog, provider, model)
        fam = families.setdefault(provider, {})
        fam[model_family(model)] = fam.get(model_family(model), 0) + requests
        if score is not None and requests:
            acc = weighted.setdefault(provider, [Decimal(0), Decimal(0)])
            acc[0] += score * requests
            acc[1] += requests
    providers = []
    for p in compared["providers"]:
        name = p["provider"]
        requests = p["requests"]
        if not requests:
            continue
        sums = weighted.get(name)
        quality = (sums[0] / sums[1]).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN) if sums and sums[1] else None
        error = Decimal(p["error_rate_pct"]) if p["error_rate_pct"] is not None else Decimal(0)
        mix = families.get(name, {})
        providers.append(
            {
                "provider": name,
                "requests": requests,
                "cost_usd": p["cost_usd"],
                "cost_per_request_usd": p["cost_per_request_usd"],
                "cost_per_1k_tokens_usd": p["cost_per_1k_tokens_usd"],
                "p90_latency_ms": p["p90_latency_ms"],
                "quality": None if quality is None else f"{quality:f}",
                "error_rate_pct": p["error_rate_pct"],
                "reliability_pct": f"{(_HUNDRED - error):f}",
                "main_family": max(mix.items(), key=lambda kv: (kv[1], kv[0]))[0] if mix else None,
            }
        )

    def y_value(row: dict[str, Any]) -> Decimal | float | None:
        if y == "quality":
            return Decimal(row["quality"]) if row["quality"] is not None else None
        return row["p90_latency_ms"]

    points = [
        (r["provider"], Decimal(r["cost_per_request_usd"]), y_value(r))
        for r in providers
        if r["cost_per_request_usd"] is not None and y_value(r) is not None
    ]
    frontier = pareto_frontier(points, maximize_y=y == "quality")  # type: ignore[arg-type]
    median_x = _median([p[1] for p in points])
    median_y = _median([p[2] for p in points])
    for item in providers:
        item["pareto"] = item["provider"] in frontier
        value = y_value(item)
        if value is None or item["cost_per_request_usd"] is None or median_x is None or median_y is None:
            item["quadrant"] = None
            continue
        cheap = Decimal(item["cost_per_request_usd"]) <= median_x
        good = value >= median_y if y == "quality" else value <= median_y
        item["quadrant"] = {(True, True): "optimal", (False, True): "premium", (True, False): "budget"}.get(
            (cheap, good), "avoid"
        )
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "y": y,
        "providers": providers,
        "frontier": list(frontier),
        "median_cost_per_request_usd": None if median_x is None else f"{median_x:f}",
        "median_y": None if median_y is None else str(median_y),
        "sampled_every": compared["sampled_every"],
    }


def _median(values: Sequence[Any]) -> Any:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    a, b = ordered[middle - 1], ordered[middle]
    return (Decimal(str(a)) + Decimal(str(b))) / 2


# -- the pricing table and TCO ------------------------------------------------------------------


def _price_nanos(ledger: Ledger, provider: str | None, model: str, at: datetime, **tokens: int) -> int | None:
    try:
        event = parse_event({"provider": provider, "model": model, "timestamp": at, **tokens})
    except InvalidEvent as exc:
        raise InvalidInput(exc.message) from None
    cost = ledger.pricer.price(event)
    return cost.total_nanos if cost.priced else None


def _rate(nanos: int | None) -> str | None:
    """Per-1M-token rate from the price of ``_PROBE`` tokens (exact: multiply, never divide)."""
    return None if nanos is None else format_usd(nanos * (1_000_000 // _PROBE))


def _profile(
    requests_per_month: Any, input_tokens: Any, output_tokens: Any, cache_hit_pct: Any, reasoning_tokens: Any = 0
) -> dict[str, int]:
    def count(value: Any, name: str) -> int:
        if isinstance(value, bool) or isinstance(value, float):
            raise InvalidInput(f"{name}: give a whole number, not {value!r}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise InvalidInput(f"{name}: {value!r} is not a whole number") from None
        if number < 0 or number > 10**12:
            raise InvalidInput(f"{name}: {number} must be between 0 and 10^12")
        return number

    try:
        hit = Decimal(str(cache_hit_pct).strip().rstrip("%"))
    except InvalidOperation:
        raise InvalidInput(f"cache_hit_pct: {cache_hit_pct!r} is not a number") from None
    if isinstance(cache_hit_pct, float) or not hit.is_finite() or not 0 <= hit <= 100:
        raise InvalidInput(f"cache_hit_pct: {cache_hit_pct!r} must be a percentage between 0 and 100")
    tokens_in = count(input_tokens, "input_tokens")
    cached = int((tokens_in * hit / _HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return {
        "requests": count(requests_per_month, "requests_per_month"),
        "input_tokens": tokens_in,
        "cache_read_tokens": cached,
        "output_tokens": count(output_tokens, "output_tokens"),
        "reasoning_tokens": count(reasoning_tokens, "reasoning_tokens"),
    }


# A year of the profile must print as a decimal string: 19 integer digits and 9 decimals fill the
# 28 digits of Decimal's context. Past it format_usd raised decimal.InvalidOperation (a 500).
_MAX_TCO_ANNUAL_NANOS = 10**27 - 1


def _monthly_nanos(per_request: int, requests: int, where: str) -> int:
    monthly = per_request * requests
    if monthly * 12 > _MAX_TCO_ANNUAL_NANOS:
        raise InvalidInput(
            f"{where}: the profile costs {format_usd(per_request)} USD a request times {requests} requests a month, "
            "past 10^18 USD a year: check requests_per_month and the tokens per request"
        )
    return monthly


def tco(
    ledger: Ledger,
    *,
    provider: str | None,
    model: str,
    requests_per_month: Any,
    input_tokens: Any,
    output_tokens: Any,
    cache_hit_pct: Any = 0,
    reasoning_tokens: Any = 0,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Monthly cost of a usage profile on one model: one request priced by the engine, times the volume.

    ``input_tokens`` and ``output_tokens`` are per request; ``cache_hit_pct`` of the input tokens
    are read from the provider's prompt cache (rounded half-even to whole tokens). The ledger prices
    each request separately, so the month is exactly ``requests x per-request cost``.
    """
    profile = _profile(requests_per_month, input_tokens, output_tokens, cache_hit_pct, reasoning_tokens)
    at = at or ledger.clock()
    tokens = {k: v for k, v in profile.items() if k != "requests"}
    per_request = _price_nanos(ledger, provider, model, at, **tokens)
    if per_request is None:
        raise InvalidInput(
            f"tco: no price for {provider or 'any provider'}/{model}; add one with `fleetledger pricing set`"
        )
    monthly = _monthly_nanos(per_request, profile["requests"], "tco")
    return {
        "provider": provider,
        "model": model,
        "profile": profile,
        "per_request_usd": format_usd(per_request),
        "monthly_usd": format_usd(monthly),
        "annual_usd": format_usd(monthly * 12),
    }


def pricing_table(
    ledger: Ledger,
    *,
    providers: Sequence[str] | None = None,
    search: str | None = None,
    used_only: bool = False,
    profile: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    limit: int = 500,
) -> dict[str, Any]:
    """Model prices per 1M tokens (input, cached input, output), context window, with optional TCO.

    Rows: the genai-prices catalog for ``providers`` (default: the makers and clouds a workload can
    move to) plus every provider/model the ledger has used in the last 90 days and every exact
    override, each priced through ``ledger.pricer`` so overrides win as they do when metering. With
    ``profile`` (``requests_per_month``, ``input_tokens``, ``output_tokens``, ``cache_hit_pct``)
    each row also gets ``tco_monthly_usd`` (null for a model without output prices or an embedding
    model when the profile has output tokens) and the cheapest row is flagged ``best_value``.
    """
    at = at or ledger.clock()
    wanted = {p.lower() for p in providers} if providers else set(SWITCH_PROVIDERS)
    needle = (search or "").strip().lower()
    ledger.flush()
    used_rows = grouped_costs(ledger.store, ["provider", "model"], to_us(at) - 90 * 86_400_000_000, to_us(at) + 1, {})
    used = {(r.keys[0], r.keys[1]): int(r.measures["requests"]) for r in used_rows if r.keys[1]}
    candidates: dict[tuple[str, str], dict[str, Any]] = {}
    snapshot = data_snapshot.get_snapshot()
    for prov in snapshot.providers:
        if prov.id not in wanted:
            continue
        for info in prov.models:
            candidates[(prov.id, info.id)] = {
                "name": info.name,
                "context_window": info.context_window,
                "source": "catalog",
            }
    for provider, model in used:
        candidates.setdefault(
            (provider or "unknown", model), {"name": None, "context_window": None, "source": "ledger"}
        )
    for override in ledger.pricer.overrides:
        if override.prices is None or override.match != "exact" or not override.active(at):
            continue
        key = (override.provider or "unknown", override.model_pattern)
        candidates.setdefault(key, {"name": None, "context_window": None, "source": "override"})
    tco_profile = _profile(**profile) if profile is not None else None
    rows = []
    for (provider, model), meta in sorted(candidates.items()):
        if needle and needle not in f"{provider}/{model}".lower():
            continue
        requests_used = used.get((provider, model), 0)
        if used_only and not requests_used:
            continue
        prov_arg = None if provider == "unknown" else provider
        table = ledger.pricer.table_for(prov_arg, model, "standard", at)
        if not isinstance(table, PriceTable):
            continue
        input_rate = _rate(_price_nanos(ledger, prov_arg, model, at, input_tokens=_PROBE))
        output_rate = _rate(_price_nanos(ledger, prov_arg, model, at, output_tokens=_PROBE))
        cached_rate = _rate(_price_nanos(ledger, prov_arg, model, at, input_tokens=_PROBE, cache_read_tokens=_PROBE))
        if not any(usd_to_nanos(r) for r in (input_rate, output_rate) if r is not None):
            continue  # unpriced, free or subscription entries: nothing to compare
        overridden = any(o.matches_model(provider, model) and o.active(at) for o in ledger.pricer.overrides)
        row: dict[str, Any] = {
            "provider": provider,
            "model": model,
            "family": model_family(model),
            "input_per_1m_usd": input_rate,
            "cached_input_per_1m_usd": cached_rate if cached_rate != input_rate else None,
            "output_per_1m_usd": output_rate,
            "context_window": meta["context_window"],
            "source": "override" if overridden else meta["source"],
            "requests_90d": requests_used,
        }
        if tco_profile is not None:
            tokens = {k: v for k, v in tco_profile.items() if k != "requests"}
            # a model that produces no priced output (embeddings) cannot serve a profile with output
            fits = not tco_profile["output_tokens"] or (
                output_rate is not None and usd_to_nanos(output_rate) > 0 and model_family(model) != "Embeddings"
            )
            per_request = _price_nanos(ledger, prov_arg, model, at, **tokens) if fits else None
            row["tco_per_request_usd"] = None if per_request is None else format_usd(per_request)
            row["tco_monthly_usd"] = (
                None
                if per_request is None
                else format_usd(_monthly_nanos(per_request, tco_profile["requests"], f"{provider}/{model}"))
            )
            row["_tco"] = per_request
        rows.append(row)
        if len(rows) >= limit:
            break
    if tco_profile is not None:
        priced = [r for r in rows if r["_tco"]]  # free and subscription entries are not a value choice
        best = min(priced, key=lambda r: (r["_tco"], r["provider"], r["model"]), default=None)
        for r in rows:
            r["best_value"] = r is best
            del r["_tco"]
    return {"at": at.isoformat(), "profile": tco_profile, "models": rows, "truncated": len(rows) >= limit}


# -- "what if we moved X% to provider B" --------------------------------------------------------


def provider_shift(
    ledger: Ledger,
    *,
    to_provider: str,
    share_pct: Any = 100,
    to_model: str | None = None,
    from_provider: str | None = None,
    since: Any = "30d",
    until: Any = None,
    where: Where | None = None,
) -> dict[str, Any]:
    """What the scope's spend would have been with ``share_pct`` of its traffic on ``to_provider``.

    For each provider/model in scope (``from_provider`` only, when given; never the target itself)
    the group's average request (its real token mix) is priced on the source and on the target
    (``to_model``, or the same model name offered by ``to_provider``); the moved part of the
    recorded cost is scaled by that exact ratio and rounded half-even to the nano-USD. Groups the
    target cannot serve (no price there) stay where they are and are listed with the reason.
    """
    try:
        share = Decimal(str(share_pct).strip().rstrip("%"))
    except InvalidOperation:
        raise InvalidInput(f"share_pct: {share_pct!r} is not a number") from None
    if isinstance(share_pct, float) or not share.is_finite() or not 0 <= share <= 100:
        raise InvalidInput(f"share_pct: {share_pct!r} must be a percentage between 0 and 100")
    if not to_provider:
        raise InvalidInput("to_provider: required")
    start, end, s_us, e_us = _range(ledger, since, until)
    ledger.flush()
    rows = grouped_costs(ledger.store, ["provider", "model"], s_us, e_us, where or {})
    at = ledger.clock()
    total = sum(int(r.measures["cost_nanos"]) for r in rows)
    catalog = model_quality(ledger)
    groups = []
    moved_current = moved_target = 0
    for row in sorted(rows, key=lambda r: (-int(r.measures["cost_nanos"]), str(r.keys))):
        provider, model = row.keys
        m = row.measures
        requests, cost = int(m["requests"]), int(m["cost_nanos"])
        if provider == to_provider or not requests or not model or cost <= 0:
            continue
        if from_provider and provider != from_provider:
            continue
        target_model = to_model or model
        entry: dict[str, Any] = {
            "provider": provider,
            "model": model,
            "target_model": target_model,
            "requests": requests,
            "cost_usd": format_usd(cost),
        }
        # An embedding call cannot be answered by a chat model (nor the reverse): such a group stays.
        kind = _quality_entry(catalog, provider, model)[2]
        target_kind = _quality_entry(catalog, to_provider, target_model)[2]
        if kind != target_kind:
            entry["reason"] = f"{model} is a {kind} model, {target_model} a {target_kind} model"
            groups.append(entry)
            continue
        served = ledger.pricer.catalog_model(to_provider, target_model)
        offered = (not isinstance(served, str) and served[0].id == to_provider) or any(
            o.matches_model(to_provider, target_model) and o.prices is not None for o in ledger.pricer.overrides
        )
        average = {name: int(m[name]) // requests for name in TOKEN_FIELDS}
        source_price = _price_nanos(ledger, provider, model, at, **average)
        target_price = _price_nanos(ledger, to_provider, target_model, at, **average) if offered else None
        if target_price is None or not source_price:
            entry["reason"] = (
                f"{to_provider} has no price for {target_model}" if target_price is None else f"{model} is not priced"
            )
            groups.append(entry)
            continue
        current_part = Decimal(cost) * share / _HUNDRED
        target_part = current_part * Decimal(target_price) / Decimal(source_price)
        now_nanos = int(current_part.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        then_nanos = int(target_part.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        moved_current += now_nanos
        moved_target += then_nanos
        entry.update(
            {
                "moved_requests": int(
                    (Decimal(requests) * share / _HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
                ),
                "avg_request": average,
                "source_request_usd": format_usd(source_price),
                "target_request_usd": format_usd(target_price),
                "moved_current_usd": format_usd(now_nanos),
                "moved_target_usd": format_usd(then_nanos),
                "savings_usd": format_usd(now_nanos - then_nanos),
            }
        )
        groups.append(entry)
    savings = moved_current - moved_target
    days = Decimal(e_us - s_us) / Decimal(86_400_000_000)
    monthly = (Decimal(savings) * 30 / days).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) if days > 0 else Decimal(0)
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "to_provider": to_provider,
        "to_model": to_model,
        "share_pct": f"{share:f}",
        "current_usd": format_usd(total),
        "moved_current_usd": format_usd(moved_current),
        "moved_target_usd": format_usd(moved_target),
        "projected_usd": format_usd(total - savings),
        "savings_usd": format_usd(savings),
        "savings_pct": None if not total else f"{(Decimal(savings) * 100 / total).quantize(Decimal('0.01')):f}",
        "savings_monthly_usd": format_usd(int(monthly)),
        "groups": groups,
    }


# -- the editable quality catalog ---------------------------------------------------------------


def set_model_quality(ledger: Ledger, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``{"families": {"provider/family": {"score": 0-100, "kind": "chat"} | null}, "max_quality_drop"?}``.

    A null entry removes a stored family (the built-in one, if any, shows again). Scores are whole
    or decimal numbers from 0 to 100 given as numbers or strings; everything is checked before
    anything is stored.
    """
    if not isinstance(changes, Mapping):
        raise InvalidInput("model quality: expected an object with 'families'")
    stored = dict(ledger.store.get_meta("model_quality") or {})
    families = dict(stored.get("families") or {})
    incoming = changes.get("families", {})
    if not isinstance(incoming, Mapping):
        raise InvalidInput("families: expected an object of 'provider/family': {'score': ...}")
    for key, info in incoming.items():
        where = f"families[{key!r}]"
        provider, slash, family = str(key).partition("/")
        if not slash or not provider or not family:
            raise InvalidInput(f"{where}: the key must be 'provider/family', e.g. 'openai/gpt-4o'")
        if info is None:
            families.pop(key, None)
            continue
        if not isinstance(info, Mapping) or "score" not in info:
            raise InvalidInput(f"{where}: expected {{'score': 0-100}}")
        raw = info["score"]
        if isinstance(raw, bool):
            raise InvalidInput(f"{where}.score: {raw!r} is not a number")
        try:
            score = Decimal(str(raw))
        except InvalidOperation:
            raise InvalidInput(f"{where}.score: {raw!r} is not a number") from None
        if not score.is_finite() or not 0 <= score <= 100:
            raise InvalidInput(f"{where}.score: {raw!r} must be between 0 and 100")
        kind = info.get("kind", "chat")
        if kind not in ("chat", "embedding"):
            raise InvalidInput(f"{where}.kind: {kind!r} must be 'chat' or 'embedding'")
        families[key] = {"score": int(score) if score == score.to_integral_value() else float(score), "kind": kind}
    drop = changes.get("max_quality_drop", stored.get("max_quality_drop"))
    if drop is not None:
        if isinstance(drop, bool) or not isinstance(drop, int | str):
            raise InvalidInput("max_quality_drop: a whole number of points")
        try:
            drop = int(drop)
        except ValueError:
            raise InvalidInput(f"max_quality_drop: {drop!r} is not a whole number") from None
        if not 0 <= drop <= 100:
            raise InvalidInput("max_quality_drop: must be between 0 and 100")
    value: dict[str, Any] = {"families": families}
    if drop is not None:
        value["max_quality_drop"] = drop
    ledger.store.set_meta("model_quality", value)
    result = model_quality(ledger)
    result["built_in"] = sorted(DEFAULT_MODEL_QUALITY["families"])
    return result
