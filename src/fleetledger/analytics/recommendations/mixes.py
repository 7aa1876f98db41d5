"""The recorded token mixes the finders work on: the window's priced calls, re-pricing them under a
change (provider, model, tier or token counts) through ``ledger.pricer``, grouping them, and the
:class:`Finding` a finder returns.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from fleetledger.core.errors import FleetLedgerError
from fleetledger.core.time import from_us
from fleetledger.pricing.engine import PriceTable
from fleetledger.storage.schema import events

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["Call", "Finding", "recorded_calls", "reprice", "top_agents", "group_by"]


@dataclass(slots=True)
class Call:
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


def recorded_calls(ledger: Ledger, since_us: int, until_us: int) -> list[Call]:
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
            Call(
                row.ts_us, row.provider, row.model, row.agent, row.user, row.operation, row.service_tier,
                row.input_tokens, row.cache_read_tokens, row.cache_write_tokens, row.output_tokens,
                row.reasoning_tokens, units, row.cost_nanos, row.prompt_hash,
            )
        )  # fmt: skip
    return out


def reprice(
    ledger: Ledger,
    calls: Iterable[Call],
    *,
    provider: str | None = None,
    model: str | None = None,
    tier: str | None = None,
    usage: Callable[[Call], dict[str, int]] | None = None,
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


@dataclass
class Finding:
    kind: str
    scope: dict[str, Any]
    title: str
    current: int
    optimized: int
    quality_impact: str
    steps: list[str]
    rollback: list[str]
    measure: dict[str, list[str | None]] = field(default_factory=dict)


def top_agents(calls: Sequence[Call], limit: int = 20) -> list[str]:
    spend: dict[str, int] = defaultdict(int)
    for call in calls:
        if call.agent:
            spend[call.agent] += call.cost
    return [a for a, _ in sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def group_by(calls: Iterable[Call], key: Callable[[Call], Any]) -> dict[Any, list[Call]]:
    groups: dict[Any, list[Call]] = defaultdict(list)
    for call in calls:
        groups[key(call)].append(call)
    return groups
