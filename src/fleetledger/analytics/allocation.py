"""Exact allocation: breakdowns that sum to their total, shared costs spread, chargeback.

Every split here is a *largest remainder* split done in integer units (nano-USD, or cents for
display): each share is first floored, then the units left over go one at a time to the shares
with the largest remainders. The shares therefore always sum to the total exactly, however many
there are and whatever the weights, and no share is off by more than one unit from its exact
proportion. Ties are broken by larger weight, then by key (``str``), so the result does not depend
on the order the weights were given in.

Shared and idle costs (the ``infrastructure`` and ``storage`` line items: GPU hours, vector
storage, platform overhead) are booked to whoever pays the bill, usually a platform department.
:func:`allocate_shared` moves them onto the departments, projects or cost centers that use the
platform::

    fully loaded cost = direct cost (everything but the shared line items)
                        + allocated share of the shared cost

spread ``even`` (one equal share per group with direct spend), ``proportional`` (to direct spend)
or by custom ``weights``. The fully loaded costs sum exactly to the grand total of the range.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import format_usd
from fleetledger.core.time import parse_range

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "METHODS",
    "OVER",
    "SHARED_CATEGORIES",
    "largest_remainder",
    "round_breakdown",
    "allocate_shared",
    "allocation_totals",
    "chargeback",
    "period_range",
]

K = TypeVar("K", bound=Hashable)

METHODS = ("even", "proportional", "weights")
OVER = ("department", "project", "cost_center", "team")
#: The line-item categories treated as shared platform cost unless told otherwise.
SHARED_CATEGORIES = ("infrastructure", "storage")


def _weight(key: Any, value: Any) -> Fraction:
    if isinstance(value, bool):
        raise InvalidInput(f"weight of {key!r}: {value!r} is not a number")
    try:
        # str() first: a float weight is taken as written (0.1 means one tenth), not as its binary value.
        number = Decimal(value) if isinstance(value, int | Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"weight of {key!r}: {value!r} is not a number") from None
    if not number.is_finite():
        raise InvalidInput(f"weight of {key!r}: {value!r} is not finite")
    if number < 0:
        raise InvalidInput(f"weight of {key!r}: {value} is negative; weights must be zero or more")
    return Fraction(number)


def _order_key(key: Any) -> tuple[bool, str]:
    return (key is None, str(key))


def _split_units(units: int, weights: Mapping[K, Fraction]) -> dict[K, int]:
    """Split a whole number of units over non-negative weights (largest remainder)."""
    if not weights:
        if units:
            raise InvalidInput("nothing to allocate over: no keys were given")
        return {}
    total_weight = sum(weights.values(), Fraction(0))
    if total_weight == 0:
        if units:
            raise InvalidInput("cannot allocate by weight: every weight is zero")
        return dict.fromkeys(weights, 0)
    sign = -1 if units < 0 else 1
    magnitude = abs(units)
    shares: dict[K, int] = {}
    remainders: list[tuple[Fraction, Fraction, tuple[bool, str], K]] = []
    for key, weight in weights.items():
        quota = magnitude * weight / total_weight
        floor = quota.numerator // quota.denominator
        shares[key] = floor
        remainders.append((quota - floor, weight, _order_key(key), key))
    left = magnitude - sum(shares.values())
    # Largest remainder first; then larger weight; then key order, so input order never matters.
    remainders.sort(key=lambda item: (-item[0], -item[1], item[2]))
    for _, _, _, key in remainders[:left]:
        shares[key] += 1
    return {key: sign * share for key, share in shares.items()}


def largest_remainder(
    total: Decimal | int,
    weights: Mapping[K, Decimal | int | str],
    *,
    quantum: Decimal | int | None = None,
) -> dict[K, Any]:
    """Split ``total`` in proportion to ``weights`` into shares that sum to ``total`` exactly.

    An ``int`` total (nano-USD, say) gives ``int`` shares in steps of ``quantum`` (default 1). A
    ``Decimal`` total gives ``Decimal`` shares in steps of ``quantum`` (default: the total's own
    last decimal place, e.g. ``0.01`` for ``Decimal("10.00")``); the total must be a whole number of
    quanta. Weights must be zero or more (negative ones are refused); keys with weight zero get
    zero. With every weight zero only a zero total can be split.
    """
    parsed = {key: _weight(key, value) for key, value in weights.items()}
    if isinstance(total, bool) or not isinstance(total, int | Decimal):
        raise InvalidInput(f"total: give an int (nano-USD) or a Decimal, not {type(total).__name__}")
    if isinstance(total, int):
        step = 1 if quantum is None else quantum
        if not isinstance(step, int) or isinstance(step, bool) or step <= 0:
            raise InvalidInput("quantum: for an int total give a positive int step")
        if total % step:
            raise InvalidInput(f"total {total} is not a whole number of steps of {step}")
        return {key: share * step for key, share in _split_units(total // step, parsed).items()}
    if not total.is_finite():
        raise InvalidInput(f"total: {total} is not finite")
    exponent = total.as_tuple().exponent
    places = min(exponent, 0) if isinstance(exponent, int) else 0
    step_d = Decimal(1).scaleb(places) if quantum is None else Decimal(quantum)
    if not step_d.is_finite() or step_d <= 0:
        raise InvalidInput("quantum: give a positive step, e.g. Decimal('0.01')")
    units = total / step_d
    if units != units.to_integral_value():
        raise InvalidInput(f"total {total} is not a whole number of steps of {step_d}")
    split = _split_units(int(units), parsed)
    return {key: (share * step_d).quantize(step_d) for key, share in split.items()}


def round_breakdown(
    rows: Mapping[K, Decimal | int | str], total: Decimal | int | str | None = None, places: int = 2
) -> dict[K, Decimal]:
    """Round each part to ``places`` so the rounded parts sum exactly to the rounded total.

    ``rows`` are exact amounts (Decimal, int or decimal strings); ``total`` defaults to their sum
    and, when given, must equal it. The total is rounded half-even; parts are floored and the
    cents left over go to the parts with the largest remainders (then by key), so no part moves by
    a whole unit of display precision. Parts may be negative (credits).
    """
    step = Decimal(1).scaleb(-places)
    exact = {key: _decimal(key, value) for key, value in rows.items()}
    whole = sum(exact.values(), Decimal(0))
    if total is not None and _decimal("total", total) != whole:
        raise InvalidInput(f"round_breakdown: the parts sum to {whole}, not to the total {total}")
    target = int(whole.quantize(step, rounding=ROUND_HALF_EVEN) / step)
    floors = {key: int((value / step).to_integral_value(rounding=ROUND_FLOOR)) for key, value in exact.items()}
    remainders = sorted(exact, key=lambda key: (-(exact[key] / step - floors[key]), _order_key(key)))
    left = target - sum(floors.values())
    for i in range(left):  # 0 <= left <= len(rows): the floors lose less than one unit each
        key = remainders[i % len(remainders)]
        floors[key] += 1
    return {key: (units * step).quantize(step) for key, units in floors.items()}


def _decimal(key: Any, value: Any) -> Decimal:
    if isinstance(value, float | bool):
        raise InvalidInput(f"{key}: give amounts as Decimal or decimal strings, not {value!r}")
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(f"{key}: {value!r} is not a decimal amount") from None


# -- shared cost allocation -------------------------------------------------------------------


def _by_group(ledger: Ledger, by: list[str], since: Any, until: Any, where: Mapping[str, Any] | None) -> dict:
    report = ledger.costs(by=by, since=since, until=until, where=where)
    out: dict[Any, int] = {}
    for row in report.groups:
        key = row.keys[0] if len(by) == 1 else tuple(row.keys)
        out[key] = out.get(key, 0) + int(row.measures["cost_nanos"])
    return out


def allocate_shared(
    ledger: Ledger,
    *,
    since: Any = "MTD",
    until: Any = None,
    shared_where: Mapping[str, Sequence[str | None]] | None = None,
    over: str = "department",
    method: str = "proportional",
    weights: Mapping[str | None, Decimal | int | str] | None = None,
    departments: Sequence[str | None] | None = None,
) -> list[dict[str, Any]]:
    """Direct cost, allocated shared cost and fully loaded cost per department, project or cost center.

    ``shared_where`` selects the shared line items (default: categories infrastructure and storage).
    ``method``: ``even`` gives every group with direct spend one equal share, ``proportional``
    shares by direct spend, ``weights`` by the given ``weights`` (a mapping group -> weight >= 0;
    groups not named get nothing). The allocation is always computed over the whole organisation;
    ``departments`` then limits the rows returned to those departments' part (for scoped API keys),
    so a department's figures do not depend on who asks.

    Money is in exact decimal strings (nine places); ``fully_loaded_usd`` of every row sums to the
    grand total of the range, ``shared_allocated_usd`` to the shared total.
    """
    if over not in OVER:
        raise InvalidInput(f"over: {over!r} is not one of {', '.join(OVER)}")
    if method not in METHODS:
        raise InvalidInput(f"method: {method!r} is not one of {', '.join(METHODS)}")
    if method == "weights" and not weights:
        raise InvalidInput("method weights: give the weights, e.g. research=2,support=1")
    if method != "weights" and weights:
        raise InvalidInput(f"weights are only used with method weights, not {method}")
    shared_filter = dict(shared_where) if shared_where is not None else {"category": list(SHARED_CATEGORIES)}
    start, end = parse_range(since, until, now=ledger.clock())

    total = _by_group(ledger, [over], start, end, None)
    shared = _by_group(ledger, [over], start, end, shared_filter)
    groups = set(total) | set(weights or {})
    direct = {g: total.get(g, 0) - shared.get(g, 0) for g in groups}
    shared_total = sum(shared.values())

    if method == "weights":
        basis: dict[Any, Any] = {g: (weights or {}).get(g, 0) for g in groups}
    elif method == "even":
        basis = {g: (1 if direct[g] > 0 else 0) for g in groups}
    else:
        basis = {g: max(direct[g], 0) for g in groups}
    if shared_total and not any(_weight(g, w) for g, w in basis.items()):
        raise InvalidInput(
            "nothing to spread the shared cost over: no group has direct (non-shared) spend in the range"
            if method != "weights"
            else "every weight is zero; give at least one group a positive weight"
        )
    allocated = largest_remainder(shared_total, basis) if groups else {}
    weight_sum = sum((_weight(g, w) for g, w in basis.items()), Fraction(0))
    # Display shares are split by largest remainder too, so the percentages add up to 100.00.
    shares = largest_remainder(Decimal("100.00"), basis) if weight_sum else {}

    parts: dict[Any, dict[str, int]] = {
        g: {"direct": direct[g], "shared_booked": shared.get(g, 0), "allocated": allocated.get(g, 0)} for g in groups
    }
    if departments is not None:
        parts = _department_part(ledger, parts, over, start, end, shared_filter, list(departments))

    rows = []
    for group, part in parts.items():
        rows.append(
            {
                over: group,
                "direct_usd": format_usd(part["direct"]),
                "shared_booked_usd": format_usd(part["shared_booked"]),
                "shared_allocated_usd": format_usd(part["allocated"]),
                "fully_loaded_usd": format_usd(part["direct"] + part["allocated"]),
                "allocation_share_pct": f"{shares.get(group, Decimal('0.00')):f}",
                "_fully_loaded": part["direct"] + part["allocated"],
            }
        )
    rows.sort(key=lambda r: (-r["_fully_loaded"], _order_key(r[over])))
    for row in rows:
        del row["_fully_loaded"]
    return rows


def _department_part(
    ledger: Ledger,
    parts: dict[Any, dict[str, int]],
    over: str,
    start: Any,
    end: Any,
    shared_filter: Mapping[str, Any],
    departments: list[str | None],
) -> dict[Any, dict[str, int]]:
    """Each group's part that belongs to ``departments``.

    Direct and booked shared cost are read per (group, department); a group's allocated share is
    split over its departments in proportion to their direct spend (exactly, largest remainder).
    """
    if over == "department":
        return {g: part for g, part in parts.items() if g in departments}
    total = _by_group(ledger, [over, "department"], start, end, None)
    shared = _by_group(ledger, [over, "department"], start, end, shared_filter)
    out: dict[Any, dict[str, int]] = {}
    for group, part in parts.items():
        pairs = [pair for pair in total if pair[0] == group]
        direct = {pair[1]: total[pair] - shared.get(pair, 0) for pair in pairs}
        positive = {d: max(v, 0) for d, v in direct.items()}
        if part["allocated"] and any(positive.values()):
            split = largest_remainder(part["allocated"], positive)
        else:
            split = {}
        mine = [d for d in direct if d in departments]
        if not mine:
            continue
        out[group] = {
            "direct": sum(direct[d] for d in mine),
            "shared_booked": sum(shared.get((group, d), 0) for d in mine),
            "allocated": sum(split.get(d, 0) for d in mine),
        }
    return out


def allocation_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The exact column sums of :func:`allocate_shared` rows."""
    columns = ("direct_usd", "shared_booked_usd", "shared_allocated_usd", "fully_loaded_usd")
    return {c: f"{sum((Decimal(r[c]) for r in rows), Decimal('0.000000000')):f}" for c in columns}


# -- chargeback -------------------------------------------------------------------------------


def period_range(period: str) -> tuple[Any, Any]:
    """``2026-10`` (month), ``2026-Q4`` (quarter) or ``2026`` (year), as a UTC ``[start, end)``."""
    import re
    from datetime import UTC, datetime

    match = re.match(r"^(\d{4})(?:-(\d{2})|-Q([1-4]))?$", period.strip())
    if not match:
        raise InvalidInput(f"period: {period!r} must be YYYY-MM, YYYY-Qn or YYYY")
    year = int(match.group(1))
    if not 2015 <= year <= 2100:
        raise InvalidInput(f"period: year {year} is out of range")
    if match.group(2):
        month = int(match.group(2))
        if not 1 <= month <= 12:
            raise InvalidInput(f"period: month {month} does not exist")
        return datetime(year, month, 1, tzinfo=UTC), datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    if match.group(3):
        quarter = int(match.group(3))
        return (
            datetime(year, 3 * quarter - 2, 1, tzinfo=UTC),
            datetime(year + (quarter == 4), (3 * quarter) % 12 + 1, 1, tzinfo=UTC),
        )
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def chargeback(
    ledger: Ledger,
    period: str,
    *,
    method: str = "proportional",
    shared_where: Mapping[str, Sequence[str | None]] | None = None,
    departments: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """What each cost center is charged for ``period``: its direct spend plus its share of shared cost.

    Rows come from :func:`allocate_shared` over ``cost_center``; the charges sum exactly to the
    period's total (or, with ``departments``, to those departments' part of it).
    """
    start, end = period_range(period)
    # A month still running ends now: no charge for the future.
    now = ledger.clock()
    until = min(end, now) if start < now else end
    rows = allocate_shared(
        ledger,
        since=start,
        until=until,
        shared_where=shared_where,
        over="cost_center",
        method=method,
        departments=departments,
    )
    for row in rows:
        row["charge_usd"] = row["fully_loaded_usd"]
    totals = allocation_totals(rows)
    return {
        "period": period,
        "since": start.isoformat(),
        "until": until.isoformat(),
        "method": method,
        "complete": until == end,
        "total_usd": totals["fully_loaded_usd"],
        "shared_usd": totals["shared_allocated_usd"],
        "rows": rows,
    }
