"""The injected anomalies (:func:`plan_spikes`) and their ground truth (:func:`ground_truth`).

Five spikes, one per cause plus a second surge, each on its own department (agent spikes too),
each 1-3 days long, starting on a weekday in the second half of the window, never in the last
day, each calibrated with a rough price table to multiply its scope's spend by 3.0-4.2:

* ``model_switch``: a busy department's pipeline agents move to a premium model (``model``);
* ``request_surge``: a department runs a one-off job (``task``), or a load test hits an agent
  in staging (``environment``);
* ``token_bloat``: an agent version with a prompt regression sends several times the input
  tokens and loses its cache hits (``version``);
* ``runaway_loop``: one session of an agent calls around the clock (``session_id``).

The ground truth records each exact window, scope and the dimension value that explains it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from fleetledger.demo.fleet import INFRA_DEPT, MODELS, OPS, Agent, Fleet, Model, build_fleet, curves, reasoning_factor
from fleetledger.demo.spec import DemoSpec

__all__ = ["Spike", "plan_spikes", "ground_truth"]


@dataclass(frozen=True)
class Spike:
    id: str
    cause: str
    scope: dict[str, str]
    start: int  # first hour index
    end: int  # hour index after the last one
    multiplier: float  # calibrated spend multiplier of the scope
    agents: frozenset[int]
    dimension: dict[str, str]
    description: str
    share: float = 1.0  # model_switch: share of calls switched; surges and loops: volume factor
    model: str = ""
    version: str = ""
    input_factor: float = 1.0
    session: dict[str, str] = field(default_factory=dict)  # overrides for the extra traffic


def _mean_cost(model: Model, op: str) -> float:
    in_med, in_sig, out_med, out_sig = OPS[op]
    tokens_in = in_med * math.exp(in_sig**2 / 2)
    tokens_out = out_med * math.exp(out_sig**2 / 2) * reasoning_factor(model, op)
    return (tokens_in * model.in_price + tokens_out * model.out_price) / 1e6


def _agent_cost(agent: Agent, model: str | None = None, input_factor: float = 1.0) -> float:
    """Rough mean USD per call; ``model`` replaces the chat model, ``input_factor`` scales inputs."""
    total = sum(agent.kind.ops.values())
    cost = 0.0
    for op, weight in agent.kind.ops.items():
        m = MODELS[agent.embedder if op == "embed" else model or agent.primary]
        in_part = OPS[op][0] * math.exp(OPS[op][1] ** 2 / 2) * m.in_price / 1e6
        cost += weight / total * (_mean_cost(m, op) + (input_factor - 1) * in_part)
    return cost


def plan_spikes(fleet: Fleet, spec: DemoSpec) -> list[Spike]:
    """Five calibrated spikes in the second half of the window; none for windows under 8 days.

    Scopes are chosen where a spike stands clear of the noise: busy departments (never the platform
    department, whose dollar-priced GPU line items would drown a spike) and the agents with the most
    runs. Each magnitude is set with the rough price table so the scope's spend becomes ~target x.
    """
    if spec.days < 8:
        return []
    rng = random.Random(spec.seed * 7919 + spec.days)
    by_dept = {d.name: [a for a in fleet.agents if a.department == d.name] for d in fleet.departments}
    level = {kind: sum(curve) / 24 for (kind, weekend), curve in curves().items() if not weekend}

    def volume(agent: Agent) -> float:  # relative calls per weekday hour
        return agent.weight * level[agent.kind.interactive]

    def runs(agent: Agent) -> float:
        return volume(agent) / agent.kind.session_calls

    def busiest(dept: str) -> Agent:
        return max((a for a in by_dept[dept] if a.archetype != "indexer"), key=runs)

    def switched(dept: str, model: str) -> list[Agent]:  # the pipelines the new model makes dearer
        return [a for a in by_dept[dept] if not a.kind.interactive and _agent_cost(a, model) > _agent_cost(a)]

    def pipeline_share(dept: str) -> float:  # of the department's spend: what a model switch can lift
        spend = [(volume(a) * _agent_cost(a), a.kind.interactive) for a in by_dept[dept]]
        return sum(c for c, interactive in spend if not interactive) / sum(c for c, _ in spend)

    def gain(dept: str, model: str) -> float:  # relative spend added if all those calls switched
        added = sum(volume(a) * (_agent_cost(a, model) - _agent_cost(a)) for a in switched(dept, model))
        return added / sum(volume(a) * _agent_cost(a) for a in by_dept[dept])

    busy = sorted((d for d in by_dept if d != INFRA_DEPT), key=lambda d: -sum(map(runs, by_dept[d])))
    switch_dept = max(busy[:6], key=pipeline_share)
    rest = sorted((d for d in by_dept if d != switch_dept), key=lambda d: -runs(busiest(d)))
    agent_depts, surge_dept = rest[:3], rng.choice([d for d in busy[:7] if d not in rest[:3] + [switch_dept]])
    rng.shuffle(agent_depts)
    causes = ["model_switch", "request_surge", "token_bloat", "runaway_loop", "request_surge"]
    rng.shuffle(causes)
    first, last = spec.days // 2, spec.days - 1  # the last day stays clean
    anomalies: list[Spike] = []
    for n, cause in enumerate(causes):
        hours = rng.choice((24, 36, 48, 60, 72))
        day = int(first + n * (last - first) / len(causes))
        weekday = (spec.start.weekday() + day) % 7
        day += 7 - weekday if weekday >= 5 else 0  # spikes start on a weekday
        start = min(day * 24 + rng.randint(6, 14), last * 24 - hours)
        target = round(rng.uniform(3.0, 4.2), 1)
        kw: dict[str, Any] = {"id": f"spike-{n + 1}", "cause": cause, "start": start, "end": start + hours}
        kw["multiplier"] = target
        if cause == "model_switch":
            dept = switch_dept
            premium = sorted(("gpt-4o", "gpt-4.1", "claude-sonnet-4-5", "claude-opus-4-1"), key=partial(gain, dept))
            model = next((m for m in premium if 1 + gain(dept, m) >= target), premium[-1])
            share = min(1.0, (target - 1) / max(gain(dept, model), 1e-9))
            kw.update(
                scope={"department": dept},
                agents=frozenset(a.index for a in switched(dept, model)),
                dimension={"model": model},
                share=round(share, 3),
                model=model,
                description=f"A config change moved {share:.0%} of the calls of {dept}'s pipeline agents "
                f"to {model}; the department's spend went ~{target}x.",
            )
        elif cause == "request_surge" and surge_dept:
            dept, surge_dept = surge_dept, ""
            task = "quarter-close-reconciliation" if dept == "finance" else f"{dept}-backfill"
            kw.update(
                scope={"department": dept},
                agents=frozenset(a.index for a in by_dept[dept]),
                dimension={"task": task},
                share=target,
                session={"task": task},
                description=f"{dept} ran a one-off '{task}' job on top of its normal traffic: "
                f"~{target}x the department's usual call volume.",
            )
        else:
            agent = busiest(agent_depts.pop())
            kw.update(scope={"agent": agent.name}, agents=frozenset({agent.index}))
            if cause == "request_surge":
                kw.update(
                    dimension={"environment": "staging"},
                    share=target,
                    session={"environment": "staging", "user": "svc-loadtest", "task": "load-test"},
                    description=f"A load test left running against {agent.name} in staging: "
                    f"~{target}x its usual call volume.",
                )
            elif cause == "token_bloat":
                base = _agent_cost(agent)
                plain = _agent_cost(agent, input_factor=2.0) - base  # cost of one more copy of the inputs
                factor = min(8.0, max(1.5, 1 + (target - 1) * base / max(plain, 1e-12)))
                major, minor = agent.versions[1][1:].split(".")
                version = f"v{major}.{int(minor) + 1}"
                kw.update(
                    dimension={"version": version},
                    version=version,
                    input_factor=round(factor, 2),
                    description=f"{agent.name} {version} shipped a prompt regression sending the whole "
                    f"history: ~{factor:.1f}x input tokens per call, no cache hits; rolled back.",
                )
            else:
                session = f"loop-{spec.seed}-{agent.name}"
                main_op = max(agent.kind.ops, key=agent.kind.ops.__getitem__)  # what the loop repeats
                calls = 1 + (target - 1) * _agent_cost(agent) / _mean_cost(MODELS[agent.primary], main_op)
                kw.update(
                    dimension={"session_id": session},
                    share=round(calls, 2),
                    session={"session_id": session, "task": "retry-until-valid", "environment": "production"},
                    description=f"{agent.name} got stuck in a retry loop: session {session} kept calling "
                    f"the model around the clock until it was killed (~{target}x its usual spend).",
                )
        anomalies.append(Spike(**kw))
    return sorted(anomalies, key=lambda a: a.start)


def ground_truth(spec: DemoSpec) -> dict[str, Any]:
    """The anomalies injected by :func:`.traffic.generate` for ``spec``, and a summary of the fleet."""
    fleet = build_fleet(spec.seed)

    def iso(hour: int) -> str:
        return (spec.start + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        "seed": spec.seed,
        "start": iso(0),
        "end": iso(spec.days * 24),
        "events": spec.events,
        "anomalies": [
            {
                "id": a.id,
                "kind": "spike",
                "cause": a.cause,
                "scope": a.scope,
                "start": iso(a.start),
                "end": iso(a.end),
                "dimension": a.dimension,
                "expected_multiplier": a.multiplier,
                "description": a.description,
            }
            for a in plan_spikes(fleet, spec)
        ],
        "fleet": fleet.summary(),
    }
