"""One report dataset, built once and rendered by every format (CSV, Excel, PDF, FOCUS).

Exactness: the dataset reads the period's spend **once**, grouped by day, department, cost center,
project, agent, provider and model (the daily rollups answer it), and derives every breakdown
(totals, by department, by cost center, by model, daily trend, token types, detailed lines) from
those same integer nano-USD rows, so every breakdown sums to the same total to the nano-dollar,
whatever is ingested meanwhile. For display each breakdown is rounded to cents with the
largest-remainder rule (:func:`~fleetledger.analytics.allocation.round_breakdown`): the rounded parts
sum exactly to the rounded total, which is the same in every breakdown. Money is ``Decimal``
throughout; the exact nine-place amounts travel with the rounded ones.

Chargeback (shared infrastructure and storage line items spread over cost centers) comes from
:func:`~fleetledger.analytics.allocation.allocate_shared`; its charges sum exactly to the total too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from fleetledger.analytics.allocation import allocate_shared, round_breakdown
from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import nanos_to_usd
from fleetledger.core.time import from_us, to_us
from fleetledger.reports.periods import Period, parse_period
from fleetledger.storage.schema import ROLLUP_MEASURES

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "KINDS",
    "FORMATS",
    "DETAIL_KEYS",
    "MEASURES",
    "TOKEN_TYPES",
    "Line",
    "Breakdown",
    "ReportData",
    "build_report",
    "scope_where",
]

KINDS = ("summary", "detailed", "chargeback")
FORMATS = ("csv", "xlsx", "pdf", "focus")
#: The grouping every breakdown is derived from (all kept by the daily rollups).
DETAIL_KEYS = ("day", "department", "cost_center", "project", "agent", "provider", "model")
#: What a report sums: every rollup measure but latency (a report carries no latency).
MEASURES = tuple(name for name in ROLLUP_MEASURES if not name.startswith("latency"))
_M = {name: i for i, name in enumerate(MEASURES)}
#: Token types: (label, cost measure, token count function over a measures vector).
TOKEN_TYPES: tuple[tuple[str, str, Callable[[Sequence[int]], int]], ...] = (
    (
        "input",
        "cost_input_nanos",
        lambda m: m[_M["input_tokens"]] - m[_M["cache_read_tokens"]] - m[_M["cache_write_tokens"]],
    ),
    ("cache_read", "cost_cache_read_nanos", lambda m: m[_M["cache_read_tokens"]]),
    ("cache_write", "cost_cache_write_nanos", lambda m: m[_M["cache_write_tokens"]]),
    ("output", "cost_output_nanos", lambda m: m[_M["output_tokens"]]),
    ("other", "cost_other_nanos", lambda m: 0),
)
_CENT = Decimal("0.01")
_PCT = Decimal("0.01")
_HEADINGS = {
    "day": "Day",
    "department": "Department",
    "cost_center": "Cost center",
    "project": "Project",
    "agent": "Agent",
    "provider": "Provider",
    "model": "Model",
    "token_type": "Token type",
}


@dataclass
class Line:
    """One row of a breakdown: its keys, exact and displayed cost, share and volumes."""

    keys: tuple[Any, ...]
    cost: Decimal  # exact, nine places
    display: Decimal  # cents; the displayed lines of a breakdown sum to its displayed total
    share_pct: Decimal
    measures: tuple[int, ...]

    def measure(self, name: str) -> int:
        return self.measures[_M[name]]


@dataclass
class Breakdown:
    name: str
    keys: tuple[str, ...]
    lines: list[Line]
    total: Decimal
    display_total: Decimal

    @property
    def headings(self) -> list[str]:
        return [_HEADINGS.get(k, k) for k in self.keys]


@dataclass
class ReportData:
    """Everything a report shows. Built by :func:`build_report`."""

    kind: str
    period: Period
    since: datetime
    until: datetime
    complete: bool
    generated_at: datetime
    departments: tuple[str | None, ...] | None
    cost_centers: tuple[str | None, ...] | None
    total_nanos: int
    totals: tuple[int, ...]
    breakdowns: dict[str, Breakdown]
    token_types: list[dict[str, Any]]
    chargeback: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    currency: str = "USD"

    @property
    def title(self) -> str:
        return {
            "summary": "LLM cost report",
            "detailed": "LLM cost report (detailed)",
            "chargeback": "LLM chargeback report",
        }[self.kind]

    @property
    def total(self) -> Decimal:
        return nanos_to_usd(self.total_nanos)

    @property
    def display_total(self) -> Decimal:
        return self.total.quantize(_CENT, ROUND_HALF_EVEN)

    def measure(self, name: str) -> int:
        return self.totals[_M[name]]

    @property
    def period_text(self) -> str:
        """``2026-10-01 .. 2026-10-31`` (both days included)."""
        last = (self.period.end - timedelta(days=1)).date()
        return f"{self.period.start.date().isoformat()} .. {last.isoformat()}"

    @property
    def scope_text(self) -> str:
        parts = []
        if self.departments is not None:
            parts.append("departments " + ", ".join(d or "(none)" for d in self.departments))
        if self.cost_centers is not None:
            parts.append("cost centers " + ", ".join(c or "(none)" for c in self.cost_centers))
        return "; ".join(parts) or "all departments"

    @property
    def detail(self) -> Breakdown:
        """The detailed lines for this kind (by day for ``detailed``, by cost center for ``chargeback``)."""
        return self.breakdowns[
            {"summary": "lines", "detailed": "detailed", "chargeback": "by_cost_center_detail"}[self.kind]
        ]

    def file_name(self, fmt: str) -> str:
        extension = {"csv": "csv", "xlsx": "xlsx", "pdf": "pdf", "focus": "csv"}[fmt]
        suffix = "-focus" if fmt == "focus" else ("" if self.kind == "summary" else f"-{self.kind}")
        return f"fleetledger-{self.period.slug}{suffix}.{extension}"


def scope_where(
    departments: Sequence[str | None] | None, cost_centers: Sequence[str | None] | None
) -> dict[str, list[str | None]]:
    where: dict[str, list[str | None]] = {}
    if departments is not None:
        where["department"] = list(departments)
    if cost_centers is not None:
        where["cost_center"] = list(cost_centers)
    return where


def _group(rows: list[tuple[tuple[Any, ...], list[int]]], index: Sequence[int]) -> dict[tuple[Any, ...], list[int]]:
    out: dict[tuple[Any, ...], list[int]] = {}
    for keys, measures in rows:
        key = tuple([keys[i] for i in index])
        acc = out.get(key)
        out[key] = list(measures) if acc is None else [a + b for a, b in zip(acc, measures, strict=True)]
    return out


def _sort_key(item: tuple[tuple[Any, ...], list[int]]) -> tuple[Any, ...]:
    keys, measures = item
    return (-measures[_M["cost_nanos"]], [(k is None, str(k)) for k in keys])


def _breakdown(
    name: str, keys: tuple[str, ...], groups: dict[tuple[Any, ...], list[int]], total_nanos: int, *, by_time: bool
) -> Breakdown:
    items = sorted(groups.items(), key=(lambda i: [(k is None, str(k)) for k in i[0]]) if by_time else _sort_key)
    exact = {key: nanos_to_usd(m[_M["cost_nanos"]]) for key, m in items}
    total = nanos_to_usd(total_nanos)
    display = round_breakdown(exact, total, places=2) if exact else {}
    lines = [
        Line(
            keys=key,
            cost=exact[key],
            display=display[key],
            share_pct=(Decimal(m[_M["cost_nanos"]]) * 100 / total_nanos).quantize(_PCT, ROUND_HALF_EVEN)
            if total_nanos
            else Decimal("0.00"),
            measures=tuple(m),
        )
        for key, m in items
    ]
    return Breakdown(name, keys, lines, total, total.quantize(_CENT, ROUND_HALF_EVEN))


def _tuple_or_none(values: Sequence[str | None] | None, field_name: str) -> tuple[str | None, ...] | None:
    if values is None:
        return None
    cleaned: list[str | None] = []
    for value in values:
        if value is None:
            cleaned.append(None)
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"{field_name}: {value!r} is not a name")
        text = value.strip()
        if text:  # a blank filter is no filter; "(none)" asks for spend without this attribution
            cleaned.append(None if text == "(none)" else text)
    if not cleaned:
        return None
    return tuple(dict.fromkeys(cleaned))


def build_report(
    ledger: Ledger,
    period: str | Period,
    *,
    kind: str = "summary",
    departments: Sequence[str | None] | None = None,
    cost_centers: Sequence[str | None] | None = None,
    chargeback_method: str = "proportional",
) -> ReportData:
    """The dataset of one report: ``period`` (``2026-10``, ``2026-Q4``, ``2026``, or a day range
    ``2026-10-01..2026-10-31``), ``kind`` (summary, detailed, chargeback), scoped to
    ``departments`` and/or ``cost_centers`` (None: all). A period still running ends now."""
    if kind not in KINDS:
        raise InvalidInput(f"kind: {kind!r} must be one of {', '.join(KINDS)}")
    period = period if isinstance(period, Period) else parse_period(period)
    department_scope = _tuple_or_none(departments, "department")
    cost_center_scope = _tuple_or_none(cost_centers, "cost_center")
    now = ledger.clock()
    since = period.start
    until = min(period.end, now) if since < now else period.end
    where = scope_where(department_scope, cost_center_scope)

    if until <= since:  # a period entirely in the future: an empty report, not an error
        raw: list[tuple[tuple[Any, ...], list[int]]] = []
    else:
        report = ledger.costs(by=list(DETAIL_KEYS), since=since, until=until, where=where)
        raw = [(row.keys, [int(row.measures[m]) for m in MEASURES]) for row in report.groups]
    totals = [0] * len(MEASURES)
    for _, measures in raw:
        for i, value in enumerate(measures):
            totals[i] += value
    total_nanos = totals[_M["cost_nanos"]]

    d = {name: i for i, name in enumerate(DETAIL_KEYS)}
    breakdowns: dict[str, Breakdown] = {}
    # One pass folds the days away; every breakdown but the daily trend is grouped from that
    # (about thirty times smaller for a month).
    undated_keys = DETAIL_KEYS[1:]
    undated = list(_group(raw, [d[k] for k in undated_keys]).items())
    u = {name: i for i, name in enumerate(undated_keys)}

    def add(name: str, keys: tuple[str, ...]) -> None:
        breakdowns[name] = _breakdown(name, keys, _group(undated, [u[k] for k in keys]), total_nanos, by_time=False)

    add("by_department", ("department",))
    add("by_cost_center", ("cost_center",))
    add("by_model", ("provider", "model"))
    add("by_agent", ("department", "agent"))
    daily = _group(raw, [d["day"]])
    day_us = 86_400_000_000
    first_day = to_us(since) - to_us(since) % day_us
    for bucket in range(first_day, to_us(until), day_us):  # every day of the range, spend or not
        daily.setdefault((bucket,), [0] * len(MEASURES))
    breakdowns["daily"] = _breakdown("daily", ("day",), daily, total_nanos, by_time=True)
    add("lines", ("department", "cost_center", "provider", "model"))
    if kind == "detailed":
        breakdowns["detailed"] = _breakdown("detailed", DETAIL_KEYS, dict(raw), total_nanos, by_time=True)
    if kind == "chargeback":
        add("by_cost_center_detail", ("cost_center", "department", "project"))
    # Token types: the exact cost buckets the ledger stores with every event and rollup.
    token_exact = {label: nanos_to_usd(totals[_M[cost]]) for label, cost, _ in TOKEN_TYPES}
    token_display = round_breakdown(token_exact, nanos_to_usd(total_nanos), places=2)
    token_types = [
        {"token_type": label, "tokens": tokens(totals), "cost": token_exact[label], "display": token_display[label]}
        for label, _, tokens in TOKEN_TYPES
    ]
    for line in breakdowns["daily"].lines:
        line.keys = (from_us(line.keys[0]).date() if line.keys[0] is not None else None,)
    if kind == "detailed":
        for line in breakdowns["detailed"].lines:
            line.keys = (from_us(line.keys[0]).date(), *line.keys[1:])

    data = ReportData(
        kind=kind,
        period=period,
        since=since,
        until=until,
        complete=until == period.end,
        generated_at=now.astimezone(UTC),
        departments=department_scope,
        cost_centers=cost_center_scope,
        total_nanos=total_nanos,
        totals=tuple(totals),
        breakdowns=breakdowns,
        token_types=token_types,
    )
    if until > since:
        data.chargeback = _chargeback(ledger, data, chargeback_method)
        data.budgets = _budgets(ledger, data, raw)
    return data


def _chargeback(ledger: Ledger, data: ReportData, method: str) -> list[dict[str, Any]]:
    """Cost-center charges (direct + allocated shared cost), display cents by largest remainder."""
    rows = allocate_shared(
        ledger,
        since=data.since,
        until=data.until,
        over="cost_center",
        method=method,
        departments=list(data.departments) if data.departments is not None else None,
    )
    if data.cost_centers is not None:
        rows = [r for r in rows if r["cost_center"] in data.cost_centers]
    exact = {i: Decimal(r["fully_loaded_usd"]) for i, r in enumerate(rows)}
    display = round_breakdown(exact, places=2) if exact else {}
    out = []
    for i, row in enumerate(rows):
        out.append(
            {
                "cost_center": row["cost_center"],
                "direct": Decimal(row["direct_usd"]),
                "shared_allocated": Decimal(row["shared_allocated_usd"]),
                "charge": exact[i],
                "charge_display": display[i],
                "allocation_share_pct": Decimal(row["allocation_share_pct"]),
            }
        )
    return out


def _budgets(ledger: Ledger, data: ReportData, raw: list[tuple[tuple[Any, ...], list[int]]]) -> list[dict[str, Any]]:
    """Active budgets in scope: limit, spend in the report's period, and their status now."""
    scoped = list(data.departments) if data.departments is not None else None
    wanted = [b for b in ledger.budgets.list(departments=scoped) if b.active]  # type: ignore[arg-type]
    if not wanted:
        return []
    status = {s["budget_id"]: s for s in ledger.budgets.status([b.id for b in wanted])}
    index = {name: i for i, name in enumerate(DETAIL_KEYS)}
    unfiltered = data.departments is None and data.cost_centers is None
    out = []
    for budget in wanted:
        scope = budget.scope
        if (unfiltered or data.cost_centers is None) and all(k in index and k != "day" for k in scope):
            spent = sum(
                m[_M["cost_nanos"]]
                for keys, m in raw
                if all(keys[index[k]] is not None and str(keys[index[k]]) in v for k, v in scope.items())
            )
        else:
            try:
                spent = int(ledger.costs(since=data.since, until=data.until, where=scope).total["cost_nanos"])
            except InvalidInput:
                spent = None
        now = status.get(budget.id, {})
        out.append(
            {
                "name": budget.name,
                "scope": budget.summary()["scope"],
                "period": budget.summary()["period"],
                "limit": nanos_to_usd(budget.limit_nanos),
                "spent_in_report": nanos_to_usd(spent) if spent is not None else None,
                "window_spent": Decimal(now["spent_usd"]) if now.get("spent_usd") else None,
                "window_limit": Decimal(now["limit_usd"]) if now.get("limit_usd") else None,
                "percent_used": Decimal(now["percent_used"]) if now.get("percent_used") else None,
                "status": now.get("status"),
                "window": f"{now.get('period_start', '')[:10]} .. {now.get('period_end', '')[:10]}",
            }
        )
    return out
