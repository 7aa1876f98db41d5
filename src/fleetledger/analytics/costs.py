"""Cost reports: the grouped spend behind ``fleetledger costs`` and ``GET /api/costs``.

Sums are integers (nano-USD, tokens) end to end, so the rows of a report add up to its total
exactly. Ratios (cost per request, per 1K tokens) are derived for display and rounded half-even to
the nano-dollar; they are never summed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from fleetledger.core.money import NANOS_PER_USD, format_usd
from fleetledger.core.time import from_us, parse_range, to_us
from fleetledger.storage.query import grouped_costs
from fleetledger.storage.schema import COST_COLUMNS, events
from fleetledger.storage.store import CostRow, Store

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["CostReport", "cost_report", "event_detail", "row_to_json", "recent_events"]

_NANO_USD = Decimal("0.000000001")
_TOKEN_MEASURES = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _ratio_usd(nanos: int, divisor: int, scale: int = 1) -> str | None:
    if not divisor:
        return None
    value = (Decimal(nanos) * scale / divisor / NANOS_PER_USD).quantize(_NANO_USD, ROUND_HALF_EVEN)
    return f"{value:f}"


def row_to_json(by: Sequence[str], keys: Sequence[Any], measures: Mapping[str, int | float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in zip(by, keys, strict=True):
        out[name] = (
            from_us(value).isoformat().replace("+00:00", "Z")
            if name in ("hour", "day") and value is not None
            else value
        )
    requests = int(measures["requests"])
    cost = int(measures["cost_nanos"])
    tokens = int(measures["input_tokens"]) + int(measures["output_tokens"])
    out["cost_usd"] = format_usd(cost)
    out["requests"] = requests
    for name in _TOKEN_MEASURES:
        out[name] = int(measures[name])
    out["errors"] = int(measures["errors"])
    out["unpriced_requests"] = int(measures["unpriced"])
    out["cost_per_request_usd"] = _ratio_usd(cost, requests)
    out["cost_per_1k_tokens_usd"] = _ratio_usd(cost, tokens, 1000)
    for column in COST_COLUMNS[1:]:
        out[column.replace("_nanos", "_usd")] = format_usd(int(measures[column]))
    latency_count = int(measures["latency_count"])
    out["avg_latency_ms"] = round(float(measures["latency_ms_sum"]) / latency_count, 1) if latency_count else None
    return out


@dataclass
class CostReport:
    by: list[str]
    since: datetime
    until: datetime
    where: dict[str, list[str | None]]
    groups: list[CostRow]

    @property
    def total(self) -> dict[str, int | float]:
        total: dict[str, int | float] = {}
        for row in self.groups:
            for name, value in row.measures.items():
                total[name] = total.get(name, 0) + value
        return total or {
            name: 0
            for name in (
                "requests",
                "errors",
                "unpriced",
                "latency_ms_sum",
                "latency_count",
                *_TOKEN_MEASURES,
                *COST_COLUMNS,
            )
        }

    def rows(self) -> list[dict[str, Any]]:
        ordered = sorted(self.groups, key=lambda r: (-int(r.measures["cost_nanos"]), [str(k) for k in r.keys]))
        if any(k in ("hour", "day") for k in self.by):
            ordered = sorted(self.groups, key=lambda r: [("" if k is None else str(k).zfill(20)) for k in r.keys])
        return [row_to_json(self.by, row.keys, row.measures) for row in ordered]

    def total_json(self) -> dict[str, Any]:
        return row_to_json([], [], self.total)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "by": self.by,
            "where": self.where,
            "rows": self.rows(),
            "total": self.total_json(),
        }


def _normalize_where(where: Mapping[str, Any] | None) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for key, value in (where or {}).items():
        values = value if isinstance(value, list | tuple | set) else [value]
        out[key] = [None if v in (None, "(none)") else str(v) for v in values]
    return out


def cost_report(
    ledger: Ledger,
    *,
    by: Sequence[str] = (),
    since: Any = "30d",
    until: Any = None,
    where: Mapping[str, Any] | None = None,
) -> CostReport:
    start, end = parse_range(since, until, now=ledger.clock())
    filters = _normalize_where(where)
    groups = grouped_costs(ledger.store, list(by), to_us(start), to_us(end), filters)
    return CostReport(by=list(by), since=start, until=end, where=filters, groups=groups)


def event_detail(store: Store, key: str) -> dict[str, Any] | None:
    """One stored event by ``event_id`` or ``request_id``, with its itemised cost."""
    with store.read() as conn:
        row = (
            conn.execute(select(events).where(or_(events.c.event_id == key, events.c.request_id == key)).limit(1))
            .mappings()
            .first()
        )
    if row is None:
        return None
    data = {k: v for k, v in row.items() if v is not None and k not in ("id", "ts_us", "ingested_us")}
    data["timestamp"] = from_us(row["ts_us"]).isoformat().replace("+00:00", "Z")
    data["ingested_at"] = from_us(row["ingested_us"]).isoformat().replace("+00:00", "Z")
    for column in COST_COLUMNS:
        data[column.replace("_nanos", "_usd")] = format_usd(data.pop(column))
    data["cost_components"] = {k: format_usd(v) for k, v in (row["cost_components"] or {}).items()}
    return data


def recent_events(
    ledger: Ledger,
    *,
    since: Any = "24h",
    until: Any = None,
    where: Mapping[str, Sequence[str | None]] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The newest events in a range matching ``where``: request-level drilldown."""
    from sqlalchemy import and_

    start, end = parse_range(since, until, now=ledger.clock())
    conditions = [events.c.ts_us >= to_us(start), events.c.ts_us < to_us(end)]
    for key, values in (where or {}).items():
        column = events.c.tags[key[4:]].as_string() if key.startswith("tag.") else events.c[key]
        wanted = [v for v in values if v is not None]
        conditions.append(column.in_(wanted) if wanted else column.is_(None))
    with ledger.store.read() as conn:
        rows = (
            conn.execute(select(events).where(and_(*conditions)).order_by(events.c.ts_us.desc()).limit(limit))
            .mappings()
            .all()
        )
    return [
        {
            "timestamp": from_us(r["ts_us"]).isoformat().replace("+00:00", "Z"),
            "event_id": r["event_id"],
            "request_id": r["request_id"],
            "trace_id": r["trace_id"],
            "span_id": r["span_id"],
            "provider": r["provider"],
            "model": r["model"],
            "agent": r["agent"],
            "department": r["department"],
            "operation": r["operation"],
            "input_tokens": r["input_tokens"],
            "output_tokens": r["output_tokens"],
            "cost_usd": format_usd(r["cost_nanos"]),
            "status": r["status"],
            "latency_ms": r["latency_ms"],
        }
        for r in rows
    ]
