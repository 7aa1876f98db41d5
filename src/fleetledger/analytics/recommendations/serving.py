"""How calls are sent: an exact-match response cache in front of repeated prompts (``caching``), the
provider's batch tier for agents no human waits on (``batch``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from fleetledger.analytics.recommendations.mixes import Call, Finding, group_by, reprice, top_agents
from fleetledger.analytics.recommendations.recommendation import percent

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["caching", "batch"]

_SERVICE_ACCOUNT_PREFIXES = ("svc-", "service-", "bot-")


def caching(ledger: Ledger, calls: list[Call], min_repeat_rate: Fraction = Fraction(5, 100)) -> list[Finding]:
    found = []
    for (provider, model, operation), group in group_by(calls, lambda c: (c.provider, c.model, c.operation)).items():
        seen: set[str] = set()
        repeats: list[Call] = []
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
        rate = percent(len(repeats), len(group))
        agents = top_agents(group)
        found.append(
            Finding(
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


def batch(ledger: Ledger, calls: list[Call]) -> list[Finding]:
    interactive = {c.agent for c in calls if not _is_service_account(c.user)}
    eligible = [c for c in calls if c.tier == "standard" and c.agent not in interactive]
    found = []
    for (provider, model, operation), group in group_by(eligible, lambda c: (c.provider, c.model, c.operation)).items():
        optimized = reprice(ledger, group, tier="batch")
        current = sum(c.cost for c in group)
        if optimized is None or optimized >= current:
            continue
        agents = top_agents(group)
        found.append(
            Finding(
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
