"""Agent fitness for agent-evolution systems: effectiveness, efficiency and cost efficiency, 0 to 1.

Seed 002 ("Cost-Based Evolution Engine", ``FitnessDimensions``) makes cost a fitness dimension::

    fitness = 0.4 x effectiveness + 0.3 x efficiency + 0.3 x cost_efficiency     (default weights)

each dimension between 0 and 1. The seed leaves the dimensions' measures open; here they are:

* **effectiveness**: the mean ``quality`` tag (a score 0..1 from your evaluation) when the agent's
  events carry one, else the success rate ``1 - errors / requests``;
* **efficiency**: speed relative to the cohort, ``fastest average latency / agent's average
  latency`` (1 for the fastest agent); agents without latency data are not scored on it and
  their weights are renormalised over the other dimensions;
* **cost efficiency**: cost per *effective* request, relative to the cohort,
  ``cheapest cost per effective request / agent's cost per effective request``, where
  cost per effective request = cost / (requests x effectiveness). 1 is the cheapest agent per unit
  of useful work; an agent that never succeeds scores 0.

Scores are relative to the agents in the same range, which is what selection between lineages
needs. Line items (categories infrastructure and storage) are not agent work and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import format_usd
from fleetledger.core.time import parse_range, to_us
from fleetledger.storage.schema import events

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["DEFAULT_WEIGHTS", "agent_fitness", "overall_fitness"]

#: Seed 002, ``FitnessDimensions.calculate_overall_fitness`` defaults.
DEFAULT_WEIGHTS: Mapping[str, float] = {"effectiveness": 0.4, "efficiency": 0.3, "cost_efficiency": 0.3}
_AGENT_WORK = ["llm_inference", "embedding", "tool_use", "other"]


def _weights(weights: Mapping[str, float] | Sequence[float] | None) -> dict[str, float]:
    if weights is None:
        return dict(DEFAULT_WEIGHTS)
    if isinstance(weights, Mapping):
        unknown = set(weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise InvalidInput(f"fitness weights: unknown dimension(s) {', '.join(sorted(unknown))}")
        parsed = {name: float(weights.get(name, 0.0)) for name in DEFAULT_WEIGHTS}
    else:
        values = list(weights)
        if len(values) != 3:
            raise InvalidInput("fitness weights: give three numbers (effectiveness, efficiency, cost_efficiency)")
        parsed = dict(zip(DEFAULT_WEIGHTS, (float(v) for v in values), strict=True))
    if any(not math.isfinite(v) or v < 0 for v in parsed.values()) or not sum(parsed.values()):
        raise InvalidInput("fitness weights: must be zero or more, and not all zero")
    return parsed


def overall_fitness(dimensions: Mapping[str, float | None], weights: Mapping[str, float]) -> float:
    """Seed 002's weighted sum, renormalised over the dimensions that have a value."""
    present = {name: w for name, w in weights.items() if dimensions.get(name) is not None}
    total = sum(present.values())
    if not total:
        return 0.0
    score = math.fsum(w * float(dimensions[name] or 0.0) for name, w in present.items()) / total
    return min(1.0, max(0.0, score))


def _qualities(ledger: Ledger, start: Any, end: Any, where: Mapping[str, Any]) -> dict[str, list[float]]:
    conditions = [
        events.c.ts_us >= to_us(start),
        events.c.ts_us < to_us(end),
        events.c.agent.is_not(None),
        events.c.tags["quality"].as_string().is_not(None),
    ]
    for key, values in where.items():
        conditions.append(events.c[key].in_([v for v in values if v is not None]))
    out: dict[str, list[float]] = {}
    with ledger.store.read() as conn:
        for agent, text in conn.execute(
            select(events.c.agent, events.c.tags["quality"].as_string()).where(and_(*conditions))
        ):
            try:
                value = float(text)
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                out.setdefault(agent, []).append(min(1.0, max(0.0, value)))
    return out


def agent_fitness(
    ledger: Ledger,
    since: Any = "30d",
    until: Any = None,
    weights: Mapping[str, float] | Sequence[float] | None = None,
    *,
    departments: Sequence[str | None] | None = None,
) -> list[dict[str, Any]]:
    """Per-agent effectiveness, efficiency, cost efficiency and weighted fitness, best first."""
    chosen = _weights(weights)
    start, end = parse_range(since, until, now=ledger.clock())
    where: dict[str, list[str | None]] = {"category": list(_AGENT_WORK)}
    if departments is not None:
        where["department"] = list(departments)
    report = ledger.costs(by=["agent"], since=start, until=end, where=where)
    qualities = _qualities(
        ledger, start, end, {"category": _AGENT_WORK, **({} if departments is None else {"department": departments})}
    )

    agents = []
    for row in report.groups:
        agent = row.keys[0]
        m = row.measures
        requests = int(m["requests"])
        if agent is None or not requests:
            continue
        errors = int(m["errors"])
        success = 1.0 - errors / requests
        scores = qualities.get(agent)
        effectiveness = math.fsum(scores) / len(scores) if scores else success
        latency_count = int(m["latency_count"])
        agents.append(
            {
                "agent": agent,
                "requests": requests,
                "errors": errors,
                "success_rate": success,
                "effectiveness": effectiveness,
                "effectiveness_source": "quality" if scores else "success_rate",
                "_cost": int(m["cost_nanos"]),
                "_latency": float(m["latency_ms_sum"]) / latency_count if latency_count else None,
            }
        )
    latencies = [a["_latency"] for a in agents if a["_latency"]]
    fastest = min(latencies) if latencies else None
    per_effective = {
        a["agent"]: a["_cost"] / (a["requests"] * a["effectiveness"]) for a in agents if a["effectiveness"] > 0
    }
    cheapest = min(per_effective.values()) if per_effective else None

    rows = []
    for a in agents:
        if a["_latency"] is None or fastest is None:
            efficiency = None
        else:
            efficiency = 1.0 if not a["_latency"] else fastest / a["_latency"]
        cost_per = per_effective.get(a["agent"])
        if cost_per is None:
            cost_efficiency = 0.0
        elif cost_per == 0:
            cost_efficiency = 1.0
        else:
            cost_efficiency = (cheapest or 0.0) / cost_per
        dimensions = {"effectiveness": a["effectiveness"], "efficiency": efficiency, "cost_efficiency": cost_efficiency}
        rows.append(
            {
                "agent": a["agent"],
                "fitness": round(overall_fitness(dimensions, chosen), 4),
                "effectiveness": round(a["effectiveness"], 4),
                "effectiveness_source": a["effectiveness_source"],
                "efficiency": None if efficiency is None else round(efficiency, 4),
                "cost_efficiency": round(cost_efficiency, 4),
                "requests": a["requests"],
                "errors": a["errors"],
                "success_rate": round(a["success_rate"], 4),
                "cost_usd": format_usd(a["_cost"]),
                "cost_per_request_usd": format_usd(round(a["_cost"] / a["requests"])),
                "cost_per_effective_request_usd": None if cost_per is None else format_usd(round(cost_per)),
                "avg_latency_ms": None if a["_latency"] is None else round(a["_latency"], 1),
            }
        )
    rows.sort(key=lambda r: (-r["fitness"], r["agent"]))
    return rows
