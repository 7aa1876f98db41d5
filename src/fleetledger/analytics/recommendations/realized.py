"""What was saved: the realized saving of an implemented recommendation, and the savings summary.

Once implemented, the realized saving is measured from a 30-day window before ``implemented_us``
and the window after it (cost per request, or cost per day for caching, which removes requests),
scaled to a month.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from fleetledger.analytics.recommendations.lifecycle import get_recommendation, list_recommendations
from fleetledger.analytics.recommendations.recommendation import DAY_US, WINDOW_US, Recommendation, iso
from fleetledger.analytics.recommendations.tables import recommendations
from fleetledger.core.errors import Conflict, InvalidInput
from fleetledger.core.money import format_usd
from fleetledger.core.time import to_us
from fleetledger.storage.query import grouped_costs

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["measure_realized", "savings_summary"]


def _window(ledger: Ledger, where: Mapping[str, list[str | None]], since_us: int, until_us: int) -> tuple[int, int]:
    rows = grouped_costs(ledger.store, [], since_us, until_us, where)
    if not rows:
        return 0, 0
    return int(rows[0].measures["requests"]), int(rows[0].measures["cost_nanos"])


def measure_realized(ledger: Ledger, rec_id: int, *, now: datetime | None = None) -> Recommendation:
    """Measure an implemented recommendation's saving: 30 days before vs the days since (up to 30).

    Per request (volume changes do not count as savings), except caching, whose point is to make
    fewer requests: per day. The result is scaled to a 30-day month and stored in ``realized``.
    """
    rec = get_recommendation(ledger, rec_id)
    if rec.status != "implemented" or rec.implemented_us is None:
        raise Conflict(f"recommendation {rec_id} is {rec.status}; realized savings are measured once implemented")
    ledger.flush()
    now_us = to_us(now or ledger.clock())
    start = rec.implemented_us
    end = min(now_us, start + WINDOW_US)
    if end - start < DAY_US:
        raise InvalidInput(f"recommendation {rec_id} was implemented less than a day ago; measure again later")
    where = {k: list(v) for k, v in (rec.scope.get("measure") or {}).items()}
    before_requests, before_cost = _window(ledger, where, start - WINDOW_US, start)
    after_requests, after_cost = _window(ledger, where, start, end)
    after_us = end - start
    if rec.kind == "caching" or not before_requests or not after_requests:
        rate_before = Fraction(before_cost, WINDOW_US)
        rate_after = Fraction(after_cost, after_us)
        monthly = (rate_before - rate_after) * WINDOW_US
        basis = "per day"
    else:
        per_request_before = Fraction(before_cost, before_requests)
        per_request_after = Fraction(after_cost, after_requests)
        monthly = (per_request_before - per_request_after) * after_requests * Fraction(WINDOW_US, after_us)
        basis = "per request"
    realized_nanos = round(monthly)  # round() on a Fraction is half-even
    realized = {
        "basis": basis,
        "measured_at": iso(now_us),
        "before": {"since": iso(start - WINDOW_US), "until": iso(start), "requests": before_requests,
                   "cost_usd": format_usd(before_cost)},
        "after": {"since": iso(start), "until": iso(end), "requests": after_requests,
                  "cost_usd": format_usd(after_cost)},
        "realized_monthly_nanos": realized_nanos,
        "realized_monthly_usd": format_usd(realized_nanos),
        "realized_annual_usd": format_usd(realized_nanos * 12),
        "estimated_monthly_usd": format_usd(rec.savings_nanos),
    }  # fmt: skip
    with ledger.store.write() as conn:
        conn.execute(
            update(recommendations).where(recommendations.c.id == rec_id).values(realized=realized, updated_us=now_us)
        )
    return get_recommendation(ledger, rec_id)


def savings_summary(ledger: Ledger, *, departments: Sequence[str] | None = None) -> dict[str, Any]:
    """Recommended savings by status, open potential, and realized savings measured after
    implementation (only what was measured on before/after windows; nothing estimated here).

    ``departments`` limits to recommendations scoped to those departments (department-scoped keys).
    """
    recommendations = list_recommendations(ledger, departments=departments)
    by_status: dict[str, list[int]] = {}
    realized = measured = 0
    for rec in recommendations:
        entry = by_status.setdefault(rec.status, [0, 0])
        entry[0] += 1
        entry[1] += rec.savings_nanos
        if rec.status == "implemented" and rec.realized:
            realized += int(rec.realized.get("realized_monthly_nanos", 0))
            measured += 1
    return {
        "by_status": {
            status: {
                "count": count,
                "estimated_monthly_usd": format_usd(nanos),
                "estimated_annual_usd": format_usd(nanos * 12),
            }
            for status, (count, nanos) in by_status.items()
        },
        "open_potential_monthly_usd": format_usd(
            sum(nanos for status, (_, nanos) in by_status.items() if status in ("identified", "in_review", "approved"))
        ),
        "realized_monthly_usd": format_usd(realized),
        "realized_annual_usd": format_usd(realized * 12),
        "implemented_measured": measured,
        "implemented": [r.to_dict() for r in recommendations if r.status == "implemented"],
    }
