"""Provider reconciliation: the metered ledger against what providers say they served and billed.

Two steps, both exact:

1. :func:`import_lines` stores provider usage and cost lines (OpenAI Costs and Usage API pages,
   Anthropic usage and cost reports, an invoice-lines CSV; readers in
   :mod:`fleetledger.ingest.importers`) in ``provider_lines``, apart from the metered events. Bad lines
   are rejected with their location and reason, the rest kept; re-importing changes nothing.
2. :func:`reconcile` compares both sides per **cell** = (UTC day, provider, model, key) and
   splits each cell's cost drift (provider minus ledger, nano-USD) into parts that sum to it
   exactly:

   * ``unmetered_traffic``: the provider reports tokens the ledger lacks, priced at our rates
     (the cell's own effective rate, else the catalog's base price); or the provider billed a
     cell where the ledger has nothing at all.
   * ``metered_not_billed``: the ledger has tokens (or cost) the provider does not report.
   * ``unreconciled_estimate``: ledger cost from estimate lines (line items, i.e. events with
     ``cost_usd``, of operation ``reservation`` as a committed reservation writes, or tagged
     ``estimate=true``) that no actual usage replaced; the part is minus their cost.
   * ``price_mismatch``: what remains when the provider's tokens and bill are both known: the
     provider charged a different price for the same tokens; the cell shows the provider's
     effective unit price per token type against ours.
   * ``unexplained``: what the data cannot attribute (a bill but no usage export for the day while
     both sides have traffic; tokens of a type no price is known for).
   * ``matched``: parts within the tolerance (default $0.0001 per request-equivalent: the most
     requests either side counts in the cell, at least one) are moved here.

   A cell's class is its largest remaining part (``matched`` when none remains). The report's
   totals per class plus ``unexplained`` equal the total drift exactly.

Which days are compared: only (provider, day) pairs some provider line covers, so the ledger's
other days are never called "not billed". A day with cost lines is a *billed* day: a cell without
cost lines there was billed $0. A day with usage lines only is compared on tokens, the provider's
usage priced at our rates (``provider_cost_basis`` ``usage_at_our_prices``).

Keys: each provider's lines are matched to the ledger through a :class:`KeyMap` (which provider
field, which ledger dimension, aliases between their values); see ``docs/reconciliation.md``.

The package is split along these concepts: :mod:`.imports` (step 1), this module (step 2: the
comparison and its classification), :mod:`.keys` (key maps), :mod:`.report` (cells and totals)
and :mod:`.drift` (the ``reconciliation_drift`` alert rule, which the composition root registers).
The names the CLI and the API use are re-exported here and from :mod:`fleetledger.reconciliation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select

from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import NANOS_PER_USD, usd_to_nanos
from fleetledger.core.time import floor_day, from_us, parse_range, to_us
from fleetledger.core.usage import MAX_COST_USD, normalize_provider
from fleetledger.pricing import Pricer
from fleetledger.pricing.engine import PriceTable
from fleetledger.reconciliation.importers.provider_lines import KINDS, TOKEN_TYPES
from fleetledger.reconciliation.imports import ImportResult, import_for_ledger, import_lines, read_lines
from fleetledger.reconciliation.keys import DEFAULT_KEY_MAPS, KeyMap, key_maps, settings_keys
from fleetledger.reconciliation.report import CLASSES, Cell, ReconciliationReport, tokens_by_type, zero_tokens
from fleetledger.reconciliation.tables import provider_lines
from fleetledger.storage.schema import events, rollup_daily
from fleetledger.storage.store import DAY_US, Store

__all__ = [
    "KINDS",
    "CLASSES",
    "KeyMap",
    "DEFAULT_KEY_MAPS",
    "key_maps",
    "settings_keys",
    "ImportResult",
    "Cell",
    "ReconciliationReport",
    "import_lines",
    "reconcile",
    "DEFAULT_TOLERANCE_USD",
    "reconcile_ledger",
    "import_for_ledger",
    "read_lines",
]

DEFAULT_TOLERANCE_USD = Decimal("0.0001")


def _canonical(pricer: Pricer, provider: str, model: str | None) -> str:
    if not model:
        return ""
    found = pricer.catalog_model(provider, model)
    return model if isinstance(found, str) else found[1].id


def _ledger_key_column(ledger_key: str) -> Any:
    if ledger_key.startswith("tag."):
        return events.c.tags[ledger_key[4:]].as_string()
    return events.c[ledger_key]


def _half_even(value: Fraction) -> int:
    quotient, remainder = divmod(value.numerator, value.denominator)
    twice = 2 * remainder
    if twice > value.denominator or (twice == value.denominator and quotient % 2):
        quotient += 1
    return quotient


_SAMPLE = 1000  # tokens priced to read a catalog rate: far below any long-context threshold


def _catalog_rate(pricer: Pricer, cell: Cell, token_type: str) -> Fraction | None:
    """Our base price of one token of ``token_type`` for the cell's model, nano-USD (exact)."""
    if not cell.raw_model:
        return None
    at = datetime(cell.day.year, cell.day.month, cell.day.day, tzinfo=UTC)
    table = pricer.table_for(cell.provider, cell.raw_model, cell.tier, at)
    if not isinstance(table, PriceTable):
        return None  # unpriced: the reason is on the ledger's events
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0}
    if token_type == "output":
        usage["output_tokens"] = _SAMPLE
    else:
        usage["input_tokens"] = _SAMPLE
        if token_type == "cache_read":
            usage["cache_read_tokens"] = _SAMPLE
        elif token_type == "cache_write":
            usage["cache_write_tokens"] = usage["cache_write_5m_tokens"] = _SAMPLE
    try:
        cost = table.price(usage)
    except InvalidInput:
        return None
    return Fraction(cost.total_nanos, _SAMPLE)


def _classify(cell: Cell, pricer: Pricer, usage_known: bool, billed_known: bool, tolerance: Decimal) -> None:
    parts: dict[str, int] = {}

    def add(name: str, nanos: int) -> None:
        if nanos:
            parts[name] = parts.get(name, 0) + nanos

    ledger_base = cell.ledger_cost_nanos - cell.ledger_estimate_nanos
    add("unreconciled_estimate", -cell.ledger_estimate_nanos)
    if usage_known:
        cell.provider_has_usage = True  # the provider's usage for the day is known: none here means 0
        volume_unknown = False
        provider_types, ledger_types = tokens_by_type(cell.provider_tokens), tokens_by_type(cell.ledger_tokens)
        volume = 0
        for token_type in TOKEN_TYPES:
            delta = provider_types[token_type] - ledger_types[token_type]
            if not delta:
                continue
            priced = cell.ledger_priced_tokens[token_type]
            rate = (
                Fraction(cell.ledger_bucket_nanos[token_type], priced)
                if priced > 0
                else _catalog_rate(pricer, cell, token_type)
            )
            if rate is None:
                volume_unknown = True
                continue
            nanos = _half_even(delta * rate)
            volume += nanos
            add("unmetered_traffic" if nanos > 0 else "metered_not_billed", nanos)
        if not billed_known:
            cell.provider_cost_nanos = ledger_base + volume
            cell.provider_cost_basis = "usage_at_our_prices"
        else:
            remainder = (cell.provider_cost_nanos or 0) - ledger_base - volume
            add("unexplained" if volume_unknown else "price_mismatch", remainder)
    else:
        billed = cell.provider_cost_nanos or 0
        if cell.ledger_requests == 0 and cell.ledger_cost_nanos == 0:
            add("unmetered_traffic", billed)
        elif billed == 0:
            add("metered_not_billed", -ledger_base)
        else:
            add("unexplained", billed - ledger_base)

    requests = max(cell.ledger_requests, cell.provider_requests, 1)
    cell.tolerance_nanos = usd_to_nanos(tolerance) * requests
    significant = {name: nanos for name, nanos in parts.items() if abs(nanos) > cell.tolerance_nanos}
    small = sum(nanos for name, nanos in parts.items() if name not in significant)
    cell.parts = dict(significant)
    if small:
        cell.parts["matched"] = small
    cell.classification = max(significant, key=lambda name: abs(significant[name])) if significant else "matched"
    if billed_known and usage_known:
        cell.prices = _unit_prices(cell)


def _per_mtok(nanos: int, tokens: int) -> str:
    value = Decimal(nanos) * 1_000_000 / Decimal(tokens) / NANOS_PER_USD
    return str(value.quantize(Decimal("0.000001")))


def _unit_prices(cell: Cell) -> list[dict[str, Any]]:
    """Per token type billed separately: the provider's effective $/1M tokens against ours."""
    out = []
    provider_types = tokens_by_type(cell.provider_tokens)
    for token_type, billed in sorted(cell.provider_cost_by_type.items()):
        tokens = provider_types.get(token_type, 0)
        if tokens <= 0:
            continue
        priced = cell.ledger_priced_tokens[token_type]
        out.append(
            {
                "token_type": token_type,
                "provider_usd_per_mtok": _per_mtok(billed, tokens),
                "ledger_usd_per_mtok": _per_mtok(cell.ledger_bucket_nanos[token_type], priced) if priced else None,
            }
        )
    return out


def reconcile(
    store: Store,
    pricer: Pricer,
    *,
    since: Any = "30d",
    until: Any = None,
    now: datetime,
    provider: str | None = None,
    keys: Mapping[str, KeyMap] | None = None,
    tolerance_usd: Decimal | str = DEFAULT_TOLERANCE_USD,
    exclude_sources: Sequence[str] = (),
    use_rollups: bool | None = None,
) -> ReconciliationReport:
    """Compare provider lines with the metered ledger for the whole UTC days in ``[since, until)``.

    The ledger side is read from the daily rollups when they answer exactly (the ledger key is a
    rollup dimension and no source is excluded), plus the line items from raw events; otherwise
    from raw events. ``use_rollups=False`` forces raw events (the tests compare both).
    """
    try:
        tolerance = Decimal(str(tolerance_usd))
    except InvalidOperation:
        raise InvalidInput(f"tolerance_usd: {tolerance_usd!r} is not a number") from None
    if not tolerance.is_finite() or tolerance < 0:
        raise InvalidInput("tolerance_usd: must be a non-negative amount")
    if tolerance > MAX_COST_USD:  # past it the nanos overflow Decimal's 28 digits
        raise InvalidInput(f"tolerance_usd: {tolerance_usd!r} is more than {MAX_COST_USD} USD per request")
    maps = dict(keys) if keys is not None else dict(DEFAULT_KEY_MAPS)
    start, end = parse_range(since, until, now=now)
    day0 = floor_day(start)
    day_end = floor_day(end) + (timedelta(days=1) if end != floor_day(end) else timedelta(0))
    cells: dict[tuple[Any, ...], Cell] = {}
    usage_days: set[tuple[str, int]] = set()
    billed_days: set[tuple[str, int]] = set()

    canonical_ids: dict[tuple[str, str | None], str] = {}

    def cell_for(day_us: int, prov: str, model: str | None, key: str | None) -> Cell:
        canonical = canonical_ids.get((prov, model))
        if canonical is None:
            canonical = canonical_ids[(prov, model)] = _canonical(pricer, prov, model)
        ident = (day_us, prov, canonical, key)
        cell = cells.get(ident)
        if cell is None:
            cell = cells[ident] = Cell(from_us(day_us).date(), prov, canonical, key)
        if model and cell.raw_model is None:
            cell.raw_model = model
        return cell

    query = select(provider_lines).where(
        provider_lines.c.day_us >= to_us(day0), provider_lines.c.day_us < to_us(day_end)
    )
    if provider:
        provider = normalize_provider(provider)
        query = query.where(provider_lines.c.provider == provider)
    tiers: dict[tuple[Any, ...], set[str]] = {}
    with store.read() as conn:
        for line in conn.execute(query.order_by(provider_lines.c.id)):
            mapping = maps.get(line.provider, KeyMap())
            raw_key = None if mapping.provider_key == "none" else getattr(line, mapping.provider_key)
            key = None if mapping.provider_key == "none" else mapping.ledger_value(raw_key)
            cell = cell_for(line.day_us, line.provider, line.model, key)
            if line.has_usage:
                usage_days.add((line.provider, line.day_us))
                cell.provider_has_usage = True
                for name in cell.provider_tokens:
                    cell.provider_tokens[name] += getattr(line, name)
                cell.provider_requests += line.requests or 0
                tiers.setdefault((line.day_us, line.provider, cell.model, key), set()).add(
                    line.service_tier or "standard"
                )
            if line.cost_nanos is not None:
                billed_days.add((line.provider, line.day_us))
                cell.provider_cost_nanos = (cell.provider_cost_nanos or 0) + line.cost_nanos
                if line.token_type:
                    cell.provider_cost_by_type[line.token_type] = (
                        cell.provider_cost_by_type.get(line.token_type, 0) + line.cost_nanos
                    )
        covered = usage_days | billed_days
        for prov in sorted({p for p, _ in covered}):
            days = sorted(d for p, d in covered if p == prov)
            mapping = maps.get(prov, KeyMap())
            if use_rollups is False or not _rollups_answer(mapping, exclude_sources):
                _add_ledger(conn, prov, days, maps, exclude_sources, cell_for)
            else:
                _add_ledger_from_rollups(conn, prov, days, mapping, cell_for)
    for ident, seen in tiers.items():
        if ident in cells and seen == {"batch"}:
            cells[ident].tier = "batch"
    out = []
    for (day_us, prov, _, _), cell in sorted(cells.items(), key=lambda item: _sort_key(item[0])):
        if (prov, day_us) not in covered:
            continue
        if (
            cell.provider_cost_nanos is None
            and not cell.provider_has_usage
            and cell.ledger_requests == 0
            and cell.ledger_cost_nanos == 0
        ):
            continue  # a model-less cell the rollup pass opened and the line items emptied again
        billed_known = (prov, day_us) in billed_days
        if billed_known and cell.provider_cost_nanos is None:
            cell.provider_cost_nanos = 0
        _classify(cell, pricer, (prov, day_us) in usage_days, billed_known, tolerance)
        out.append(cell)
    coverage: dict[str, list[str]] = {}
    for prov, day_us in sorted(covered):
        coverage.setdefault(prov, []).append(from_us(day_us).date().isoformat())
    return ReconciliationReport(day0, day_end, provider, tolerance, out, coverage)


def _sort_key(ident: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("" if v is None else v for v in ident)


def _add_ledger(
    conn: Any,
    provider: str,
    days: list[int],
    maps: Mapping[str, KeyMap],
    exclude_sources: Sequence[str],
    cell_for: Callable[[int, str, str | None, str | None], Cell],
) -> None:
    """Sum the provider's metered events per day, model, key and kind into the cells."""
    mapping = maps.get(provider, KeyMap())
    key_column = literal(None) if mapping.provider_key == "none" else _ledger_key_column(mapping.ledger_key)
    day_column = events.c.ts_us - events.c.ts_us % DAY_US
    line_item = events.c.price_source == "line-item"
    estimate = and_(
        line_item, or_(events.c.operation == "reservation", events.c.tags["estimate"].as_string() == "true")
    )
    sums = [
        func.count().label("requests"),
        *(
            func.coalesce(func.sum(events.c[name]), 0).label(name)
            for name in (
                "input_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "output_tokens",
                "cost_nanos",
                "cost_input_nanos",
                "cost_cache_read_nanos",
                "cost_cache_write_nanos",
                "cost_output_nanos",
                "cost_other_nanos",
            )
        ),
    ]
    kind = case((estimate, 2), (line_item, 1), else_=0).label("kind")
    conditions = [
        events.c.provider == provider,
        events.c.ts_us >= days[0],
        events.c.ts_us < days[-1] + DAY_US,
        day_column.in_(days),
    ]
    if exclude_sources:
        conditions.append(or_(events.c.source.is_(None), events.c.source.not_in(list(exclude_sources))))
    query = (
        select(day_column.label("day"), events.c.model, key_column.label("key"), kind, *sums)
        .where(*conditions)
        .group_by(day_column, events.c.model, key_column, kind)
    )
    for row in conn.execute(query):
        cell = cell_for(int(row.day), provider, row.model, row.key if row.key is None else str(row.key))
        cell.ledger_requests += int(row.requests)
        for name in cell.ledger_tokens:
            cell.ledger_tokens[name] += int(getattr(row, name))
        if row.kind == 2:
            cell.ledger_estimate_nanos += int(row.cost_nanos)
        elif row.kind == 1:
            cell.ledger_other_nanos += int(row.cost_nanos)
        else:
            counts = tokens_by_type(
                {name: int(getattr(row, name)) for name in zero_tokens()}  # priced events: rates come from these
            )
            for token_type, column in zip(
                TOKEN_TYPES,
                ("cost_input_nanos", "cost_cache_read_nanos", "cost_cache_write_nanos", "cost_output_nanos"),
                strict=True,
            ):
                cell.ledger_priced_tokens[token_type] += counts[token_type]
                cell.ledger_bucket_nanos[token_type] += int(getattr(row, column))
            other = int(row.cost_other_nanos)
            if other:
                # Charges not for tokens (web searches, per-request fees): providers bill them on
                # their own lines, without a model.
                extra = cell_for(int(row.day), provider, None, row.key if row.key is None else str(row.key))
                extra.ledger_other_nanos += other


_ROLLUP_KEYS = {"project", "department", "team", "cost_center", "environment", "agent"}
_BUCKETS = ("cost_input_nanos", "cost_cache_read_nanos", "cost_cache_write_nanos", "cost_output_nanos")


def _rollups_answer(mapping: KeyMap, exclude_sources: Sequence[str]) -> bool:
    return not exclude_sources and (mapping.provider_key == "none" or mapping.ledger_key in _ROLLUP_KEYS)


def _add_ledger_from_rollups(
    conn: Any,
    provider: str,
    days: list[int],
    mapping: KeyMap,
    cell_for: Callable[[int, str, str | None, str | None], Cell],
) -> None:
    """As :func:`_add_ledger`, from ``rollup_daily`` (every event, as if priced from tokens), then
    the line items from raw events moved where they belong (estimates and other line items)."""
    table = rollup_daily
    none = mapping.provider_key == "none"
    key_column = literal(None) if none else table.c[mapping.ledger_key]
    names = ("requests", *zero_tokens(), *_BUCKETS, "cost_other_nanos")
    query = (
        select(
            table.c.bucket_us.label("day"),
            table.c.model,
            key_column.label("key"),
            *(func.sum(table.c[name]).label(name) for name in names),
        )
        .where(table.c.provider == provider, table.c.bucket_us.in_(days))
        .group_by(table.c.bucket_us, table.c.model, key_column)
    )
    for row in conn.execute(query):
        day, model, key = int(row.day), row.model or None, (None if row.key in (None, "") else str(row.key))
        cell = cell_for(day, provider, model, key)
        cell.ledger_requests += int(row.requests)
        tokens = {name: int(getattr(row, name)) for name in zero_tokens()}
        for name, value in tokens.items():
            cell.ledger_tokens[name] += value
        for token_type, count in tokens_by_type(tokens).items():
            cell.ledger_priced_tokens[token_type] += count
        for token_type, column in zip(TOKEN_TYPES, _BUCKETS, strict=True):
            cell.ledger_bucket_nanos[token_type] += int(getattr(row, column))
        if int(row.cost_other_nanos):
            cell_for(day, provider, None, key).ledger_other_nanos += int(row.cost_other_nanos)

    # Line items: their whole cost is in cost_other (moved to the model-less cell above) and their
    # tokens were counted as priced; put them back where the raw path has them.
    day_column = events.c.ts_us - events.c.ts_us % DAY_US
    raw_key = literal(None) if none else events.c[mapping.ledger_key]
    estimate = or_(events.c.operation == "reservation", events.c.tags["estimate"].as_string() == "true")
    kind = case((estimate, 2), else_=1).label("kind")
    items = (
        select(
            day_column.label("day"),
            events.c.model,
            raw_key.label("key"),
            kind,
            *(func.coalesce(func.sum(events.c[name]), 0).label(name) for name in (*zero_tokens(), "cost_nanos")),
        )
        .where(
            events.c.provider == provider,
            events.c.ts_us >= days[0],
            events.c.ts_us < days[-1] + DAY_US,
            day_column.in_(days),
            events.c.price_source == "line-item",
        )
        .group_by(day_column, events.c.model, raw_key, kind)
    )
    for row in conn.execute(items):
        day, key = int(row.day), (None if row.key is None else str(row.key))
        cell = cell_for(day, provider, row.model, key)
        for token_type, count in tokens_by_type({name: int(getattr(row, name)) for name in zero_tokens()}).items():
            cell.ledger_priced_tokens[token_type] -= count
        cell_for(day, provider, None, key).ledger_other_nanos -= int(row.cost_nanos)
        if row.kind == 2:
            cell.ledger_estimate_nanos += int(row.cost_nanos)
        else:
            cell.ledger_other_nanos += int(row.cost_nanos)


def reconcile_ledger(ledger: Any, **options: Any) -> ReconciliationReport:
    """:func:`reconcile` with the ledger's store, prices, clock and configured keys and tolerance."""
    ledger.flush()
    options.setdefault("keys", settings_keys(ledger))
    options.setdefault("tolerance_usd", ledger.settings.reconciliation_tolerance_usd)
    return reconcile(ledger.store, ledger.pricer, now=ledger.clock(), **options)
