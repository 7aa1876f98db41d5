"""The event stream (:func:`generate`): hourly weights, agent runs and their calls, daily line items.

``spec.events`` events exactly, spread over the hours of the window by weight with the
largest-remainder method. An hour's weight is the sum of its agents' weights: volume x
department growth x a daily department noise x an office-hours curve in UTC (interactive agents)
or a flat night-batch curve (background agents), weekends being ~35% of weekdays; plus a little
hourly noise. Each hour is filled with runs: an agent drawn by weight makes a few calls seconds
apart in one session (user, environment, task and trace fixed). Token counts are log-normal per
operation, with growing context in chat sessions, 20-60% cache reads on Anthropic/OpenAI,
Anthropic cache writes, reasoning tokens on reasoning models (part of ``output_tokens``), ~1.5%
errors, ~15% of calls on a repeated ``prompt_hash``, an A/B experiment tag on 5% of
customer-support sessions and ~0.05% of calls on an unpriced self-hosted model. Each day also
carries two line items priced in dollars: GPU hours for that self-hosted model
(``infrastructure``) and vector storage (``storage``).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from datetime import timedelta
from itertools import accumulate
from operator import itemgetter
from typing import Any

from fleetledger.demo.fleet import (
    ARCHETYPES,
    INFRA_DEPT,
    MODELS,
    OPS,
    SELF_HOSTED,
    SELF_HOSTED_SHARE,
    Agent,
    Fleet,
    build_fleet,
    curves,
    reasoning_factor,
)
from fleetledger.demo.spec import DemoSpec
from fleetledger.demo.spikes import Spike, plan_spikes

__all__ = ["generate"]


class _Hours:
    """The weight of every agent in every hour, with the anomalies' effects."""

    def __init__(self, fleet: Fleet, spec: DemoSpec, anomalies: list[Spike]) -> None:
        rng = random.Random(spec.seed * 104_729 + 1)
        self.fleet, self.spec, self.anomalies = fleet, spec, anomalies
        self.n = spec.days * 24
        self.curves = curves()
        self.mean_curve = {k: sum(curve) / 24 for k, curve in self.curves.items()}
        self.dept_index = {d.name: i for i, d in enumerate(fleet.departments)}
        self.day_noise = [[rng.lognormvariate(0, 0.08) for _ in fleet.departments] for _ in range(spec.days)]
        self.hour_noise = [rng.lognormvariate(0, 0.05) for _ in range(self.n)]
        self.start_weekday = spec.start.weekday()

    def weights(self, hour: int) -> tuple[list[float], dict[int, list[tuple[Spike, float]]]]:
        """Each agent's weight in ``hour`` and the active anomalies (with a probability) per agent."""
        day, hod = divmod(hour, 24)
        weekend = (self.start_weekday + day) % 7 >= 5
        elapsed = hour / (90 * 24)
        noise = self.day_noise[day]
        dept = [(1 + d.growth) ** elapsed * noise[i] for i, d in enumerate(self.fleet.departments)]
        office, batch = self.curves[True, weekend][hod], self.curves[False, weekend][hod]
        index = self.dept_index
        weights = [
            a.weight * dept[index[a.department]] * (office if a.kind.interactive else batch) for a in self.fleet.agents
        ]
        effects: dict[int, list[tuple[Spike, float]]] = {}
        for anomaly in self.anomalies:
            if not anomaly.start <= hour < anomaly.end:
                continue
            for i in anomaly.agents:
                p = anomaly.share
                if anomaly.cause == "request_surge":
                    weights[i] *= anomaly.share
                    p = 1 - 1 / anomaly.share
                elif anomaly.cause == "runaway_loop":  # flat, around the clock
                    agent = self.fleet.agents[i]
                    extra = (
                        (anomaly.share - 1)
                        * agent.weight
                        * dept[index[agent.department]]
                        * self.mean_curve[agent.kind.interactive, weekend]
                    )
                    p = extra / (weights[i] + extra)
                    weights[i] += extra
                effects.setdefault(i, []).append((anomaly, p))
        return weights, effects


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Largest-remainder split of ``total`` by ``weights``: the counts sum to ``total`` exactly."""
    scale = total / sum(weights)
    quotas = [w * scale for w in weights]
    counts = [int(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (counts[i] - quotas[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _line_items(fleet: Fleet, spec: DemoSpec, day: int, stamp: str, first_id: int) -> list[dict[str, Any]]:
    """The day's dollar-priced line items: GPU hours of the self-hosted model and vector storage."""
    platform = fleet.department(INFRA_DEPT)
    # Sized to the fleet so infrastructure stays a believable ~10% of token spend at any --events:
    # about one A100 hour per 4,500 calls a day, half again on the weekly fine-tuning day.
    per_day = spec.events / spec.days
    gpu_hours = max(1, round(per_day / 4_500))
    gpu_hours += gpu_hours // 2 if day % 7 == 2 else 0
    storage_gb = round(per_day / 20) + 2 * day
    items = []
    for n, (category, model, operation, cost) in enumerate(
        (
            ("infrastructure", "gpu-a100-hour", "gpu-hours", gpu_hours * 2.35),
            ("storage", "vector-store-gb-day", "storage", storage_gb * 0.10 / 30),
        )
    ):
        items.append(
            {
                "event_id": f"demo-{spec.seed}-{first_id + n}",
                "timestamp": stamp,
                "provider": "aws",
                "model": model,
                "department": platform.name,
                "cost_center": platform.cost_center,
                "project": platform.projects[0],
                "team": platform.teams[0],
                "user": "svc-finops",
                "agent": "infra-billing",
                "task": "self-hosted-llm",
                "environment": "production",
                "version": "v1.0",
                "operation": operation,
                "session_id": f"billing-{spec.seed}-{day}",
                "service_tier": "standard",
                "tags": {},
                "status": "success",
                "request_id": f"bill_{spec.seed}_{day}_{n}",
                "trace_id": f"{spec.seed:016x}{day:016x}",
                "span_id": f"{n:016x}",
                "category": category,
                "cost_usd": f"{cost:.2f}",
            }
        )
    return items


def generate(spec: DemoSpec) -> Iterator[dict[str, Any]]:
    """Yield exactly ``spec.events`` canonical event dicts in timestamp order, streaming.

    Each hour's quota is filled with agent runs (sessions): an agent is drawn by weight over its mean
    run length, the run makes a few calls seconds apart, and the hour's calls are sorted and
    numbered before they are yielded; only one hour is ever held in memory.
    """
    fleet = build_fleet(spec.seed)
    hours = _Hours(fleet, spec, plan_spikes(fleet, spec))
    items_per_day = 2 if spec.events >= 100 * spec.days else 0
    totals = [sum(hours.weights(h)[0]) * hours.hour_noise[h] for h in range(hours.n)]
    counts = _allocate(spec.events - items_per_day * spec.days, totals)
    rng = random.Random(spec.seed * 15_485_863 + 3)
    rand, gauss, bits, expo, exp = rng.random, rng.gauss, rng.getrandbits, rng.expovariate, math.exp
    agents = fleet.agents
    depts = {d.name: d for d in fleet.departments}
    op_tables = {name: (list(a.ops), list(accumulate(a.ops.values()))) for name, a in ARCHETYPES.items()}
    log_ops = {op: (math.log(i), si, math.log(o) if o else 0.0, so) for op, (i, si, o, so) in OPS.items()}
    upgrade = [int(a.upgrade_at * hours.n) for a in agents]
    envs = ("production", "staging", "development")
    env_cum = [list(accumulate(a.env_weights)) for a in agents]
    run_length = [a.kind.session_calls for a in agents]

    def session(agent: Agent, overrides: dict[str, str]) -> tuple[Any, ...]:
        arch = agent.kind
        user = rng.choice(depts[agent.department].users) if arch.interactive else f"svc-{agent.name}"
        env = envs[bisect_right(env_cum[agent.index], rand() * env_cum[agent.index][-1], 0, 2)]
        tags = {}
        if agent.department == "customer-support" and rand() < 0.05:
            tags = {"experiment": "exp-prompt-v2", "arm": "treatment" if rand() < 0.5 else "control"}
        return (
            overrides.get("session_id") or f"sess-{bits(80):020x}",
            overrides.get("user", user),
            overrides.get("environment", env),
            overrides.get("task", rng.choice(arch.tasks)),
            f"{bits(128):032x}",
            tags,
        )

    def call(
        agent: Agent,
        sess: tuple[Any, ...],
        turn: int,
        stamp: str,
        version: str,
        loop: bool,
        switch: Spike | None,
        bloat: Spike | None,
    ) -> dict[str, Any]:
        arch = agent.kind
        hot = None
        if loop:
            op = max(arch.ops, key=arch.ops.__getitem__)
        elif rand() < 0.15:
            hot = agent.hot_prompts[int(rand() * 3)]
            op = hot[1]
        else:
            names, cum = op_tables[agent.archetype]
            op = names[bisect_right(cum, rand() * cum[-1], 0, len(cum) - 1)]
        if op == "embed":
            model = MODELS[agent.embedder]
        elif rand() < SELF_HOSTED_SHARE:
            model = SELF_HOSTED
        elif switch and rand() < switch.share:
            model = MODELS[switch.model]
        elif agent.fallback and rand() < agent.fallback_share:
            model = MODELS[agent.fallback]
        else:
            model = MODELS[agent.primary]
        if hot:
            tokens_in, tokens_out = hot[2], int(hot[3] * (0.8 + 0.4 * rand()))
        else:
            mu_in, s_in, mu_out, s_out = log_ops[op]
            tokens_in = int(exp(gauss(mu_in, s_in))) + 1
            tokens_out = int(exp(gauss(mu_out, s_out))) + 1 if mu_out else 0
            if op == "chat":  # the conversation grows
                tokens_in += 250 * min(turn, 30)
        reasoning = cache_read = cache_write = 0
        if model.kind == "reasoning" or model.kind == "thinking":
            factor = reasoning_factor(model, op)
            if factor > 1:
                tokens_out = int(tokens_out * factor)
                reasoning = int(tokens_out * (0.45 + 0.4 * rand()))
        if model.cache and op != "classify":
            if op == "chat" and turn:
                cache_read = int(tokens_in * (0.2 + 0.4 * rand()))
            elif rand() < 0.4:
                cache_read = int(tokens_in * (0.1 + 0.4 * rand()))
            if model.provider == "anthropic" and rand() < 0.12:
                cache_write = int((tokens_in - cache_read) * (0.1 + 0.2 * rand()))
        if bloat:
            tokens_in = int(tokens_in * bloat.input_factor)
            cache_read = cache_write = 0
        latency = (model.ttft_ms + model.ms_per_token * tokens_out) * (0.7 + 0.6 * rand())
        status = "success"
        if rand() < 0.015:
            status = "error"
            tokens_out = reasoning = cache_write = 0
            latency = 30_000.0 if rand() < 0.3 else latency * 0.3
        dept = depts[agent.department]
        return {
            "event_id": "",
            "timestamp": stamp,
            "provider": model.provider,
            "model": model.name,
            "input_tokens": tokens_in,
            "cache_read_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "output_tokens": tokens_out,
            "reasoning_tokens": reasoning,
            "department": dept.name,
            "cost_center": dept.cost_center,
            "project": agent.project,
            "team": agent.team,
            "user": sess[1],
            "agent": agent.name,
            "task": sess[3],
            "environment": sess[2],
            "version": version,
            "operation": op,
            "session_id": sess[0],
            "service_tier": "batch" if op != "chat" and rand() < arch.batch_share else "standard",
            "tags": dict(sess[5]) if sess[5] else {},
            "latency_ms": round(latency, 1),
            "status": status,
            "request_id": f"req_{bits(96):024x}",
            "trace_id": sess[4],
            "span_id": f"{bits(64):016x}",
            "prompt_hash": hot[0] if hot else f"{bits(64):016x}",
            "category": "embedding" if op == "embed" else "llm_inference",
        }

    seq = 0
    for hour, count in enumerate(counts):
        prefix = (spec.start + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:")
        if items_per_day and hour % 24 == 0:
            yield from _line_items(fleet, spec, hour // 24, prefix + "00:00.000Z", seq)
            seq += items_per_day
        if not count:
            continue
        weights, effects = hours.weights(hour)
        cum = list(accumulate(w / n for w, n in zip(weights, run_length, strict=True)))
        buffer: list[tuple[int, dict[str, Any]]] = []
        while len(buffer) < count:
            agent = agents[bisect_right(cum, rand() * cum[-1], 0, len(cum) - 1)]
            alt = switch = bloat = None
            for anomaly, p in effects.get(agent.index, ()):
                if anomaly.cause == "token_bloat":
                    bloat = anomaly
                elif anomaly.cause == "model_switch":
                    switch = anomaly
                elif rand() < p:
                    alt = anomaly
            sess = session(agent, alt.session if alt else {})
            calls = min(count - len(buffer), 1 + int(expo(1 / max(run_length[agent.index] - 1, 0.5))))
            gap = 20_000 if agent.kind.interactive else 2_000
            gaps = [0] + [int(gap * exp(gauss(0, 0.7))) for _ in range(calls - 1)]
            span = sum(gaps)
            if span >= 3_600_000:
                gaps = [g * 3_500_000 // span for g in gaps]
                span = sum(gaps)
            offset = int(rand() * (3_600_000 - span))
            version = bloat.version if bloat else agent.versions[hour >= upgrade[agent.index]]
            loop = alt is not None and alt.cause == "runaway_loop"
            for turn, step in enumerate(gaps):
                offset += step
                minute, ms = divmod(offset, 60_000)
                stamp = f"{prefix}{minute:02d}:{ms // 1000:02d}.{ms % 1000:03d}Z"
                buffer.append((offset, call(agent, sess, turn, stamp, version, loop, switch, bloat)))
        buffer.sort(key=itemgetter(0))
        for _, event in buffer:
            event["event_id"] = f"demo-{spec.seed}-{seq}"
            seq += 1
            yield event
