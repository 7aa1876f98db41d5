"""Where calls run: a cheaper model of the same provider (``model_downgrade``), the same model bought
from another provider (``provider_switch``).

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
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from genai_prices import data_snapshot
from genai_prices.types import ClauseEquals, ClauseOr

from fleetledger.analytics.recommendations.mixes import Call, Finding, group_by, reprice, top_agents
from fleetledger.analytics.recommendations.quality import model_family, model_quality
from fleetledger.core.money import format_usd

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["SWITCH_PROVIDERS", "NOT_SWITCH_TARGETS", "model_downgrades", "switch_targets", "provider_switches"]

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


def model_downgrades(ledger: Ledger, calls: list[Call]) -> list[Finding]:
    catalog = model_quality(ledger)
    max_drop = catalog["max_quality_drop"]
    found = []
    for (operation, provider, model), group in group_by(calls, lambda c: (c.operation, c.provider, c.model)).items():
        current = model_family(catalog, provider, model)
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
            optimized = reprice(ledger, group, model=candidate)
            if optimized is not None and (best is None or optimized < best[0]):
                best = (optimized, candidate, int(other["score"]))
        current_cost = sum(c.cost for c in group)
        if best is None or best[0] >= current_cost:
            continue
        optimized, candidate, score = best
        agents = top_agents(group)
        found.append(
            Finding(
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


def switch_targets(ledger: Ledger, provider: str, model: str) -> list[tuple[str, str]]:
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


def provider_switches(ledger: Ledger, calls: list[Call]) -> list[Finding]:
    found = []
    for (provider, model), group in group_by(calls, lambda c: (c.provider, c.model)).items():
        current = sum(c.cost for c in group)
        options = []
        for other, ref in switch_targets(ledger, provider, model):
            optimized = reprice(ledger, group, provider=other, model=ref)
            # a zero price is a free / rate-limited offer, not an alternative for a production workload
            if optimized is not None and 0 < optimized < current:
                options.append((optimized, other, ref))
        if not options:
            continue
        options.sort()
        optimized, to_provider, to_model = options[0]
        agents = top_agents(group)
        found.append(
            Finding(
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
