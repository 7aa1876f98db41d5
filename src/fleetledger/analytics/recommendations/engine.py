"""Cost optimisation recommendations, priced by re-pricing the real token mixes of the last 30 days.

Every figure is exact nano-USD: ``current`` is what the scope's events of the last 30 days cost as
recorded, ``optimized`` is what the *same* events would have cost under the change, priced through
``ledger.pricer`` event by event (so tiers, cache prices and overrides apply as they would have).
Nothing is estimated from list prices or invented percentages. The kinds:

``model_downgrade``  a cheaper model of the same provider whose quality score (a small editable
                     catalog: built in below, overridden by the meta key ``model_quality``) is
                     within ``max_quality_drop`` points of the current model's, for one operation;
``caching``          requests repeating an earlier ``prompt_hash`` of the same model and operation;
                     an exact-match response cache would not have sent them;
``batch``            standard-tier calls of non-interactive agents (no human user: none, or a
                     service account ``svc-...``) re-priced on the provider's batch tier;
``provider_switch``  the same model offered by another provider in the catalog (an open-weight model
                     such as gpt-oss-120b sold by Groq, Fireworks, Together, OpenRouter, Bedrock...;
                     Claude on Azure or Google), the scope's calls re-priced there; the cheapest wins;
``prompt_trim``      an agent whose input tokens per request are several times its peers' (other
                     agents of the same operation), re-priced at the peers' median;
``output_cap``       an agent whose answers often run past the operation's fleet-wide 95th percentile
                     of output tokens, re-priced with ``max_tokens`` at that percentile.

Provider switch, the matching rule: genai-prices lists each provider's models under that provider's
own id (``openai/gpt-oss-120b`` on Groq, ``accounts/fireworks/models/gpt-oss-120b`` on Fireworks,
``openai.gpt-oss-120b-1:0`` on Bedrock). A recorded call resolves to one catalog entry; a model of
another provider is the same model only when (a) it is that very catalog entry (Azure lists OpenAI's
and Anthropic's entries, Google Anthropic's), or (b) its id, normalized, equals the normalized id of
that entry or of the recorded model name. Normalizing lower-cases, drops a path prefix up to the last
``/`` and Bedrock's ``[region.]vendor.`` prefix and ``[-vN]:N`` version suffix; nothing else (dates,
``-instruct``, ``-turbo``, ``:free``, sizes stay), so dated snapshots, quantized or free variants are
not paired with the model. Other providers' match rules are *not* used to pair names: they are
prefix/contains rules (Google prices ``claude-opus-4-1`` as its ``claude-4-opus``, a different model).
The alternative is priced by ``ledger.pricer`` under a model id that resolves back to that entry on
that provider (so overrides for it apply); zero-priced (free) offers and editor subscriptions
(``NOT_SWITCH_TARGETS``) are not alternatives.

Lifecycle: ``identified -> in_review -> approved -> implemented | declined``. Once implemented, the
realized saving is measured from a 30-day window before ``implemented_us`` and the window after it
(cost per request, or cost per day for caching, which removes requests), scaled to a month.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from genai_prices import data_snapshot
from genai_prices.types import ClauseEquals, ClauseOr
from sqlalchemy import insert, select, update

from fleetledger.analytics.recommendations.tables import recommendations
from fleetledger.core.errors import Conflict, FleetLedgerError, InvalidInput, NotFound
from fleetledger.core.money import format_usd, parse_usd, usd_to_nanos
from fleetledger.core.time import from_us, to_us
from fleetledger.pricing.engine import PriceTable
from fleetledger.storage.query import grouped_costs
from fleetledger.storage.schema import events

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "KINDS",
    "STATUSES",
    "DEFAULT_MODEL_QUALITY",
    "Recommendation",
    "model_quality",
    "scan",
    "list_recommendations",
    "visible_to",
    "savings_summary",
    "get_recommendation",
    "set_status",
    "measure_realized",
]

KINDS = ("model_downgrade", "caching", "batch", "provider_switch", "prompt_trim", "output_cap")
STATUSES = ("identified", "in_review", "approved", "implemented", "declined")
_TRANSITIONS = {
    "identified": {"in_review", "approved", "declined"},
    "in_review": {"identified", "approved", "declined"},
    "approved": {"in_review", "implemented", "declined"},
    "implemented": {"approved", "declined"},  # rolled back
    "declined": {"identified", "in_review"},
}
WINDOW = timedelta(days=30)
_DAY_US = 86_400_000_000
_WINDOW_US = 30 * _DAY_US
_SERVICE_ACCOUNT_PREFIXES = ("svc-", "service-", "bot-")

#: Quality scores (0-100) per model family, by provider; a family matches a model name it prefixes.
#: Rough public-benchmark standing, meant to be edited: store your own under meta 'model_quality'.
DEFAULT_MODEL_QUALITY: dict[str, Any] = json.loads(
    """
{
  "max_quality_drop": 10,
  "families": {
    "openai/gpt-4o": {"score": 84, "kind": "chat"},
    "openai/gpt-4o-mini": {"score": 76, "kind": "chat"},
    "openai/gpt-4.1": {"score": 86, "kind": "chat"},
    "openai/gpt-4.1-mini": {"score": 80, "kind": "chat"},
    "openai/gpt-4.1-nano": {"score": 70, "kind": "chat"},
    "openai/o3-mini": {"score": 84, "kind": "chat"},
    "openai/o4-mini": {"score": 86, "kind": "chat"},
    "openai/text-embedding-3-large": {"score": 80, "kind": "embedding"},
    "openai/text-embedding-3-small": {"score": 75, "kind": "embedding"},
    "anthropic/claude-opus-4-1": {"score": 92, "kind": "chat"},
    "anthropic/claude-sonnet-4-5": {"score": 90, "kind": "chat"},
    "anthropic/claude-haiku-4-5": {"score": 82, "kind": "chat"},
    "anthropic/claude-3-5-haiku": {"score": 74, "kind": "chat"},
    "google/gemini-2.5-pro": {"score": 88, "kind": "chat"},
    "google/gemini-2.5-flash": {"score": 81, "kind": "chat"},
    "google/gemini-2.5-flash-lite": {"score": 72, "kind": "chat"},
    "mistral/mistral-large-latest": {"score": 80, "kind": "chat"},
    "mistral/mistral-medium-latest": {"score": 76, "kind": "chat"},
    "mistral/mistral-small-latest": {"score": 70, "kind": "chat"}
  }
}
"""
)

# effort, risk per kind, and the measured window's normalisation for realized savings.
#: The makers and clouds shown as pay-as-you-go alternatives by the pricing matrix (insights.matrix).
SWITCH_PROVIDERS = ("anthropic", "openai", "google", "aws", "azure", "mistral", "deepseek", "x-ai", "cohere")
#: Catalog "providers" that are not general-purpose inference APIs a workload can move to: tools whose
#: models are sold only inside an editor / assistant subscription.
NOT_SWITCH_TARGETS = ("github-copilot", "cursor")
_BEDROCK_PREFIX = re.compile(
    r"^(?:(?:global|regional|us|us-gov|eu|apac|au|jp|ca)\.)?"
    r"(?:anthropic|meta|mistral|openai|amazon|cohere|deepseek|qwen|ai21|writer|moonshot|minimax|google|nvidia)\."
)
_BEDROCK_VERSION = re.compile(r"(?:-v?\d+)?:\d+$")

_EFFORT_RISK = {
    "model_downgrade": ("low", "medium"),
    "caching": ("medium", "low"),
    "batch": ("medium", "low"),
    "provider_switch": ("medium", "medium"),
    "prompt_trim": ("medium", "low"),
    "output_cap": ("low", "medium"),
}


@dataclass
class Recommendation:
    id: int
    kind: str
    scope: dict[str, Any]
    title: str
    current_nanos: int
    optimized_nanos: int
    effort: str
    risk: str
    quality_impact: str
    steps: list[str]
    rollback: list[str]
    status: str = "identified"
    implemented_us: int | None = None
    realized: dict[str, Any] | None = None
    fingerprint: str = ""
    created_us: int = 0
    updated_us: int = 0

    @property
    def savings_nanos(self) -> int:
        return self.current_nanos - self.optimized_nanos

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "scope": self.scope,
            "affected_agents": self.scope.get("agents", []),
            "current_cost_monthly_usd": format_usd(self.current_nanos),
            "optimized_cost_monthly_usd": format_usd(self.optimized_nanos),
            "savings_monthly_usd": format_usd(self.savings_nanos),
            "savings_annual_usd": format_usd(self.savings_nanos * 12),
            "savings_percent": (_percent(self.savings_nanos, self.current_nanos) if self.current_nanos else "0"),
            "effort": self.effort,
            "risk": self.risk,
            "quality_impact": self.quality_impact,
            "steps": self.steps,
            "rollback": self.rollback,
            "status": self.status,
            "implemented_at": _iso(self.implemented_us),
            "realized": self.realized,
            "created_at": _iso(self.created_us),
            "updated_at": _iso(self.updated_us),
        }


def _percent(part: int, whole: int) -> str:
    """A display percentage with one decimal (never summed)."""
    return str((Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_EVEN))


def _iso(us: int | None) -> str | None:
    return None if us is None else from_us(us).isoformat().replace("+00:00", "Z")


# -- the recorded token mixes -------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    ts_us: int
    provider: str
    model: str
    agent: str | None
    user: str | None
    operation: str | None
    tier: str
    input: int
    cache_read: int
    cache_write: int
    output: int
    reasoning: int
    units: dict[str, int]
    cost: int
    prompt_hash: str | None

    def usage(
        self,
        *,
        input: int | None = None,
        cache_read: int | None = None,
        cache_write: int | None = None,
        output: int | None = None,
        reasoning: int | None = None,
    ) -> dict[str, int]:
        """The genai-prices usage of this call, optionally with some counts changed (as event_usage)."""
        cache_write = self.cache_write if cache_write is None else cache_write
        one_hour = min(int(self.units.get("cache_write_1h_tokens", 0)), cache_write)
        usage = {
            "input_tokens": self.input if input is None else input,
            "output_tokens": self.output if output is None else output,
            "cache_read_tokens": self.cache_read if cache_read is None else cache_read,
            "cache_write_tokens": cache_write,
            "output_reasoning_tokens": self.reasoning if reasoning is None else reasoning,
            "cache_write_1h_tokens": one_hour,
            "cache_write_5m_tokens": cache_write - one_hour,
        }
        for name, value in self.units.items():
            if name != "cache_write_1h_tokens":
                usage[name] = int(value)
        return usage


def _calls(ledger: Ledger, since_us: int, until_us: int) -> list[_Call]:
    """Priced, token-billed calls in the window (line items such as GPU hours cannot be optimised here)."""
    c = events.c
    statement = select(
        c.ts_us, c.provider, c.model, c.agent, c.user, c.operation, c.service_tier, c.input_tokens,
        c.cache_read_tokens, c.cache_write_tokens, c.output_tokens, c.reasoning_tokens, c.units, c.cost_nanos,
        c.prompt_hash,
    ).where(
        c.ts_us >= since_us, c.ts_us < until_us, c.priced.is_(True), c.price_source != "line-item",
        c.model.is_not(None), c.category.in_(["llm_inference", "embedding"]),
    ).order_by(c.ts_us, c.id)  # fmt: skip
    ledger.flush()
    with ledger.store.read() as conn:
        rows = conn.execute(statement).all()
    out = []
    for row in rows:
        units = row.units if isinstance(row.units, dict) else (json.loads(row.units) if row.units else {})
        out.append(
            _Call(
                row.ts_us, row.provider, row.model, row.agent, row.user, row.operation, row.service_tier,
                row.input_tokens, row.cache_read_tokens, row.cache_write_tokens, row.output_tokens,
                row.reasoning_tokens, units, row.cost_nanos, row.prompt_hash,
            )
        )  # fmt: skip
    return out


def _reprice(
    ledger: Ledger,
    calls: Iterable[_Call],
    *,
    provider: str | None = None,
    model: str | None = None,
    tier: str | None = None,
    usage: Callable[[_Call], dict[str, int]] | None = None,
) -> int | None:
    """What ``calls`` would have cost with another provider / model / tier / token mix; None if unpriced."""
    total = 0
    for call in calls:
        table = ledger.pricer.table_for(
            provider or call.provider, model or call.model, tier or call.tier, from_us(call.ts_us)
        )
        if not isinstance(table, PriceTable):
            return None
        try:
            total += table.price(usage(call) if usage else call.usage()).total_nanos
        except FleetLedgerError:
            return None
    return total


# -- the quality catalog ------------------------------------------------------------------------


def model_quality(ledger: Ledger) -> dict[str, Any]:
    """The built-in quality catalog with the meta key ``model_quality`` merged over it."""
    stored = ledger.store.get_meta("model_quality") or {}
    families = {**DEFAULT_MODEL_QUALITY["families"], **(stored.get("families") or {})}
    drop = stored.get("max_quality_drop", DEFAULT_MODEL_QUALITY["max_quality_drop"])
    return {"max_quality_drop": int(drop), "families": families}


def _family(catalog: Mapping[str, Any], provider: str, model: str) -> tuple[str, dict[str, Any]] | None:
    best = None
    for key, info in catalog["families"].items():
        prov, _, family = key.partition("/")
        if prov == provider and model.lower().startswith(family.lower()):
            if best is None or len(family) > len(best[0]):
                best = (family, info)
    return best


# -- the detectors ------------------------------------------------------------------------------


@dataclass
class _Finding:
    kind: str
    scope: dict[str, Any]
    title: str
    current: int
    optimized: int
    quality_impact: str
    steps: list[str]
    rollback: list[str]
    measure: dict[str, list[str | None]] = field(default_factory=dict)


def _agents(calls: Sequence[_Call], limit: int = 20) -> list[str]:
    spend: dict[str, int] = defaultdict(int)
    for call in calls:
        if call.agent:
            spend[call.agent] += call.cost
    return [a for a, _ in sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def _group(calls: Iterable[_Call], key: Callable[[_Call], Any]) -> dict[Any, list[_Call]]:
    groups: dict[Any, list[_Call]] = defaultdict(list)
    for call in calls:
        groups[key(call)].append(call)
    return groups


def _model_downgrades(ledger: Ledger, calls: list[_Call]) -> list[_Finding]:
    catalog = model_quality(ledger)
    max_drop = catalog["max_quality_drop"]
    found = []
    for (operation, provider, model), group in _group(calls, lambda c: (c.operation, c.provider, c.model)).items():
        current = _family(catalog, provider, model)
        if current is None:
            continue
        family, info = current
        best: tuple[int, str, int] | None = None
        for key, other in catalog["families"].items():
            prov, _, candidate = key.partition("/")
            if prov != provider or candidate == family or other.get("kind") != info.get("kind"):
                continue
            if int(other["score"]) < int(info["score"]) - max_drop:
                continue
            if isinstance(ledger.pricer.catalog_model(provider, candidate), str):
                continue
            optimized = _reprice(ledger, group, model=candidate)
            if optimized is not None and (best is None or optimized < best[0]):
                best = (optimized, candidate, int(other["score"]))
        current_cost = sum(c.cost for c in group)
        if best is None or best[0] >= current_cost:
            continue
        optimized, candidate, score = best
        agents = _agents(group)
        found.append(
            _Finding(
                "model_downgrade",
                {"operation": operation, "provider": provider, "model": model, "to_model": candidate, "agents": agents},
                f"Run {operation or 'unlabelled'} calls on {candidate} instead of {model}",
                current_cost,
                optimized,
                f"quality score {info['score']} -> {score} ({score - int(info['score']):+d} points, "
                "model-quality catalog)",
                [
                    f"Route the listed agents' {operation or 'unlabelled'} calls from {model} to {candidate}.",
                    "Run both models on a sample of recent requests and compare answers (A/B, 1-2 weeks).",
                    "Switch the agents' configuration; watch error rate and quality metrics for a week.",
                ],
                [f"Point the agents' model setting back to {model}; no data migration is involved."],
                {"operation": [operation], "agent": list(agents)} if agents else {"operation": [operation]},
            )
        )
    return found


def _caching(ledger: Ledger, calls: list[_Call], min_repeat_rate: Fraction = Fraction(5, 100)) -> list[_Finding]:
    found = []
    for (provider, model, operation), group in _group(calls, lambda c: (c.provider, c.model, c.operation)).items():
        seen: set[str] = set()
        repeats: list[_Call] = []
        for call in group:  # in time order: the first of each prompt is a cache miss
            if call.prompt_hash is None:
                continue
            if call.prompt_hash in seen:
                repeats.append(call)
            else:
                seen.add(call.prompt_hash)
        if not repeats or Fraction(len(repeats), len(group)) < min_repeat_rate:
            continue
        current = sum(c.cost for c in group)
        saved = sum(c.cost for c in repeats)
        rate = _percent(len(repeats), len(group))
        agents = _agents(group)
        found.append(
            _Finding(
                "caching",
                {
                    "provider": provider,
                    "model": model,
                    "operation": operation,
                    "agents": agents,
                    "repeat_rate_percent": str(rate),
                    "repeated_requests": len(repeats),
                },  # fmt: skip
                f"Cache {operation or 'unlabelled'} responses of {model}: {rate}% of requests repeat a prompt",
                current,
                current - saved,
                "none for exact-match hits (the same prompt gets the same stored answer); stale answers "
                "if the underlying data changes within the TTL",
                [
                    "Put an exact-match cache keyed by prompt hash (and model, parameters) in front of the calls.",
                    "Choose a TTL that matches how often the answers' sources change.",
                    "Record cache hits so their avoided cost shows in savings.",
                ],
                ["Disable the cache (a flag); calls go to the provider again."],
                {"provider": [provider], "model": [model], "operation": [operation]},
            )
        )
    return found


def _is_service_account(user: str | None) -> bool:
    return user is None or user.startswith(_SERVICE_ACCOUNT_PREFIXES)


def _batch(ledger: Ledger, calls: list[_Call]) -> list[_Finding]:
    interactive = {c.agent for c in calls if not _is_service_account(c.user)}
    eligible = [c for c in calls if c.tier == "standard" and c.agent not in interactive]
    found = []
    for (provider, model, operation), group in _group(eligible, lambda c: (c.provider, c.model, c.operation)).items():
        optimized = _reprice(ledger, group, tier="batch")
        current = sum(c.cost for c in group)
        if optimized is None or optimized >= current:
            continue
        agents = _agents(group)
        found.append(
            _Finding(
                "batch",
                {"provider": provider, "model": model, "operation": operation, "agents": agents},
                f"Send the non-interactive {operation or 'unlabelled'} calls on {model} through the batch API",
                current,
                optimized,
                "none on answers; results arrive within the provider's batch window (up to 24 h) instead of seconds",
                [
                    "Collect the agents' requests into batch files (JSONL) instead of calling synchronously.",
                    f"Submit them to {provider}'s batch API and poll for results; tag events service_tier=batch.",
                    "Alert when a batch misses its completion window.",
                ],
                ["Switch the agents back to synchronous calls; no state is kept outside the batch jobs."],
                {"provider": [provider], "model": [model], "operation": [operation], "agent": list(agents)},
            )
        )
    return found


def _norm_model_id(model_id: str) -> str:
    """A catalog model id without its reseller decoration: lower case, no path prefix (``meta-llama/``,
    ``accounts/fireworks/models/``, ``@cf/meta/``), no Bedrock region/vendor prefix or version suffix."""
    name = model_id.lower().rsplit("/", 1)[-1]
    name = _BEDROCK_PREFIX.sub("", name)
    return _BEDROCK_VERSION.sub("", name)


def _match_refs(clause: Any) -> list[str]:
    """The exact model refs (``equals`` clauses) a catalog match rule names, in order."""
    if isinstance(clause, ClauseEquals):
        return [clause.equals]
    if isinstance(clause, ClauseOr):
        return [ref for sub in clause.or_ for ref in _match_refs(sub)]
    return []


def _switch_targets(ledger: Ledger, provider: str, model: str) -> list[tuple[str, str]]:
    """(provider, model ref) pairs that sell the very model ``provider``/``model`` resolves to.

    The rule (no fuzzy matching): a catalog model of another provider is the same model when it is the
    same catalog entry (Azure lists OpenAI's models, Google Anthropic's), or when its normalized id
    (:func:`_norm_model_id`) equals the normalized id of the recorded model's catalog entry or of the
    recorded model name itself. The ref returned resolves back to that entry on that provider, so the
    pricing engine (and any price override for it) prices the alternative.
    """
    here = ledger.pricer.catalog_model(provider, model)
    if isinstance(here, str):
        return []
    _, info, _ = here
    identity = {_norm_model_id(info.id), _norm_model_id(model)}
    targets = []
    for other in data_snapshot.get_snapshot().providers:
        if other.id == provider or other.id in NOT_SWITCH_TARGETS:
            continue
        candidates = [m for m in other.models if not m.deprecated and _norm_model_id(m.id) in identity]
        resolved = ledger.pricer.catalog_model(other.id, model)
        if not isinstance(resolved, str) and resolved[1] is info:
            targets.append((other.id, model))  # the same catalog entry under the recorded name
            continue
        for candidate in candidates:  # a ref that prices as this very entry: its id, or an exact alias
            for ref in (candidate.id, *_match_refs(candidate.match)):
                found = ledger.pricer.catalog_model(other.id, ref)
                if not isinstance(found, str) and found[1] is candidate:
                    targets.append((other.id, ref))
                    break
    return targets


def _provider_switches(ledger: Ledger, calls: list[_Call]) -> list[_Finding]:
    found = []
    for (provider, model), group in _group(calls, lambda c: (c.provider, c.model)).items():
        current = sum(c.cost for c in group)
        options = []
        for other, ref in _switch_targets(ledger, provider, model):
            optimized = _reprice(ledger, group, provider=other, model=ref)
            # a zero price is a free / rate-limited offer, not an alternative for a production workload
            if optimized is not None and 0 < optimized < current:
                options.append((optimized, other, ref))
        if not options:
            continue
        options.sort()
        optimized, to_provider, to_model = options[0]
        agents = _agents(group)
        found.append(
            _Finding(
                "provider_switch",
                {
                    "provider": provider,
                    "model": model,
                    "to_provider": to_provider,
                    "to_model": to_model,
                    "agents": agents,
                    "alternatives": [
                        {"provider": p, "model": r, "optimized_cost_monthly_usd": format_usd(o)}
                        for o, p, r in options[:5]
                    ],
                },
                f"Buy {model} from {to_provider} (as {to_model}) instead of {provider}",
                current,
                optimized,
                "the same model; check latency, rate limits, regions, quantization and data-processing terms "
                "of the new provider",
                [
                    f"Open an account / enable {to_model} on {to_provider} and request the needed rate limits.",
                    "Route a canary share (5-10%) of the agents' traffic there; compare answers, latency and errors.",
                    "Move the rest once the canary holds for a week.",
                ],
                [f"Route the traffic back to {provider} (keep its credentials active during the migration)."],
                {"model": sorted({model, to_model}), "agent": list(agents)}
                if agents
                else {"model": sorted({model, to_model})},
            )
        )
    return found


def _median(values: Sequence[Fraction]) -> Fraction:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _prompt_trims(
    ledger: Ledger, calls: list[_Call], *, ratio: int = 2, min_calls: int = 5, min_peers: int = 3
) -> list[_Finding]:
    found = []
    for operation, op_calls in _group(calls, lambda c: c.operation).items():
        by_agent = {a: g for a, g in _group(op_calls, lambda c: c.agent).items() if a and len(g) >= min_calls}
        means = {a: Fraction(sum(c.input for c in g), len(g)) for a, g in by_agent.items()}
        if len(means) < min_peers or not any(means.values()):
            continue
        for agent, mean in sorted(means.items()):
            peers = [m for a, m in means.items() if a != agent]
            target = _median(peers)
            if not target or mean <= ratio * target:
                continue
            shrink = target / mean

            def trimmed(call: _Call, shrink: Fraction = shrink) -> dict[str, int]:
                def cut(n: int) -> int:
                    return n * shrink.numerator // shrink.denominator

                return call.usage(
                    input=cut(call.input), cache_read=cut(call.cache_read), cache_write=cut(call.cache_write)
                )

            group = by_agent[agent]
            optimized = _reprice(ledger, group, usage=trimmed)
            current = sum(c.cost for c in group)
            if optimized is None or optimized >= current:
                continue
            found.append(
                _Finding(
                    "prompt_trim",
                    {
                        "operation": operation,
                        "agent": agent,
                        "agents": [agent],
                        "input_tokens_per_request": str(round(mean)),
                        "peer_median_input_tokens": str(round(target)),
                    },  # fmt: skip
                    f"Trim {agent}'s {operation or 'unlabelled'} prompts: {round(mean)} input tokens per "
                    f"request vs {round(target)} for its peers",
                    current,
                    optimized,
                    "none expected if removed context is redundant; verify with an evaluation set before rollout",
                    [
                        "Compare the agent's prompt template and retrieved context with a peer's for the operation.",
                        "Remove duplicated instructions, cap retrieved documents / chat history, summarise history.",
                        "Evaluate the new prompt on recent requests, then release it as a new agent version.",
                    ],
                    ["Release the previous prompt version again (keep it in version control)."],
                    {"operation": [operation], "agent": [agent]},
                )
            )
    return found


def _output_caps(ledger: Ledger, calls: list[_Call], *, min_share: Fraction = Fraction(20, 100)) -> list[_Finding]:
    found = []
    for operation, op_calls in _group(calls, lambda c: c.operation).items():
        outputs = sorted(c.output for c in op_calls if c.output > 0)
        if len(outputs) < 20:
            continue
        cap = outputs[(len(outputs) * 95) // 100 - 1]  # the fleet's 95th percentile for the operation
        if cap <= 0:
            continue
        for agent, group in sorted(_group(op_calls, lambda c: c.agent).items(), key=lambda kv: str(kv[0])):
            if not agent:
                continue
            over = [c for c in group if c.output > cap]
            if not over or Fraction(len(over), len(group)) < min_share:
                continue

            def capped(call: _Call, cap: int = cap) -> dict[str, int]:
                if call.output <= cap:
                    return call.usage()
                return call.usage(output=cap, reasoning=call.reasoning * cap // call.output)

            optimized = _reprice(ledger, group, usage=capped)
            current = sum(c.cost for c in group)
            if optimized is None or optimized >= current:
                continue
            share = _percent(len(over), len(group))
            found.append(
                _Finding(
                    "output_cap",
                    {
                        "operation": operation,
                        "agent": agent,
                        "agents": [agent],
                        "max_output_tokens": cap,
                        "capped_share_percent": str(share),
                    },  # fmt: skip
                    f"Cap {agent}'s {operation or 'unlabelled'} answers at {cap} output tokens",
                    current,
                    optimized,
                    f"{share}% of this agent's answers are longer and would be cut at {cap} tokens; ask for concise "
                    "answers in the prompt so they end naturally",
                    [
                        f"Set max_tokens={cap} on the agent's {operation or 'unlabelled'} calls.",
                        "Ask for concise output in the prompt; handle finish_reason=length (retry or continue).",
                        "Watch truncation rate and user feedback for a week.",
                    ],
                    ["Remove the max_tokens setting."],
                    {"operation": [operation], "agent": [agent]},
                )
            )
    return found


_DETECTORS: dict[str, Callable[[Ledger, list[_Call]], list[_Finding]]] = {
    "model_downgrade": _model_downgrades,
    "caching": _caching,
    "batch": _batch,
    "provider_switch": _provider_switches,
    "prompt_trim": _prompt_trims,
    "output_cap": _output_caps,
}


# -- storage ------------------------------------------------------------------------------------


def _fingerprint(kind: str, scope: Mapping[str, Any]) -> str:
    keys = {
        k: v for k, v in scope.items() if k in ("operation", "provider", "model", "agent", "to_model", "to_provider")
    }
    text = json.dumps([kind, keys], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _from_row(row: Any) -> Recommendation:
    return Recommendation(
        id=row.id, kind=row.kind, scope=dict(row.scope or {}), title=row.title, current_nanos=int(row.current_nanos),
        optimized_nanos=int(row.optimized_nanos), effort=row.effort, risk=row.risk, quality_impact=row.quality_impact,
        steps=list(row.steps or []), rollback=list(row.rollback or []), status=row.status,
        implemented_us=row.implemented_us, realized=row.realized, fingerprint=row.fingerprint,
        created_us=row.created_us, updated_us=row.updated_us,
    )  # fmt: skip


def scan(
    ledger: Ledger,
    *,
    now: datetime | None = None,
    kinds: Sequence[str] = KINDS,
    min_monthly_savings_usd: Any = "1",
) -> list[Recommendation]:
    """Find opportunities over the last 30 days and store them (re-found ones are refreshed).

    Recommendations already approved, implemented or declined keep their figures: they are the
    baseline the decision was taken on. Returns the recommendations found by this scan.
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise InvalidInput(f"kinds: unknown {', '.join(sorted(unknown))}; use {', '.join(KINDS)}")
    minimum = usd_to_nanos(parse_usd(min_monthly_savings_usd, field="min_savings_usd"))
    if minimum < 0:
        raise InvalidInput("min_savings_usd: must not be negative")
    now = now or ledger.clock()
    until_us = to_us(now)
    calls = _calls(ledger, until_us - _WINDOW_US, until_us)
    findings = [f for kind in kinds for f in _DETECTORS[kind](ledger, calls) if f.current - f.optimized >= minimum]
    fingerprints = []
    with ledger.store.write() as conn:
        for finding in findings:
            effort, risk = _EFFORT_RISK[finding.kind]
            scope = {
                **finding.scope,
                "measure": finding.measure,
                "window_days": 30,
                # Whose spend it is: department-scoped API keys see only their departments' recommendations.
                "departments": _departments_of(ledger, finding.measure, until_us - _WINDOW_US, until_us),
            }
            fingerprint = _fingerprint(finding.kind, finding.scope)
            fingerprints.append(fingerprint)
            values = {
                "kind": finding.kind, "scope": scope, "title": finding.title, "current_nanos": finding.current,
                "optimized_nanos": finding.optimized, "effort": effort, "risk": risk,
                "quality_impact": finding.quality_impact, "steps": finding.steps, "rollback": finding.rollback,
                "updated_us": until_us,
            }  # fmt: skip
            existing = conn.execute(
                select(recommendations.c.id, recommendations.c.status).where(
                    recommendations.c.fingerprint == fingerprint
                )
            ).first()
            if existing is None:
                conn.execute(
                    insert(recommendations).values(
                        **values, status="identified", fingerprint=fingerprint, created_us=until_us
                    )
                )
            elif existing.status in ("identified", "in_review"):
                conn.execute(update(recommendations).where(recommendations.c.id == existing.id).values(**values))
        rows = conn.execute(select(recommendations).where(recommendations.c.fingerprint.in_(fingerprints))).all()
    return sorted((_from_row(r) for r in rows), key=lambda r: (-r.savings_nanos, r.id))


def _departments_of(ledger: Ledger, measure: Mapping[str, Any], since_us: int, until_us: int) -> list[str | None]:
    """The departments whose spend in the window a finding's ``measure`` filter covers (None: unattributed)."""
    rows = grouped_costs(ledger.store, ["department"], since_us, until_us, {k: list(v) for k, v in measure.items()})
    return sorted((r.keys[0] for r in rows), key=lambda d: (d is None, str(d)))


def visible_to(rec: Recommendation, departments: Sequence[str | None] | None) -> bool:
    """Whether a caller limited to ``departments`` (None: everything) may see ``rec``: all of its spend
    is in those departments. Recommendations stored before departments were recorded are not shown."""
    if departments is None:
        return True
    mine: list[Any] = list(rec.scope.get("departments") or rec.scope.get("department") or [])
    return bool(mine) and set(mine) <= set(departments)


def list_recommendations(
    ledger: Ledger,
    *,
    status: str | None = None,
    kind: str | None = None,
    departments: Sequence[str | None] | None = None,
) -> list[Recommendation]:
    """Stored recommendations, largest monthly saving first (``departments``: only theirs, see :func:`visible_to`)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    statement = select(recommendations)
    if status is not None:
        statement = statement.where(recommendations.c.status == status)
    if kind is not None:
        statement = statement.where(recommendations.c.kind == kind)
    with ledger.store.read() as conn:
        found = [_from_row(r) for r in conn.execute(statement)]
    found = [r for r in found if visible_to(r, departments)]
    return sorted(found, key=lambda r: (-r.savings_nanos, r.id))


def get_recommendation(ledger: Ledger, rec_id: int) -> Recommendation:
    with ledger.store.read() as conn:
        row = conn.execute(select(recommendations).where(recommendations.c.id == rec_id)).first()
    if row is None:
        raise NotFound(f"recommendation {rec_id} does not exist; see `fleetledger recommend list`")
    return _from_row(row)


def set_status(ledger: Ledger, rec_id: int, status: str, *, now: datetime | None = None) -> Recommendation:
    """Move a recommendation along its lifecycle; ``implemented`` records when (the realized baseline)."""
    if status not in STATUSES:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    current = get_recommendation(ledger, rec_id)
    if status == current.status:
        return current
    if status not in _TRANSITIONS[current.status]:
        allowed = ", ".join(sorted(_TRANSITIONS[current.status]))
        raise Conflict(f"recommendation {rec_id} is {current.status}; it can move to {allowed}, not {status}")
    now_us = to_us(now or ledger.clock())
    values: dict[str, Any] = {"status": status, "updated_us": now_us}
    if status == "implemented":
        values.update(implemented_us=now_us, realized=None)
    with ledger.store.write() as conn:
        conn.execute(update(recommendations).where(recommendations.c.id == rec_id).values(**values))
    return get_recommendation(ledger, rec_id)


def _window(ledger: Ledger, where: Mapping[str, list[str | None]], since_us: int, until_us: int) -> tuple[int, int]:
    rows = grouped_costs(ledger.store, [], since_us, until_us, where)
    if not rows:
        return 0, 0
    return int(rows[0].measures["requests"]), int(rows[0].measures["cost_nanos"])


def measure_realized(ledger: Ledger, rec_id: int, *, now: datetime | None = None) -> Recommendation:
    """Measure an implemented recommendation's saving: 30 days before vs the days since (up to 30).

    Per request (volume changes do not count as savings), except caching, whose point is to make
    fewer requests: per day. The result is scaled to a 30-day month and stored in ``realized``.
    """
    rec = get_recommendation(ledger, rec_id)
    if rec.status != "implemented" or rec.implemented_us is None:
        raise Conflict(f"recommendation {rec_id} is {rec.status}; realized savings are measured once implemented")
    ledger.flush()
    now_us = to_us(now or ledger.clock())
    start = rec.implemented_us
    end = min(now_us, start + _WINDOW_US)
    if end - start < _DAY_US:
        raise InvalidInput(f"recommendation {rec_id} was implemented less than a day ago; measure again later")
    where = {k: list(v) for k, v in (rec.scope.get("measure") or {}).items()}
    before_requests, before_cost = _window(ledger, where, start - _WINDOW_US, start)
    after_requests, after_cost = _window(ledger, where, start, end)
    after_us = end - start
    if rec.kind == "caching" or not before_requests or not after_requests:
        rate_before = Fraction(before_cost, _WINDOW_US)
        rate_after = Fraction(after_cost, after_us)
        monthly = (rate_before - rate_after) * _WINDOW_US
        basis = "per day"
    else:
        per_request_before = Fraction(before_cost, before_requests)
        per_request_after = Fraction(after_cost, after_requests)
        monthly = (per_request_before - per_request_after) * after_requests * Fraction(_WINDOW_US, after_us)
        basis = "per request"
    realized_nanos = round(monthly)  # round() on a Fraction is half-even
    realized = {
        "basis": basis,
        "measured_at": _iso(now_us),
        "before": {"since": _iso(start - _WINDOW_US), "until": _iso(start), "requests": before_requests,
                   "cost_usd": format_usd(before_cost)},
        "after": {"since": _iso(start), "until": _iso(end), "requests": after_requests,
                  "cost_usd": format_usd(after_cost)},
        "realized_monthly_nanos": realized_nanos,
        "realized_monthly_usd": format_usd(realized_nanos),
        "realized_annual_usd": format_usd(realized_nanos * 12),
        "estimated_monthly_usd": format_usd(rec.savings_nanos),
    }  # fmt: skip
    with ledger.store.write() as conn:
        conn.execute(
            update(recommendations).where(recommendations.c.id == rec_id).values(realized=realized, updated_us=now_us)
        )
    return get_recommendation(ledger, rec_id)


def savings_summary(ledger: Ledger, *, departments: Sequence[str] | None = None) -> dict[str, Any]:
    """Recommended savings by status, open potential, and realized savings measured after
    implementation (only what was measured on before/after windows; nothing estimated here).

    ``departments`` limits to recommendations scoped to those departments (department-scoped keys).
    """
    recommendations = list_recommendations(ledger, departments=departments)
    by_status: dict[str, list[int]] = {}
    realized = measured = 0
    for rec in recommendations:
        entry = by_status.setdefault(rec.status, [0, 0])
        entry[0] += 1
        entry[1] += rec.savings_nanos
        if rec.status == "implemented" and rec.realized:
            realized += int(rec.realized.get("realized_monthly_nanos", 0))
            measured += 1
    return {
        "by_status": {
            status: {
                "count": count,
                "estimated_monthly_usd": format_usd(nanos),
                "estimated_annual_usd": format_usd(nanos * 12),
            }
            for status, (count, nanos) in by_status.items()
        },
        "open_potential_monthly_usd": format_usd(
            sum(nanos for status, (_, nanos) in by_status.items() if status in ("identified", "in_review", "approved"))
        ),
        "realized_monthly_usd": format_usd(realized),
        "realized_annual_usd": format_usd(realized * 12),
        "implemented_measured": measured,
        "implemented": [r.to_dict() for r in recommendations if r.status == "implemented"],
    }
