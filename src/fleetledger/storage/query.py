"""Grouped cost queries that stay exact and fast over months of events.

A range ``[since, until)`` is cut into segments and each is read from the cheapest table that
answers it *exactly*::

    since ─ raw ─┬─ hourly ─┬───── daily ─────┬─ hourly ─┬─ raw ─ until
              whole hour  whole day         whole day  whole hour

Raw events answer the sub-hour edges, ``rollup_hourly`` the partial days, ``rollup_daily`` the rest;
when every group and filter key is an organisational one (provider, model, department, cost_center,
environment, service_tier, category) the ``*_coarse`` rollups, about ten times smaller, are read.
Grouping or filtering by a dimension the rollups do not keep (user, task, session_id, status,
``tag.<name>``) reads raw events for the whole range. Every segment returns integer sums, so the
merged result equals what one scan of the raw events would give, to the nano-dollar.

:func:`grouped_costs` sums every measure. Queries that need other sums over the same plan (the
charts' ``measure_sums``, for one) build on its public pieces: :func:`segments` (the plan),
:func:`needs_raw` (when the plan is one raw segment), :func:`raw_column` and :func:`rollup_column`
(a group key's expression per table) and :func:`filter_conditions` (``where`` as conditions, with
``None`` meaning unattributed). :func:`validate_keys` checks keys against :data:`GROUP_KEYS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection, Table, and_, case, false, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from fleetledger.core.errors import InvalidInput
from fleetledger.core.usage import DIMENSIONS
from fleetledger.storage.schema import (
    COARSE_DIMENSIONS,
    COST_COLUMNS,
    ROLLUP_MEASURES,
    events,
    rollup_daily,
    rollup_daily_coarse,
    rollup_hourly,
    rollup_hourly_coarse,
)
from fleetledger.storage.store import DAY_US, HOUR_US, CostRow, Store

__all__ = [
    "grouped_costs",
    "GROUP_KEYS",
    "TIME_KEYS",
    "validate_keys",
    "needs_raw",
    "raw_column",
    "rollup_column",
    "filter_conditions",
    "segments",
]

TIME_KEYS = ("hour", "day")
#: What ``--by`` and ``--where`` accept, besides ``tag.<name>``.
GROUP_KEYS = (*DIMENSIONS, *TIME_KEYS)
_RAW_ONLY = {"user", "task", "session_id", "status"}


def validate_keys(keys: Sequence[str], *, what: str) -> None:
    for key in keys:
        if key in GROUP_KEYS:
            continue
        if key.startswith("tag.") and len(key) > 4:
            continue
        known = ", ".join(GROUP_KEYS)
        raise InvalidInput(f"{what}: unknown key {key!r}; use one of {known} or tag.<name>")


def needs_raw(keys: Sequence[str]) -> bool:
    """True when a group or filter key is one the rollups do not keep: read raw events throughout."""
    return any(key in _RAW_ONLY or key.startswith("tag.") for key in keys)


def raw_column(key: str) -> ColumnElement[Any]:
    """The ``events`` expression for a group key (``hour``/``day`` buckets, ``tag.<name>``), labelled ``key``."""
    if key == "hour":
        return (events.c.ts_us - events.c.ts_us % HOUR_US).label(key)
    if key == "day":
        return (events.c.ts_us - events.c.ts_us % DAY_US).label(key)
    if key.startswith("tag."):
        return events.c.tags[key[4:]].as_string().label(key)
    return events.c[key].label(key)


def rollup_column(table: Table, key: str) -> ColumnElement[Any]:
    """The expression for a group key in a rollup ``table`` (its ``bucket_us`` for ``hour``/``day``)."""
    if key == "hour":
        return table.c.bucket_us.label(key)
    if key == "day":
        return (table.c.bucket_us - table.c.bucket_us % DAY_US).label(key)
    return table.c[key].label(key)


def _raw_measures() -> list[ColumnElement[Any]]:
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(case((events.c.status == "error", 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(case((events.c.priced == false(), 1), else_=0)), 0).label("unpriced"),
        *(
            func.coalesce(func.sum(events.c[name]), 0).label(name)
            for name in (
                "input_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "output_tokens",
                "reasoning_tokens",
                *COST_COLUMNS,
            )
        ),
        func.coalesce(func.sum(events.c.latency_ms), 0.0).label("latency_ms_sum"),
        func.count(events.c.latency_ms).label("latency_count"),
    ]


def filter_conditions(
    column_for: Callable[[str], ColumnElement[Any]], where: Mapping[str, Sequence[str | None]], rollup: bool
) -> list[ColumnElement[bool]]:
    """One condition per ``where`` key: the column (``column_for(key)``) is one of the values.

    ``None`` among the values matches the unattributed rows: NULL in ``events``, ``""`` in the
    rollups (``rollup=True``), which store a missing dimension as the empty string.
    """
    conditions = []
    for key, values in where.items():
        column = column_for(key)
        wanted = [v for v in values if v is not None]
        parts: list[ColumnElement[bool]] = []
        if wanted:
            parts.append(column.in_(wanted))
        if any(v is None for v in values):
            parts.append(column == "" if rollup else column.is_(None))
        conditions.append(or_(*parts) if len(parts) > 1 else parts[0])
    return conditions


def segments(since: int, until: int, allow_daily: bool) -> list[tuple[str, int, int]]:
    """``[since, until)`` cut into ``(kind, start, end)`` pieces, ``kind`` ``raw``, ``hourly`` or ``daily``.

    Raw events answer the sub-hour edges, hourly rollups the partial days, daily rollups the whole
    days between (``allow_daily=False``: hourly rollups instead, for per-hour groups). The pieces
    are contiguous and in order; reading each from its table gives exactly one raw scan's sums.
    """
    out: list[tuple[str, int, int]] = []
    h0 = -(-since // HOUR_US) * HOUR_US
    h1 = until - until % HOUR_US
    if h0 >= h1:
        return [("raw", since, until)]
    if since < h0:
        out.append(("raw", since, h0))
    d0 = -(-h0 // DAY_US) * DAY_US
    d1 = h1 - h1 % DAY_US
    if allow_daily and d0 < d1:
        if h0 < d0:
            out.append(("hourly", h0, d0))
        out.append(("daily", d0, d1))
        if d1 < h1:
            out.append(("hourly", d1, h1))
    else:
        out.append(("hourly", h0, h1))
    if h1 < until:
        out.append(("raw", h1, until))
    return out


def grouped_costs(
    store: Store,
    by: Sequence[str],
    since_us: int,
    until_us: int,
    where: Mapping[str, Sequence[str | None]] | None = None,
    *,
    conn: Connection | None = None,
) -> list[CostRow]:
    """Sum every measure over ``[since_us, until_us)`` grouped by ``by``, filtered by ``where``.

    Runs in ``conn`` when given (so a caller's transaction sees its own writes), else in a new read.
    """
    if conn is None:
        with store.read() as own:
            return grouped_costs(store, by, since_us, until_us, where, conn=own)
    where = where or {}
    validate_keys(by, what="group by")
    validate_keys(list(where), what="filter")
    if until_us <= since_us:
        raise InvalidInput("time range: --until must be after --since")
    keys = [*by, *where]
    if needs_raw(keys):
        plan = [("raw", since_us, until_us)]
    else:
        plan = segments(since_us, until_us, allow_daily="hour" not in by)

    # Coarse rollups answer exactly when every key is one they keep.
    coarse = all(k in COARSE_DIMENSIONS or k in TIME_KEYS for k in keys)
    merged: dict[tuple[Any, ...], list[int | float]] = {}
    for kind, start, end in plan:
        if kind == "raw":
            group = [raw_column(k) for k in by]
            conditions = [
                events.c.ts_us >= start,
                events.c.ts_us < end,
                *filter_conditions(raw_column, where, rollup=False),
            ]
            statement = select(*group, *_raw_measures()).where(and_(*conditions))
        else:
            if coarse:
                table = rollup_daily_coarse if kind == "daily" else rollup_hourly_coarse
            else:
                table = rollup_daily if kind == "daily" else rollup_hourly
            group = [rollup_column(table, k) for k in by]
            conditions = [
                table.c.bucket_us >= start,
                table.c.bucket_us < end,
                *filter_conditions(partial(rollup_column, table), where, rollup=True),
            ]
            sums = [func.coalesce(func.sum(table.c[m]), 0).label(m) for m in ROLLUP_MEASURES]
            statement = select(*group, *sums).where(and_(*conditions))
        if group:
            statement = statement.group_by(*group)
        for row in conn.execute(statement):
            values = tuple(row)
            key = tuple(None if v == "" else v for v in values[: len(by)])
            measures = values[len(by) :]
            if not group and not measures[0]:
                continue  # an empty segment's SUMs
            acc = merged.get(key)
            if acc is None:
                merged[key] = [_number(m, name) for m, name in zip(measures, ROLLUP_MEASURES, strict=True)]
            else:
                for i, (m, name) in enumerate(zip(measures, ROLLUP_MEASURES, strict=True)):
                    acc[i] += _number(m, name)
    return [CostRow(keys=key, measures=dict(zip(ROLLUP_MEASURES, acc, strict=True))) for key, acc in merged.items()]


def _number(value: Any, name: str) -> int | float:
    if name == "latency_ms_sum":
        return float(value or 0)
    return int(value or 0)  # PostgreSQL returns SUM(bigint) as an exact Decimal
