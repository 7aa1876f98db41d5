"""The provider comparison (dashboard chart 3.x "providers"): cost, volume, errors and latency per provider.

Its own module because two readers need it: the chart dispatcher in :mod:`.charts` and the
provider cost-performance matrix in :mod:`.matrix`, which :mod:`.charts` also dispatches to.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from fleetledger.analytics.chart_base import Where, chart_range, percentile, ratio, raw_filter, sample_step
from fleetledger.core.money import format_usd
from fleetledger.storage.query import grouped_costs
from fleetledger.storage.schema import events

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["provider_comparison"]


def provider_comparison(
    ledger: Ledger, *, since: Any = "30d", until: Any = None, where: Where | None = None
) -> dict[str, Any]:
    """Per provider: cost, volume, error rate, cost per 1K tokens, p50/p90 latency."""
    start, end, s_us, e_us = chart_range(ledger, since, until)
    rows = grouped_costs(ledger.store, ["provider"], s_us, e_us, where or {})
    conditions = [events.c.ts_us >= s_us, events.c.ts_us < e_us, events.c.latency_ms.is_not(None), *raw_filter(where)]
    step = sample_step(ledger, conditions)
    if step > 1:
        conditions.append(events.c.id % step == 0)
    latencies: dict[str, list[float]] = defaultdict(list)
    with ledger.store.read() as conn:
        for provider, latency in conn.execute(select(events.c.provider, events.c.latency_ms).where(and_(*conditions))):
            latencies[provider].append(float(latency))
    out = []
    for row in sorted(rows, key=lambda r: -int(r.measures["cost_nanos"])):
        m = row.measures
        tokens = int(m["input_tokens"]) + int(m["output_tokens"])
        cost = int(m["cost_nanos"])
        provider = row.keys[0]
        out.append(
            {
                "provider": provider,
                "cost_usd": format_usd(cost),
                "requests": int(m["requests"]),
                "error_rate_pct": ratio(int(m["errors"]), int(m["requests"])),
                "cost_per_1k_tokens_usd": format_usd(cost * 1000 // tokens) if tokens else None,
                "cost_per_request_usd": format_usd(cost // int(m["requests"])) if m["requests"] else None,
                "p50_latency_ms": percentile(latencies.get(provider, []), 50),
                "p90_latency_ms": percentile(latencies.get(provider, []), 90),
            }
        )
    return {"since": start.isoformat(), "until": end.isoformat(), "providers": out, "sampled_every": step}
