"""The demo organisation: models, operations, agent archetypes, departments, and the fleet built from them.

Fourteen departments, each with a cost center (``CC-1001``...), a head-count weight, a growth
rate (+10%..+60% over 90 days), a few projects and teams, and the *archetypes* of agent it
runs. An archetype (``assistant``, ``triage-bot``, ``code-reviewer``, ``researcher``...) fixes
an agent's operation mix (summarize, classify, extract, chat, code_review, embed, plan,
research, draft), whether humans talk to it (interactive agents have a ``user`` and follow
office hours, background agents run all day and use the batch tier), the models it may run on
and how many calls one run (session) makes. Each of the ~200 agents gets a primary model, often
a fallback on another provider, an embedding model, a version that is upgraded once during the
window (``v1.9`` -> ``v2.0``), an environment mix (mostly production) and a Pareto-like volume.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Model",
    "MODELS",
    "SELF_HOSTED",
    "SELF_HOSTED_SHARE",
    "INFRA_DEPT",
    "OPS",
    "Archetype",
    "ARCHETYPES",
    "Department",
    "Agent",
    "Fleet",
    "build_fleet",
    "reasoning_factor",
    "curves",
]


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
MODELS = {m.name: m for m in (
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
SELF_HOSTED_SHARE = 0.0005
INFRA_DEPT = "platform"  # runs the self-hosted model and owns the GPU and storage line items
_EMBEDDERS = {
    "openai": ("text-embedding-3-small", "text-embedding-3-large"),
    "google": ("gemini-embedding-001",),
    "mistral": ("mistral-embed",),
    "anthropic": ("text-embedding-3-small", "gemini-embedding-001"),
}

#: operation -> (median input tokens, sigma, median output tokens, sigma); log-normal draws.
OPS = {
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
class Archetype:
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
) -> Archetype:
    mix = {op: int(w) for op, w in (part.split(":") for part in ops.split())}
    return Archetype(mix, interactive, tuple(models.split()), calls, tuple(tasks.split()), volume, batch)


# fmt: off
ARCHETYPES = {
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
    kind: Archetype = field(compare=False, repr=False)


@dataclass(frozen=True)
class Fleet:
    seed: int
    departments: tuple[Department, ...]
    agents: tuple[Agent, ...]

    @property
    def models(self) -> tuple[Model, ...]:
        return (*MODELS.values(), SELF_HOSTED)

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
            arch = ARCHETYPES[arch_name]
            serial[arch_name] = serial.get(arch_name, 0) + 1
            primary = rng.choice(arch.models)
            others = [m for m in arch.models if MODELS[m].provider != MODELS[primary].provider]
            fallback = rng.choice(others) if others and rng.random() < 0.6 else None
            major, minor = rng.randint(1, 3), rng.randint(0, 9)
            after = f"v{major + 1}.0" if minor == 9 else f"v{major}.{minor + 1}"
            prod = rng.uniform(0.82, 0.95)
            hot = tuple(
                (
                    f"{rng.getrandbits(64):016x}",
                    op,
                    int(OPS[op][0] * rng.uniform(0.6, 1.4)),
                    int(OPS[op][2] * rng.uniform(0.6, 1.4)),
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
                    rng.choice(_EMBEDDERS[MODELS[primary].provider]),
                    (f"v{major}.{minor}", after),
                    rng.uniform(0.1, 0.9) if rng.random() < 0.6 else 2.0,
                    (prod, (1 - prod) * 0.6, (1 - prod) * 0.4),
                    rng.lognormvariate(0, 0.9) * arch.volume * headcount / count,
                    hot,
                    arch,
                )
            )
    return Fleet(seed, tuple(departments), tuple(agents))


def reasoning_factor(model: Model, op: str) -> float:
    return 2.5 if model.kind == "reasoning" else 1.6 if model.kind == "thinking" and op in _HEAVY_OPS else 1.0


def curves() -> dict[tuple[bool, bool], list[float]]:
    """(interactive, weekend) -> weight of each UTC hour: office hours (EU + US) vs night batches."""
    office = [0.06 + math.exp(-(((h - 14.5) / 4.2) ** 2)) for h in range(24)]
    batch = [1.0 + (0.6 if h < 5 else 0.0) for h in range(24)]
    return {
        (True, False): office,
        (True, True): [0.15 * w for w in office],
        (False, False): batch,
        (False, True): [0.4 * w for w in batch],
    }
