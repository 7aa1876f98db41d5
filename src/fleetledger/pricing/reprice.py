"""Re-price stored events after a price change (``fleetledger reprice --since``).

Events are rebuilt from their stored columns, priced with today's catalog and overrides *at their
own timestamps*, updated where the cost changed, and the rollups of each day are rebuilt from raw
events, one UTC day per transaction. A day is either fully re-priced or untouched, so an
interrupted run can simply be run again. Line items (``cost_usd``) keep the cost they reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, func, select

from fleetledger.core.money import format_usd
from fleetledger.core.time import floor_day, from_us, to_us
from fleetledger.core.usage import EXTRA_UNIT_FIELDS, UsageEvent
from fleetledger.pricing import BUCKETS
from fleetledger.storage.schema import events
from fleetledger.storage.store import DAY_US

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["reprice", "RepriceResult"]

_REBUILD = (
    "provider",
    "model",
    "service_tier",
    "category",
    "status",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


@dataclass
class RepriceResult:
    events: int = 0
    changed: int = 0
    newly_priced: int = 0
    delta_nanos: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "changed": self.changed,
            "newly_priced": self.newly_priced,
            "delta_usd": format_usd(self.delta_nanos),
        }


def _event_from_row(row: Any) -> UsageEvent:
    data: dict[str, Any] = {name: row[name] for name in _REBUILD}
    data["timestamp"] = from_us(row["ts_us"])
    for name, value in (row["units"] or {}).items():
        if name in EXTRA_UNIT_FIELDS:
            data[name] = value
    return UsageEvent.model_validate(data)


def reprice(
    ledger: Ledger,
    since: datetime,
    until: datetime | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RepriceResult:
    """Re-price events in ``[since, until)``; ``on_progress(done_days, total_days)``."""
    ledger.flush()
    store, pricer = ledger.store, ledger.pricer
    result = RepriceResult()
    with store.read() as conn:
        last = conn.execute(select(func.max(events.c.ts_us))).scalar()
    if last is None:
        return result
    end = until or from_us(last + 1)
    day = floor_day(since)
    days = max(1, -(-(to_us(end) - to_us(day)) // DAY_US))
    update = (
        events.update()
        .where(events.c.id == bindparam("row_id"))
        .values(
            {
                name: bindparam(f"new_{name}")
                for name in (
                    "cost_nanos",
                    *(f"cost_{b}_nanos" for b in BUCKETS),
                    "cost_components",
                    "priced",
                    "price_source",
                    "price_version",
                    "catalog_model",
                    "unpriced_reason",
                    "provider",
                )
            }
        )
    )
    done = 0
    while day < end:
        start_us = max(to_us(day), to_us(since))
        stop_us = min(to_us(day + timedelta(days=1)), to_us(end))
        with store.write() as conn:
            rows = (
                conn.execute(
                    select(events).where(
                        and_(events.c.ts_us >= start_us, events.c.ts_us < stop_us, events.c.price_source != "line-item")
                    )
                )
                .mappings()
                .all()
            )
            changes = []
            for row in rows:
                cost = pricer.price(_event_from_row(row))
                result.events += 1
                if (
                    cost.total_nanos == row["cost_nanos"]
                    and cost.priced == row["priced"]
                    and cost.version == row["price_version"]
                ):
                    continue
                result.changed += 1
                result.newly_priced += cost.priced and not row["priced"]
                result.delta_nanos += cost.total_nanos - row["cost_nanos"]
                change = {
                    "row_id": row["id"],
                    "new_cost_nanos": cost.total_nanos,
                    "new_cost_components": cost.components or None,
                    "new_priced": cost.priced,
                    "new_price_source": cost.source,
                    "new_price_version": cost.version,
                    "new_catalog_model": cost.model_id,
                    "new_unpriced_reason": cost.reason,
                    "new_provider": cost.provider,
                }
                for name, value in zip(BUCKETS, cost.buckets, strict=True):
                    change[f"new_cost_{name}_nanos"] = value
                changes.append(change)
            if changes:
                conn.execute(update, changes)
                store.rebuild_rollups(conn, to_us(day), to_us(day) + DAY_US)
        day += timedelta(days=1)
        done += 1
        if on_progress is not None:
            on_progress(done, days)
    return result
