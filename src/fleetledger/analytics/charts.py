"""The data behind the Cost Management charts (dashboard spec charts 3.x), as JSON-ready dicts.

Each function answers from one or two grouped queries over the rollups (or raw events where a
distribution is needed), and every tree or breakdown it returns sums *exactly*: parents are the
integer sums of their children, computed in nano-USD and formatted once.

Percentiles and distributions need individual requests, so they read raw events; above
``MAX_SAMPLE`` requests in the range they read a deterministic 1-in-N sample by row id and say so
(``sampled_every``).

:func:`chart_data` answers any chart by name, the matrices of :mod:`.matrix` included. The pieces
the matrices share with these charts live below both, in :mod:`.chart_base` (range, sampling,
percentiles) and :mod:`.providers` (the provider comparison), so the dispatch imports
:mod:`.matrix` like any other caller and :mod:`.matrix` never imports this module.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select

from fleetledger.analytics import matrix
from fleetledger.analytics.chart_base import (
    MAX_SAMPLE,
    Where,
    chart_range,
    ratio,
    raw_filter,
    sample_step,
)
from fleetledger.analytics.providers import provider_comparison
from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import format_usd
from fleetledger.core.time import from_us
from fleetledger.storage.query import (
    TIME_KEYS,
    CostRow,
    filter_conditions,
    grouped_costs,
    needs_raw,
    raw_column,
    rollup_column,
    segments,
    validate_keys,
)
from fleetledger.storage.schema import (
    COARSE_DIMENSIONS,
    events,
    rollup_daily,
    rollup_daily_coarse,
    rollup_hourly,
    rollup_hourly_coarse,
)

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger
    from fleetledger.storage.store import Store

__all__ = [
    "spend_trend",
    "provider_comparison",
    "cost_distribution",
    "top_agents",
    "sunburst",
    "sankey",
    "token_waterfall",
    "MAX_SAMPLE",
]


def spend_trend(
    ledger: Ledger, *, by: str = "provider", since: Any = "30d", until: Any = None, where: Where | None = None
) -> dict[str, Any]:
    """Daily spend stacked by ``by``, each series' total and its change vs the previous period."""
    start, end, s_us, e_us = chart_range(ledger, since, until)
    rows = grouped_costs(ledger.store, ["day", by], s_us, e_us, where or {})
    previous = grouped_costs(ledger.store, [by], s_us - (e_us - s_us), s_us, where or {})
    before = {r.keys[0]: int(r.measures["cost_nanos"]) for r in previous}
    days = sorted({r.keys[0] for r in rows})
    series: dict[Any, dict[int, int]] = defaultdict(dict)
    for row in rows:
        series[row.keys[1]][row.keys[0]] = int(row.measures["cost_nanos"])
    out = []
    for key, by_day in sorted(series.items(), key=lambda item: -sum(item[1].values())):
        total = sum(by_day.values())
        prior = before.get(key, 0)
        out.append(
            {
                "key": key,
                "total_usd": format_usd(total),
                "previous_usd": format_usd(prior),
                "change_pct": ratio(total - prior, prior),
                "points": [format_usd(by_day.get(day, 0)) for day in days],
            }
        )
    return {
        "by": by,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "days": [from_us(d).date().isoformat() for d in days],
        "series": out,
        "total_usd": format_usd(sum(sum(s.values()) for s in series.values())),
    }


def cost_distribution(
    ledger: Ledger,
    *,
    since: Any = "30d",
    until: Any = None,
    where: Where | None = None,
    bins: int = 30,
    outliers: int = 20,
) -> dict[str, Any]:
    """Cost per request: log-spaced histogram, percentiles, and the costliest requests (IQR outliers)."""
    start, end, s_us, e_us = chart_range(ledger, since, until)
    conditions = [
        events.c.ts_us >= s_us,
        events.c.ts_us < e_us,
        events.c.category.in_(["llm_inference", "embedding"]),
        *raw_filter(where),
    ]
    step = sample_step(ledger, conditions)
    sampled = [*conditions, events.c.id % step == 0] if step > 1 else conditions
    with ledger.store.read() as conn:
        costs = [int(c) for (c,) in conn.execute(select(events.c.cost_nanos).where(and_(*sampled)))]
        top = conn.execute(
            select(
                events.c.request_id,
                events.c.event_id,
                events.c.agent,
                events.c.model,
                events.c.cost_nanos,
                events.c.trace_id,
                events.c.ts_us,
            )
            .where(and_(*conditions))
            .order_by(events.c.cost_nanos.desc())
            .limit(outliers)
        ).all()
    if not costs:
        return {"since": start.isoformat(), "until": end.isoformat(), "requests": 0, "histogram": [], "outliers": []}
    ordered = sorted(costs)

    def pct(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    q1, q3 = pct(25), pct(75)
    fence = q3 + 3 * (q3 - q1)
    low, high = max(ordered[0], 1), max(ordered[-1], 1)
    raw = [int(low * (high / low) ** (i / bins)) for i in range(bins + 1)] if high > low else [low, high + 1]
    # Whole nano-dollar edges: drop the repeats the truncation makes at the cheap end (empty [a, a)
    # bins), start at the cheapest request (zero-cost cache hits included) and end past the dearest.
    edges = sorted(set(raw))
    edges[0] = min(edges[0], ordered[0])
    edges[-1] = max(edges[-1], ordered[-1] + 1)
    if len(edges) < 2:
        edges.append(edges[0] + 1)
    counts = [0] * (len(edges) - 1)
    for cost in ordered:
        index = next((i for i in range(len(edges) - 1) if cost < edges[i + 1]), len(edges) - 2)
        counts[index] += 1
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "requests": len(costs) * step,
        "sampled_every": step,
        "p50_usd": format_usd(pct(50)),
        "p90_usd": format_usd(pct(90)),
        "p99_usd": format_usd(pct(99)),
        "outlier_fence_usd": format_usd(fence),
        "histogram": [
            {"from_usd": format_usd(edges[i]), "to_usd": format_usd(edges[i + 1]), "requests": counts[i] * step}
            for i in range(len(counts))
        ],
        "outliers": [
            {
                "request_id": r.request_id or r.event_id,
                "agent": r.agent,
                "model": r.model,
                "cost_usd": format_usd(r.cost_nanos),
                "trace_id": r.trace_id,
                "timestamp": from_us(r.ts_us).isoformat(),
            }
            for r in top
            if r.cost_nanos > fence
        ],
    }


def top_agents(
    ledger: Ledger, *, since: Any = "30d", until: Any = None, where: Where | None = None, limit: int = 20
) -> dict[str, Any]:
    """The costliest agents with cost per request, tokens per request, cache use and optimization potential.

    Potential: what the agent would save at the median cost per request of agents doing the same
    main operation (never negative); an estimate of the gap, not a promise.
    """
    start, end, s_us, e_us = chart_range(ledger, since, until)
    rows = grouped_costs(ledger.store, ["agent", "department", "operation"], s_us, e_us, where or {})
    agents: dict[Any, dict[str, Any]] = {}
    for row in rows:
        agent, department, operation = row.keys
        m = row.measures
        entry = agents.setdefault(
            agent,
            {
                "agent": agent,
                "department": department,
                "ops": defaultdict(int),
                "cost": 0,
                "requests": 0,
                "input": 0,
                "output": 0,
                "cached": 0,
            },
        )
        entry["ops"][operation] += int(m["requests"])
        entry["cost"] += int(m["cost_nanos"])
        entry["requests"] += int(m["requests"])
        entry["input"] += int(m["input_tokens"])
        entry["output"] += int(m["output_tokens"])
        entry["cached"] += int(m["cache_read_tokens"])
    by_operation: dict[Any, list[int]] = defaultdict(list)
    for entry in agents.values():
        entry["main_operation"] = max(entry["ops"], key=entry["ops"].get) if entry["ops"] else None
        if entry["requests"]:
            by_operation[entry["main_operation"]].append(entry["cost"] // entry["requests"])
    medians = {op: sorted(v)[len(v) // 2] for op, v in by_operation.items()}
    out = []
    for entry in sorted(agents.values(), key=lambda e: -e["cost"])[:limit]:
        requests = entry["requests"]
        per_request = entry["cost"] // requests if requests else 0
        median = medians.get(entry["main_operation"], per_request)
        potential = max(0, (per_request - median) * requests)
        out.append(
            {
                "agent": entry["agent"],
                "department": entry["department"],
                "main_operation": entry["main_operation"],
                "cost_usd": format_usd(entry["cost"]),
                "requests": requests,
                "cost_per_request_usd": format_usd(per_request),
                "tokens_per_request": (entry["input"] + entry["output"]) // requests if requests else None,
                "output_input_ratio": f"{Decimal(entry['output']) / entry['input']:.3f}" if entry["input"] else None,
                "cache_hit_pct": ratio(entry["cached"], entry["input"]),
                "optimization_potential_usd": format_usd(potential),
            }
        )
    return {"since": start.isoformat(), "until": end.isoformat(), "agents": out}


def _tree(rows: Sequence[Any], depth: int) -> list[dict[str, Any]]:
    """Nested nodes from rows keyed by ``depth`` levels; each parent is the exact sum of its children."""
    nodes: dict[Any, Any] = {}
    for row in rows:
        cursor = nodes
        for level, key in enumerate(row.keys[:depth]):
            node = cursor.setdefault(key if key is not None else "(none)", {"_nanos": 0, "_children": {}})
            node["_nanos"] += int(row.measures["cost_nanos"])
            cursor = node["_children"]
            if level == depth - 1:
                node["_leaf"] = True

    def render(level: dict[Any, Any]) -> list[dict[str, Any]]:
        out = []
        for name, node in sorted(level.items(), key=lambda item: -item[1]["_nanos"]):
            item: dict[str, Any] = {"name": name, "value_usd": format_usd(node["_nanos"])}
            if node["_children"]:
                item["children"] = render(node["_children"])
            out.append(item)
        return out

    return render(nodes)


def measure_sums(
    store: Store,
    keys: Sequence[str],
    since_us: int,
    until_us: int,
    where: Where,
    measures: Sequence[str] = ("cost_nanos",),
) -> dict[tuple[Any, ...], list[int]]:
    """Exact sums of a few ``measures`` grouped by ``keys``: :func:`grouped_costs`' plan and tables.

    The same segments (raw edges, hourly, daily rollups; coarse rollups when every key is one they
    keep), but only the measures asked for instead of all sixteen: the sunburst and the anomaly
    scan read tens of thousands of rollup rows, and summing measures they never use was most of
    their time. ``measures`` are rollup measure names (``requests``, ``cost_nanos``, tokens...).
    """
    validate_keys(keys, what="group by")
    validate_keys(list(where), what="filter")
    if until_us <= since_us:
        raise InvalidInput("time range: --until must be after --since")
    every = [*keys, *where]
    totals: dict[tuple[Any, ...], list[int]] = {}
    if needs_raw(every):
        for cost_row in grouped_costs(store, list(keys), since_us, until_us, where):
            totals[cost_row.keys] = [int(cost_row.measures[m]) for m in measures]
        return totals
    coarse = all(k in COARSE_DIMENSIONS or k in TIME_KEYS for k in every)
    with store.read() as conn:
        for kind, start, end in segments(since_us, until_us, allow_daily="hour" not in keys):
            if kind == "raw":
                group = [raw_column(k) for k in keys]
                conditions = [
                    events.c.ts_us >= start,
                    events.c.ts_us < end,
                    *filter_conditions(raw_column, where, rollup=False),
                ]
                sums = [func.count() if m == "requests" else func.coalesce(func.sum(events.c[m]), 0) for m in measures]
            else:
                if coarse:
                    table = rollup_daily_coarse if kind == "daily" else rollup_hourly_coarse
                else:
                    table = rollup_daily if kind == "daily" else rollup_hourly
                group = [rollup_column(table, k) for k in keys]
                conditions = [
                    table.c.bucket_us >= start,
                    table.c.bucket_us < end,
                    *filter_conditions(partial(rollup_column, table), where, rollup=True),
                ]
                sums = [func.coalesce(func.sum(table.c[m]), 0) for m in measures]
            statement = select(*group, *sums).where(and_(*conditions))
            width = len(keys)
            for row in conn.execute(statement.group_by(*group) if group else statement):
                if not group and not any(row):
                    continue  # an empty segment's SUMs
                key = tuple(None if v == "" else v for v in row[:width])
                acc = totals.get(key)
                if acc is None:
                    totals[key] = [int(v or 0) for v in row[width:]]
                else:
                    for i, v in enumerate(row[width:]):
                        acc[i] += int(v or 0)
    return totals


def sunburst(
    ledger: Ledger,
    *,
    since: Any = "30d",
    until: Any = None,
    where: Where | None = None,
    levels: Sequence[str] = ("department", "agent", "model", "operation"),
) -> dict[str, Any]:
    """Department -> agent -> model -> operation, one grouped query, exact at every level."""
    start, end, s_us, e_us = chart_range(ledger, since, until)
    sums = measure_sums(ledger.store, list(levels), s_us, e_us, where or {})
    rows = [CostRow(keys=key, measures={"cost_nanos": nanos}) for key, (nanos,) in sums.items()]
    total = sum(int(r.measures["cost_nanos"]) for r in rows)
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "levels": list(levels),
        "total_usd": format_usd(total),
        "children": _tree(rows, len(levels)),
    }


def sankey(
    ledger: Ledger, *, since: Any = "30d", until: Any = None, where: Where | None = None, max_agents: int = 40
) -> dict[str, Any]:
    """Org -> department -> agent -> model flows; agents beyond ``max_agents`` fold into 'other agents'."""
    start, end, s_us, e_us = chart_range(ledger, since, until)
    rows = grouped_costs(ledger.store, ["department", "agent", "model"], s_us, e_us, where or {})
    by_agent: dict[Any, int] = defaultdict(int)
    for row in rows:
        by_agent[row.keys[1]] += int(row.measures["cost_nanos"])
    kept = {a for a, _ in sorted(by_agent.items(), key=lambda item: -item[1])[:max_agents]}
    links: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        department = f"dept:{row.keys[0] or '(none)'}"
        agent = f"agent:{row.keys[1]}" if row.keys[1] in kept else "agent:(other agents)"
        model = f"model:{row.keys[2] or '(none)'}"
        cost = int(row.measures["cost_nanos"])
        links[("org", department)] += cost
        links[(department, agent)] += cost
        links[(agent, model)] += cost
    nodes = sorted({n for link in links for n in link})
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "nodes": [{"id": n, "name": n.split(":", 1)[-1]} for n in nodes],
        "links": [{"source": s, "target": t, "value_usd": format_usd(v)} for (s, t), v in sorted(links.items()) if v],
    }


def token_waterfall(
    ledger: Ledger, *, since: Any = "30d", until: Any = None, where: Where | None = None
) -> dict[str, Any]:
    """Where the money went by token kind, and what the cache saved.

    ``cache_saved`` is what the cache reads would have cost at each model's uncached input rate
    minus what they cost, computed per model from the stored components (exact, no estimate).
    Reasoning is the share of output cost spent on reasoning tokens (per model, pro rata).
    """
    start, end, s_us, e_us = chart_range(ledger, since, until)
    rows = grouped_costs(ledger.store, ["provider", "model", "category"], s_us, e_us, where or {})
    parts: defaultdict[str, int] = defaultdict(int)
    saved = 0
    for row in rows:
        m = {k: int(v) for k, v in row.measures.items() if k != "latency_ms_sum"}
        category = row.keys[2]
        if category == "embedding":
            parts["embeddings"] += m["cost_nanos"]
            continue
        if category not in ("llm_inference", None):
            parts["other"] += m["cost_nanos"]
            continue
        uncached = m["input_tokens"] - m["cache_read_tokens"] - m["cache_write_tokens"]
        if uncached > 0 and m["cache_read_tokens"]:
            full = m["cost_input_nanos"] * m["cache_read_tokens"] // uncached
            saved += max(0, full - m["cost_cache_read_nanos"])
        reasoning = m["cost_output_nanos"] * m["reasoning_tokens"] // m["output_tokens"] if m["output_tokens"] else 0
        parts["input"] += m["cost_input_nanos"]
        parts["cache_read"] += m["cost_cache_read_nanos"]
        parts["cache_write"] += m["cost_cache_write_nanos"]
        parts["output"] += m["cost_output_nanos"] - reasoning
        parts["reasoning"] += reasoning
        parts["tools"] += m["cost_other_nanos"]
    order = ("input", "cache_read", "cache_write", "output", "reasoning", "tools", "embeddings", "other")
    total = sum(parts.values())
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "steps": [{"name": name, "cost_usd": format_usd(parts[name])} for name in order],
        "total_usd": format_usd(total),
        "cache_saved_usd": format_usd(saved),
    }


# -- one entry point by chart name (the CLI's `fleetledger chart` and `GET /api/charts/{chart}`) ----

#: Every chart whose data has a name; the last two are the matrices of :mod:`.matrix`.
CHART_NAMES = (
    "trend",
    "providers",
    "distribution",
    "agents",
    "sunburst",
    "sankey",
    "waterfall",
    "models",
    "provider-matrix",
)


def chart_data(
    ledger: Ledger,
    name: str,
    *,
    since: Any = "30d",
    until: Any = None,
    where: Mapping[str, Any] | None = None,
    by: str = "provider",
    limit: int | None = None,
) -> dict[str, Any]:
    """The data behind the chart called ``name``, with the options that chart takes.

    ``by``: what the trend stacks (provider, model, department...); ``limit``: rows of the agents
    table, or agents the Sankey shows before folding the rest.
    """
    functions: dict[str, Any] = {
        "trend": spend_trend,
        "providers": provider_comparison,
        "distribution": cost_distribution,
        "agents": top_agents,
        "sunburst": sunburst,
        "sankey": sankey,
        "waterfall": token_waterfall,
        "models": matrix.model_matrix,
        "provider-matrix": matrix.provider_matrix,
    }
    function = functions.get(name)
    if function is None:
        raise InvalidInput(f"chart: {name!r} must be one of {', '.join(CHART_NAMES)}")
    filters = dict(where or {})
    validate_keys(list(filters), what="where")
    kwargs: dict[str, Any] = {"since": since, "until": until, "where": filters}
    if name == "trend":
        validate_keys([by], what="by")
        kwargs["by"] = by
    if limit is not None and name in ("agents", "sankey"):
        kwargs["limit" if name == "agents" else "max_agents"] = limit
    return function(ledger, **kwargs)  # type: ignore[no-any-return]
