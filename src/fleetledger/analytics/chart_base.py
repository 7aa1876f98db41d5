"""What the chart modules share: the range, raw-event filters, the 1-in-N sample, percentiles, ratios.

Charts that need individual requests (percentiles, distributions) read raw events; above
:data:`MAX_SAMPLE` requests in the range they read a deterministic 1-in-N sample by row id
(:func:`sample_step`) and say so in their answer (``sampled_every``).

Kept apart from :mod:`.charts` so that :mod:`.providers` and :mod:`.matrix`, which the chart
dispatcher in :mod:`.charts` imports, can use the same pieces without importing it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select

from fleetledger.core.time import parse_range, to_us
from fleetledger.storage.schema import events

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["MAX_SAMPLE", "Where", "chart_range", "ratio", "raw_filter", "sample_step", "percentile"]

MAX_SAMPLE = 200_000
#: ``{dimension or tag.<name>: [values]}``; ``None`` among the values means unattributed.
Where = Mapping[str, Sequence[str | None]]


def chart_range(ledger: Ledger, since: Any, until: Any) -> tuple[datetime, datetime, int, int]:
    """``[since, until)`` against the ledger's clock, as datetimes and as microseconds."""
    start, end = parse_range(since, until, now=ledger.clock())
    return start, end, to_us(start), to_us(end)


def ratio(part: int, whole: int) -> str | None:
    """``part`` as a percentage of ``whole`` with two decimals; None when ``whole`` is 0."""
    if not whole:
        return None
    return f"{(Decimal(part) * 100 / whole).quantize(Decimal('0.01')):f}"


def raw_filter(where: Where | None) -> list[Any]:
    """``where`` as conditions on the ``events`` table (``None`` matches NULL)."""
    conditions = []
    for key, values in (where or {}).items():
        column = events.c[key] if not key.startswith("tag.") else events.c.tags[key[4:]].as_string()
        wanted = [v for v in values if v is not None]
        conditions.append(column.in_(wanted) if wanted else column.is_(None))
    return conditions


def sample_step(ledger: Ledger, conditions: list[Any]) -> int:
    """N of the 1-in-N sample that keeps at most :data:`MAX_SAMPLE` of the matching events (1: all)."""
    with ledger.store.read() as conn:
        count = int(conn.execute(select(func.count()).select_from(events).where(and_(*conditions))).scalar() or 0)
    return max(1, -(-count // MAX_SAMPLE))


def percentile(values: list[float], pct: float) -> float | None:
    """The nearest-rank ``pct`` percentile of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]
