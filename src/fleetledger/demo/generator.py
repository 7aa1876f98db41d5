"""A realistic, deterministic synthetic agent fleet, with the anomalies it contains written down.

The demo data exists so that every report, detector and dashboard of fleetledger can be shown, and
tested, against something that looks like a real company and whose answers are known.

The fleet (:func:`build_fleet`)
    Fourteen departments, each with a cost center (``CC-1001``...), a head-count weight, a growth
    rate (+10%..+60% over 90 days), a few projects and teams, and the *archetypes* of agent it
    runs. An archetype (``assistant``, ``triage-bot``, ``code-reviewer``, ``researcher``...) fixes
    an agent's operation mix (summarize, classify, extract, chat, code_review, embed, plan,
    research, draft), whether humans talk to it (interactive agents have a ``user`` and follow
    office hours, background agents run all day and use the batch tier), the models it may run on
    and how many calls one run (session) makes. Each of the ~200 agents gets a primary model, often
    a fallback on another provider, an embedding model, a version that is upgraded once during the
    window (``v1.9`` -> ``v2.0``), an environment mix (mostly production) and a Pareto-like volume.

The traffic (:func:`generate`)
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

The anomalies (:func:`ground_truth`)
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

Everything derives from ``random.Random`` seeded from ``spec.seed``: same spec, same bytes.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import accumulate
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from fleetledger.core.money import format_usd

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "DemoSpec",
    "Model",
    "Department",
    "Agent",
    "Fleet",
    "build_fleet",
    "generate",
    "demo_budgets",
    "ground_truth",
    "load_demo",
]


def _default_end() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class DemoSpec:
    """What to generate: ``events`` events over the ``days`` days ending at ``end`` (exclusive).

    ``end`` must be time-zone aware; it is converted to UTC and rounded down to the hour.
    """

    seed: int = 7
    days: int = 90
    events: int = 200_000
    end: datetime = field(default_factory=_default_end)

    def __post_init__(self) -> None:
        if self.days < 1 or self.events < 0:
            raise ValueError("days must be >= 1 and events >= 0")
        if self.end.tzinfo is None or self.end.utcoffset() is None:
            raise ValueError("end needs a time zone")
        end = self.end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        object.__setattr__(self, "end", end)

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)


@dataclass(frozen=True)
class Model:
    """A model the fleet calls. Prices (USD per million tokens) only calibrate the anomalies."""

    provider: str
    name: str
    kind: str  # "chat", "reasoning" (always thinks), "thinking" (thinks on heavy ops), "embedding"
    in_price: float
    out_price: float
    ttft_ms: float  # time to first token
    ms_per_token: float
    cache: bool  # reports prompt-cache reads


# fmt: off
_MODELS = {m.name: m for m in (
    Model("openai", "gpt-4o", "chat", 2.5, 10, 450, 9, True),
    Model("openai", "gpt-4o-mini", "chat", 0.15, 0.6, 300, 6, True),
    Model("openai", "gpt-4.1", "chat", 2.0, 8, 500, 10, True),
    Model("openai", "gpt-4.1-mini", "chat", 0.4, 1.6, 320, 6, True),
    Model("openai", "o3-mini", "reasoning", 1.1, 4.4, 900, 7, True),
    Model("openai", "o4-mini", "reasoning", 1.1, 4.4, 800, 7, True),
    Model("openai", "text-embedding-3-small", "embedding", 0.02, 0, 60, 0, False),
    Model("openai", "text-embedding-3-large", "embedding", 0.13, 0, 90, 0, False),
    Model("anthropic", "claude-sonnet-4-5", "chat", 3.0, 15, 700, 14, True),
    Model("anthropic", "claude-haiku-4-5", "chat", 1.0, 5, 400, 7, True),
    Model("anthropic", "claude-3-5-haiku-latest", "chat", 0.8, 4, 380, 8, True),
    Model("anthropic", "claude-opus-4-1", "chat", 15.0, 75, 1200, 25, True),
    Model("google", "gemini-2.5-pro", "thinking", 1.25, 10, 1100, 8, False),
    Model("google", "gemini-2.5-flash", "thinking", 0.3, 2.5, 450, 4, False),
    Model("google", "gemini-2.5-flash-lite", "chat", 0.1, 0.4, 250, 3, False),
    Model("google", "gemini-embedding-001", "embedding", 0.15, 0, 80, 0, False),
    Model("mistral", "mistral-large-latest", "chat", 2.0, 6, 500, 11, False),
    Model("mistral", "mistral-small-latest", "chat", 0.15, 0.6, 280, 5, False),
    Model("mistral", "codestral-latest", "chat", 0.3, 0.9, 300, 5, False),
    Model("mistral", "mistral-embed", "embedding", 0.1, 0, 70, 0, False),
)}
# fmt: on
#: The self-hosted fine-tune genai-prices cannot price: it shows up as "unpriced" in reports.
SELF_HOSTED = Model("vllm", "acme-llama-70b-ft", "chat", 0, 0, 600, 12, False)
_SELF_HOSTED_SHARE = 0.0005
_INFRA_DEPT = "platform"  # runs the self-hosted model and owns the GPU and storage line items
_EMBEDDERS = {
    "openai": ("text-embedding-3-small", "text-embedding-3-large"),
    "google": ("gemini-embedding-001",),
    "mistral": ("mistral-embed",),
    "anthropic": ("text-embedding-3-small", "gemini-embedding-001"),
}

#: operation -> (median input tokens, sigma, median output tokens, sigma); log-normal draws.
_OPS = {
    "summarize": (3500, 0.6, 350, 0.5),
    "classify": (700, 0.5, 12, 0.5),
    "extract": (2500, 0.6, 300, 0.6),
    "chat": (2600, 0.5, 350, 0.6),
    "code_review": (9000, 0.7, 700, 0.6),
    "embed": (600, 0.9, 0, 0.0),
    "plan": (2500, 0.5, 900, 0.5),
    "research": (12000, 0.7, 1200, 0.5),
    "draft": (1800, 0.5, 700, 0.5),
}
_HEAVY_OPS = frozenset({"plan", "research", "code_review"})


@dataclass(frozen=True)
class _Archetype:
    """A kind of agent: what it does, for whom, on which models, how long its runs are."""

    ops: dict[str, int]  # operation -> weight
    interactive: bool  # talks to users during office hours; else a background job
    models: tuple[str, ...]  # candidate primary/fallback models
    session_calls: int  # mean calls per run
    tasks: tuple[str, ...]
    volume: float = 1.0
    batch_share: float = 0.0  # share of non-chat calls sent to the batch tier


def _arch(
    ops: str, interactive: bool, models: str, calls: int, tasks: str, volume: float = 1.0, batch: float = 0.0
) -> _Archetype:
    mix = {op: int(w) for op, w in (part.split(":") for part in ops.split())}
    return _Archetype(mix, interactive, tuple(models.split()), calls, tuple(tasks.split()), volume, batch)


# fmt: off
_ARCHETYPES = {
    "assistant": _arch("chat:75 summarize:10 classify:8 embed:7", True, "claude-sonnet-4-5 gpt-4o gpt-4.1 "
                       "claude-haiku-4-5 gemini-2.5-flash mistral-large-latest",
                       6, "answer-question troubleshoot policy-lookup", 1.5),
    "triage-bot": _arch("classify:70 extract:20 summarize:10", False, "gpt-4o-mini gpt-4.1-mini "
                        "claude-3-5-haiku-latest gemini-2.5-flash-lite mistral-small-latest",
                        3, "route-ticket tag-request detect-intent", 2.0, 0.15),
    "summarizer": _arch("summarize:80 extract:10 embed:10", False,
                        "gpt-4.1-mini gemini-2.5-flash claude-haiku-4-5 mistral-small-latest gpt-4o-mini",
                        4, "summarize-meeting summarize-document daily-digest", 1.2, 0.25),
    "code-reviewer": _arch("code_review:75 plan:10 summarize:15", False,
                           "claude-sonnet-4-5 gpt-4.1 codestral-latest o4-mini",
                           5, "review-pr explain-diff suggest-tests", 1.0, 0.05),
    "researcher": _arch("research:50 plan:20 summarize:20 embed:10", True,
                        "gemini-2.5-pro claude-sonnet-4-5 o3-mini gpt-4.1 claude-opus-4-1",
                        8, "market-scan literature-review competitive-analysis", 0.6),
    "planner": _arch("plan:60 chat:20 research:20", True, "o3-mini o4-mini gemini-2.5-pro claude-sonnet-4-5",
                     10, "plan-project decompose-task schedule-work", 0.7),
    "extractor": _arch("extract:70 classify:20 embed:10", False, "gpt-4o-mini gpt-4.1-mini gemini-2.5-flash "
                       "mistral-small-latest claude-3-5-haiku-latest",
                       3, "parse-invoice extract-entities parse-contract", 1.5, 0.3),
    "indexer": _arch("embed:92 summarize:8", False, "gpt-4o-mini gemini-2.5-flash-lite",
                     20, "index-documents refresh-embeddings", 2.5, 0.2),
    "copilot": _arch("chat:55 code_review:20 plan:15 draft:10", True,
                     "claude-sonnet-4-5 gpt-4.1 gpt-4o gemini-2.5-pro claude-opus-4-1",
                     8, "pair-programming write-query explain-code"),
    "writer": _arch("draft:60 summarize:20 chat:20", True,
                    "gpt-4o claude-sonnet-4-5 gemini-2.5-flash mistral-large-latest",
                    5, "draft-email write-copy draft-policy"),
    "analyst": _arch("research:30 extract:30 summarize:25 chat:15", True,
                     "gpt-4.1 gemini-2.5-pro claude-sonnet-4-5 mistral-large-latest gpt-4.1-mini",
                     6, "variance-analysis report-insights forecast-review"),
}

#: name, head-count weight, archetypes it runs
_DEPARTMENTS = tuple((name, int(weight), tuple(archetypes)) for name, weight, *archetypes in map(str.split, (
    "engineering 120 code-reviewer copilot planner indexer triage-bot",
    "research 45 researcher summarizer analyst planner", "customer-support 90 assistant triage-bot summarizer writer",
    "sales 70 writer assistant extractor analyst", "marketing 40 writer summarizer researcher assistant",
    "finance 30 analyst extractor summarizer", "legal 20 extractor summarizer writer assistant",
    "hr 18 assistant triage-bot writer summarizer", "data-science 40 analyst researcher copilot indexer",
    "product 35 researcher planner writer summarizer", "operations 45 triage-bot planner extractor assistant",
    "security 25 triage-bot code-reviewer analyst extractor", "platform 35 indexer copilot triage-bot planner",
    "compliance 15 extractor summarizer analyst")))
# fmt: on
_PROJECT_WORDS = (
    "knowledge-base onboarding automation insights self-service copilot pipeline search reporting "
    "modernization quality workflows"
).split()
_TEAM_WORDS = "core apps growth tooling ml ops enablement analytics".split()
_FIRST = (
    "alex sam maria li omar priya jonas emma noah sofia kenji ana lucas fatima david chloe ivan mei tom zoe".split()
)
_LAST = "chen garcia smith mueller kowalski okafor tanaka silva nguyen patel rossi dubois kim jensen haddad".split()


@dataclass(frozen=True)
class Department:
    name: str
    cost_center: str
    headcount: int
    growth: float  # volume growth over 90 days, 0.10 = +10%
    projects: tuple[str, ...]
    teams: tuple[str, ...]
    users: tuple[str, ...]


@dataclass(frozen=True)
class Agent:
    index: int
    name: str
    department: str
    archetype: str
    project: str
    team: str
    primary: str
    fallback: str | None
    fallback_share: float
    embedder: str
    versions: tuple[str, str]  # before and after the upgrade
    upgrade_at: float  # fraction of the window at which the upgrade ships (> 1: never)
    env_weights: tuple[float, float, float]  # production, staging, development
    weight: float  # relative call volume
    hot_prompts: tuple[tuple[str, str, int, int], ...]  # (prompt_hash, operation, input, output)
    kind: _Archetype = field(compare=False, repr=False)


@dataclass(frozen=True)
class Fleet:
    seed: int
    departments: tuple[Department, ...]
    agents: tuple[Agent, ...]

    @property
    def models(self) -> tuple[Model, ...]:
        return (*_MODELS.values(), SELF_HOSTED)

    def department(self, name: str) -> Department:
        return next(d for d in self.departments if d.name == name)

    def summary(self) -> dict[str, Any]:
        return {
            "departments": len(self.departments),
            "agents": len(self.agents),
            "users": sum(len(d.users) for d in self.departments),
            "providers": len({m.provider for m in self.models}),
            "models": len(self.models),
            "model_names": [m.name for m in self.models],
            "department_names": [d.name for d in self.departments],
        }


def build_fleet(seed: int) -> Fleet:
    """The organisation for ``seed``: departments, users and agents (see the module docstring)."""
    rng = random.Random(seed)
    departments: list[Department] = []
    agents: list[Agent] = []
    taken: set[str] = set()
    for i, (name, headcount, archetypes) in enumerate(_DEPARTMENTS):
        users = []
        for _ in range(max(6, headcount // 3)):
            user = f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}"
            while user in taken:
                user += str(rng.randint(0, 9))
            taken.add(user)
            users.append(user)
        dept = Department(
            name,
            f"CC-{1001 + i}",
            headcount,
            round(rng.uniform(0.10, 0.60), 3),
            tuple(f"{name}-{w}" for w in rng.sample(_PROJECT_WORDS, rng.randint(2, 4))),
            tuple(f"{name}-{w}" for w in rng.sample(_TEAM_WORDS, rng.randint(2, 3))),
            tuple(users),
        )
        departments.append(dept)
        count = 6 + round(headcount * 120 / 628)
        serial: dict[str, int] = {}
        for _ in range(count):
            arch_name = rng.choice(archetypes)
            arch = _ARCHETYPES[arch_name]
            serial[arch_name] = serial.get(arch_name, 0) + 1
            primary = rng.choice(arch.models)
            others = [m for m in arch.models if _MODELS[m].provider != _MODELS[primary].provider]
            fallback = rng.choice(others) if others and rng.random() < 0.6 else None
            major, minor = rng.randint(1, 3), rng.randint(0, 9)
            after = f"v{major + 1}.0" if minor == 9 else f"v{major}.{minor + 1}"
            prod = rng.uniform(0.82, 0.95)
            hot = tuple(
                (
                    f"{rng.getrandbits(64):016x}",
                    op,
                    int(_OPS[op][0] * rng.uniform(0.6, 1.4)),
                    int(_OPS[op][2] * rng.uniform(0.6, 1.4)),
                )
                for op in rng.choices(list(arch.ops), weights=list(arch.ops.values()), k=3)
            )
            agents.append(
                Agent(
                    len(agents),
                    f"{name}-{arch_name}-{serial[arch_name]}",
                    name,
                    arch_name,
                    rng.choice(dept.projects),
                    rng.choice(dept.teams),
                    primary,
                    fallback,
                    round(rng.uniform(0.02, 0.05), 3),
                    rng.choice(_EMBEDDERS[_MODELS[primary].provider]),
                    (f"v{major}.{minor}", after),
                    rng.uniform(0.1, 0.9) if rng.random() < 0.6 else 2.0,
                    (prod, (1 - prod) * 0.6, (1 - prod) * 0.4),
                    rng.lognormvariate(0, 0.9) * arch.volume * headcount / count,
                    hot,
                    arch,
                )
            )
    return Fleet(seed, tuple(departments), tuple(agents))


# -- anomalies -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Anomaly:
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
    in_med, in_sig, out_med, out_sig = _OPS[op]
    tokens_in = in_med * math.exp(in_sig**2 / 2)
    tokens_out = out_med * math.exp(out_sig**2 / 2) * _reasoning_factor(model, op)
    return (tokens_in * model.in_price + tokens_out * model.out_price) / 1e6


def _reasoning_factor(model: Model, op: str) -> float:
    return 2.5 if model.kind == "reasoning" else 1.6 if model.kind == "thinking" and op in _HEAVY_OPS else 1.0


def _agent_cost(agent: Agent, model: str | None = None, input_factor: float = 1.0) -> float:
    """Rough mean USD per call; ``model`` replaces the chat model, ``input_factor`` scales inputs."""
    total = sum(agent.kind.ops.values())
    cost = 0.0
    for op, weight in agent.kind.ops.items():
        m = _MODELS[agent.embedder if op == "embed" else model or agent.primary]
        in_part = _OPS[op][0] * math.exp(_OPS[op][1] ** 2 / 2) * m.in_price / 1e6
        cost += weight / total * (_mean_cost(m, op) + (input_factor - 1) * in_part)
    return cost


def _plan_anomalies(fleet: Fleet, spec: DemoSpec) -> list[_Anomaly]:
    """Five calibrated spikes in the second half of the window; none for windows under 8 days.

    Scopes are chosen where a spike stands clear of the noise: busy departments (never the platform
    department, whose dollar-priced GPU line items would drown a spike) and the agents with the most
    runs. Each magnitude is set with the rough price table so the scope's spend becomes ~target x.
    """
    if spec.days < 8:
        return []
    rng = random.Random(spec.seed * 7919 + spec.days)
    by_dept = {d.name: [a for a in fleet.agents if a.department == d.name] for d in fleet.departments}
    level = {kind: sum(curve) / 24 for (kind, weekend), curve in _curves().items() if not weekend}

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

    busy = sorted((d for d in by_dept if d != _INFRA_DEPT), key=lambda d: -sum(map(runs, by_dept[d])))
    switch_dept = max(busy[:6], key=pipeline_share)
    rest = sorted((d for d in by_dept if d != switch_dept), key=lambda d: -runs(busiest(d)))
    agent_depts, surge_dept = rest[:3], rng.choice([d for d in busy[:7] if d not in rest[:3] + [switch_dept]])
    rng.shuffle(agent_depts)
    causes = ["model_switch", "request_surge", "token_bloat", "runaway_loop", "request_surge"]
    rng.shuffle(causes)
    first, last = spec.days // 2, spec.days - 1  # the last day stays clean
    anomalies: list[_Anomaly] = []
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
                calls = 1 + (target - 1) * _agent_cost(agent) / _mean_cost(_MODELS[agent.primary], main_op)
                kw.update(
                    dimension={"session_id": session},
                    share=round(calls, 2),
                    session={"session_id": session, "task": "retry-until-valid", "environment": "production"},
                    description=f"{agent.name} got stuck in a retry loop: session {session} kept calling "
                    f"the model around the clock until it was killed (~{target}x its usual spend).",
                )
        anomalies.append(_Anomaly(**kw))
    return sorted(anomalies, key=lambda a: a.start)


def ground_truth(spec: DemoSpec) -> dict[str, Any]:
    """The anomalies injected by :func:`generate` for ``spec``, and a summary of the fleet."""
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
            for a in _plan_anomalies(fleet, spec)
        ],
        "fleet": fleet.summary(),
    }


# -- traffic --------------------------------------------------------------------------------------------


def _curves() -> dict[tuple[bool, bool], list[float]]:
    """(interactive, weekend) -> weight of each UTC hour: office hours (EU + US) vs night batches."""
    office = [0.06 + math.exp(-(((h - 14.5) / 4.2) ** 2)) for h in range(24)]
    batch = [1.0 + (0.6 if h < 5 else 0.0) for h in range(24)]
    return {
        (True, False): office,
        (True, True): [0.15 * w for w in office],
        (False, False): batch,
        (False, True): [0.4 * w for w in batch],
    }


class _Hours:
    """The weight of every agent in every hour, with the anomalies' effects."""

    def __init__(self, fleet: Fleet, spec: DemoSpec, anomalies: list[_Anomaly]) -> None:
        rng = random.Random(spec.seed * 104_729 + 1)
        self.fleet, self.spec, self.anomalies = fleet, spec, anomalies
        self.n = spec.days * 24
        self.curves = _curves()
        self.mean_curve = {k: sum(curve) / 24 for k, curve in self.curves.items()}
        self.dept_index = {d.name: i for i, d in enumerate(fleet.departments)}
        self.day_noise = [[rng.lognormvariate(0, 0.08) for _ in fleet.departments] for _ in range(spec.days)]
        self.hour_noise = [rng.lognormvariate(0, 0.05) for _ in range(self.n)]
        self.start_weekday = spec.start.weekday()

    def weights(self, hour: int) -> tuple[list[float], dict[int, list[tuple[_Anomaly, float]]]]:
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
        effects: dict[int, list[tuple[_Anomaly, float]]] = {}
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
    platform = fleet.department(_INFRA_DEPT)
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
    hours = _Hours(fleet, spec, _plan_anomalies(fleet, spec))
    items_per_day = 2 if spec.events >= 100 * spec.days else 0
    totals = [sum(hours.weights(h)[0]) * hours.hour_noise[h] for h in range(hours.n)]
    counts = _allocate(spec.events - items_per_day * spec.days, totals)
    rng = random.Random(spec.seed * 15_485_863 + 3)
    rand, gauss, bits, expo, exp = rng.random, rng.gauss, rng.getrandbits, rng.expovariate, math.exp
    agents = fleet.agents
    depts = {d.name: d for d in fleet.departments}
    op_tables = {name: (list(a.ops), list(accumulate(a.ops.values()))) for name, a in _ARCHETYPES.items()}
    log_ops = {op: (math.log(i), si, math.log(o) if o else 0.0, so) for op, (i, si, o, so) in _OPS.items()}
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
        switch: _Anomaly | None,
        bloat: _Anomaly | None,
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
            model = _MODELS[agent.embedder]
        elif rand() < _SELF_HOSTED_SHARE:
            model = SELF_HOSTED
        elif switch and rand() < switch.share:
            model = _MODELS[switch.model]
        elif agent.fallback and rand() < agent.fallback_share:
            model = _MODELS[agent.fallback]
        else:
            model = _MODELS[agent.primary]
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
            factor = _reasoning_factor(model, op)
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


# -- loading into a ledger ------------------------------------------------------------------------------


#: Monthly budget over a department's last 30 days of spend: most departments have headroom, some
#: are tight and one or two will run out, so a first look at the dashboard shows every status.
_BUDGET_HEADROOM = ("0.9", "1.05", "1.25", "1.5", "1.5", "2", "2")


def demo_budgets(ledger: Ledger, spec: DemoSpec) -> list[str]:
    """Monthly ``notify`` budgets for the fleet and each demo department, sized from recent spend.

    Deterministic for a seed. A budget whose name exists already (a real one, or an earlier demo's)
    is left as it is, so running the demo again neither duplicates nor resets budgets.
    """
    from decimal import ROUND_CEILING, Decimal

    report = ledger.costs(by=["department"], since=spec.end - timedelta(days=30), until=spec.end)
    existing = {budget.name for budget in ledger.budgets.list()}
    rng = random.Random(f"{spec.seed}-budgets")
    wanted: list[tuple[str, dict[str, str], Decimal]] = []
    total = Decimal(0)
    for row in report.rows():
        department, spent = row.get("department"), Decimal(row["cost_usd"])
        if not department or spent <= 0:
            continue
        total += spent
        headroom = Decimal(rng.choice(_BUDGET_HEADROOM))
        wanted.append((f"{department}-monthly", {"department": department}, spent * headroom))
    if total > 0:
        wanted.insert(0, ("fleet-monthly", {}, total * Decimal("1.25")))
    created = []
    for name, scope, amount in wanted:
        if name in existing:
            continue
        whole = max(amount.quantize(Decimal(1), rounding=ROUND_CEILING), Decimal(1))
        ledger.budgets.create(name=name, scope=scope, amount=whole, period="monthly", action="notify", actor="demo")
        created.append(name)
    return created


def load_demo(
    ledger: Ledger,
    spec: DemoSpec,
    on_progress: Callable[[int], None] | None = None,
    *,
    budgets: bool = False,
) -> dict[str, Any]:
    """Replace the ledger's demo data (``source='demo'``) with ``spec``'s fleet; real data is untouched.

    ``budgets``: also give the fleet and each department a monthly budget (:func:`demo_budgets`).

    The ground truth is stored under the meta key ``demo_ground_truth`` for detectors to be scored on.
    """
    removed = ledger.store.delete_source("demo")
    result = ledger.ingest(
        ((f"demo:{n}", event) for n, event in enumerate(generate(spec), 1)),
        source="demo",
        on_progress=on_progress,
    )
    truth = ground_truth(spec)
    ledger.store.set_meta("demo_ground_truth", truth)
    start = spec.end - timedelta(days=spec.days)
    report = ledger.costs(since=start, until=spec.end)
    created = demo_budgets(ledger, spec) if budgets else []
    fleet = truth["fleet"]
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "replaced": removed,
        "departments": fleet["departments"],
        "agents": fleet["agents"],
        "providers": fleet["providers"],
        "models": fleet["models"],
        "unpriced": int(report.total["unpriced"]),
        "cost_usd": format_usd(result.cost_nanos),
        "ground_truth": truth["anomalies"],
        "budgets_created": created,
    }
