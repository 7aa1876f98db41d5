"""Return on investment of cost optimizations, in exact Decimal arithmetic.

The formulas are the ones of the cost-tracking specification (seed 001, "Savings Calculation
Model" and "ROI Projection Model"; the ROI percentage as in seed 000, ``ROICalculator``)::

    gross monthly savings = baseline monthly cost - optimized monthly cost
    net monthly savings   = gross monthly savings - monthly operating cost of the optimization
    payback months        = investment / net monthly savings
    monthly ROI %         = net monthly savings / investment x 100
    3-year ROI %          = (36 x net monthly savings - investment) / investment x 100
    net over 3 years      = 36 x net monthly savings - investment

Sums and products are exact; the quotients (payback, percentages) are rounded half-even to two
decimal places once, at the end. A payback or ROI that cannot exist (no savings, no investment)
is ``None``, never a made-up number.

:func:`caching_roi` answers "what would a response cache at hit rate X save?": the spend that a
cache could serve is the spend of requests whose ``prompt_hash`` was already seen in the range
(every repeat after the first), from the ledger, scaled to a 30-day month.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select

from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import NANOS_PER_USD, parse_usd
from fleetledger.core.time import parse_range, to_us
from fleetledger.storage.schema import events

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "roi",
    "Scenario",
    "SEED_SCENARIOS",
    "scenario_table",
    "cacheable_spend",
    "caching_roi",
    "to_json",
]

_CENT = Decimal("0.01")
_HUNDRED = Decimal(100)
#: Seed 001, "Multi-Layer Cost Optimization", layer_1_caching: "90% for cached content".
CACHE_SAVING_PCT = Decimal(90)


def _money(value: Any, field: str) -> Decimal:
    return parse_usd(value, field=field)


def _pct(value: Any, field: str) -> Decimal:
    number = parse_usd(value, field=field)
    if not 0 <= number <= 100:
        raise InvalidInput(f"{field}: {number} is not a percentage between 0 and 100")
    return number


def _round(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def roi(
    baseline_monthly: Decimal | int | str,
    optimized_monthly: Decimal | int | str,
    investment: Decimal | int | str,
    months: int = 36,
    monthly_operating_cost: Decimal | int | str = 0,
) -> dict[str, Any]:
    """Savings, payback and ROI of an optimization (seed 001 formulas; see the module docstring).

    Every value is a Decimal (``months`` an int); quotients are rounded to cents, and are ``None``
    when they do not exist (payback without net savings, ROI without investment).
    """
    baseline = _money(baseline_monthly, "baseline_monthly")
    optimized = _money(optimized_monthly, "optimized_monthly")
    invested = _money(investment, "investment")
    operating = _money(monthly_operating_cost, "monthly_operating_cost")
    if baseline < 0 or optimized < 0 or invested < 0 or operating < 0:
        raise InvalidInput("roi: costs and investment must not be negative")
    if isinstance(months, bool) or not isinstance(months, int) or months <= 0:
        raise InvalidInput(f"months: {months!r} must be a positive whole number")
    gross = baseline - optimized
    net = gross - operating
    horizon = net * months
    return {
        "baseline_monthly": baseline,
        "optimized_monthly": optimized,
        "investment": invested,
        "monthly_operating_cost": operating,
        "months": months,
        "cost_reduction_pct": _round(gross / baseline * _HUNDRED) if baseline else None,
        "gross_monthly_savings": gross,
        "monthly_savings": net,
        "annual_savings": net * 12,
        "payback_months": _round(invested / net) if net > 0 else None,
        "monthly_roi_pct": _round(net / invested * _HUNDRED) if invested else None,
        "roi_3y_pct": _round((horizon - invested) / invested * _HUNDRED) if invested else None,
        "net_3y": horizon - invested,
    }


@dataclass(frozen=True)
class Scenario:
    """A what-if: cut ``cost_reduction_pct`` of ``baseline_monthly`` for an ``investment``."""

    name: str
    cost_reduction_pct: Decimal
    investment: Decimal
    baseline_monthly: Decimal


#: Seed 001, "ROI Projection Model": the three scenarios the specification tabulates.
SEED_SCENARIOS = (
    Scenario("conservative", Decimal(50), Decimal(100_000), Decimal(50_000)),
    Scenario("realistic", Decimal(70), Decimal(150_000), Decimal(100_000)),
    Scenario("optimistic", Decimal(90), Decimal(200_000), Decimal(200_000)),
)


def scenario_table(scenarios: Sequence[Scenario] = SEED_SCENARIOS, months: int = 36) -> list[dict[str, Any]]:
    """One :func:`roi` row per scenario, named, with the scenario's cost reduction."""
    rows = []
    for scenario in scenarios:
        reduction = _pct(scenario.cost_reduction_pct, f"{scenario.name}: cost_reduction_pct")
        optimized = scenario.baseline_monthly - scenario.baseline_monthly * reduction / _HUNDRED
        rows.append(
            {"scenario": scenario.name, **roi(scenario.baseline_monthly, optimized, scenario.investment, months)}
        )
    return rows


def scenarios_for(
    baseline_monthly: Decimal | int | str,
    investment: Decimal | int | str,
    reductions: Sequence[Decimal | int | str] = (50, 70, 90),
    months: int = 36,
) -> list[dict[str, Any]]:
    """The seed's conservative / realistic / optimistic reductions applied to your own baseline."""
    names = ("conservative", "realistic", "optimistic")
    scenarios = [
        Scenario(
            names[i] if len(reductions) == 3 else f"{reduction}%",
            _pct(reduction, "reduction"),
            _money(investment, "investment"),
            _money(baseline_monthly, "baseline_monthly"),
        )
        for i, reduction in enumerate(reductions)
    ]
    return scenario_table(scenarios, months)


# -- caching ----------------------------------------------------------------------------------


def cacheable_spend(ledger: Ledger, *, since: Any = "30d", until: Any = None) -> dict[str, Any]:
    """The range's spend, and the part a response cache could have served (repeated ``prompt_hash``).

    For each prompt hash seen ``n > 1`` times with total cost ``c``, the repeats are worth
    ``c x (n - 1) / n`` (the first call must be paid for). Both are also scaled to a 30-day month.
    """
    start, end = parse_range(since, until, now=ledger.clock())
    ledger.flush()
    span = [events.c.ts_us >= to_us(start), events.c.ts_us < to_us(end)]
    repeated = (
        select(func.count().label("n"), func.sum(events.c.cost_nanos).label("cost"))
        .where(and_(*span, events.c.prompt_hash.is_not(None)))
        .group_by(events.c.prompt_hash)
        .having(func.count() > 1)
    )
    with ledger.store.read() as conn:
        total = int(
            conn.execute(select(func.coalesce(func.sum(events.c.cost_nanos), 0)).where(and_(*span))).scalar() or 0
        )
        cacheable = 0
        repeats = 0
        for n, cost in conn.execute(repeated):
            cacheable += int(cost) * (int(n) - 1) // int(n)
            repeats += int(n) - 1
        requests = int(conn.execute(select(func.count()).select_from(events).where(and_(*span))).scalar() or 0)
    days = Decimal((end - start) / timedelta(microseconds=1)) / Decimal(86_400_000_000)
    scale = Decimal(30) / days
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "spend": Decimal(total) / NANOS_PER_USD,
        "cacheable_spend": Decimal(cacheable) / NANOS_PER_USD,
        "monthly_spend": _round(Decimal(total) / NANOS_PER_USD * scale),
        "monthly_cacheable_spend": _round(Decimal(cacheable) / NANOS_PER_USD * scale),
        "requests": requests,
        "repeated_requests": repeats,
        "repeat_share_pct": _round(Decimal(repeats) * _HUNDRED / requests) if requests else Decimal(0),
    }


def caching_roi(
    *,
    hit_rate_pct: Decimal | int | str,
    investment: Decimal | int | str = 0,
    monthly_operating_cost: Decimal | int | str = 0,
    ledger: Ledger | None = None,
    since: Any = "30d",
    until: Any = None,
    monthly_spend: Decimal | int | str | None = None,
    cacheable_pct: Decimal | int | str = 100,
    saving_per_hit_pct: Decimal | int | str = CACHE_SAVING_PCT,
    months: int = 36,
) -> dict[str, Any]:
    """Savings and payback of a response cache that serves ``hit_rate_pct`` of the cacheable requests.

    With a ``ledger``, the monthly spend and its cacheable part come from :func:`cacheable_spend`;
    without one, give ``monthly_spend`` and the ``cacheable_pct`` of it. A hit saves
    ``saving_per_hit_pct`` of the request's cost (default 90%, seed 001's caching layer)::

        monthly savings = cacheable monthly spend x hit rate x saving per hit
    """
    hit_rate = _pct(hit_rate_pct, "hit_rate_pct")
    saving = _pct(saving_per_hit_pct, "saving_per_hit_pct")
    basis: Mapping[str, Any]
    if ledger is not None:
        basis = cacheable_spend(ledger, since=since, until=until)
        spend, cacheable = basis["monthly_spend"], basis["monthly_cacheable_spend"]
    else:
        if monthly_spend is None:
            raise InvalidInput("caching ROI: give monthly_spend, or a ledger to read it from")
        spend = _money(monthly_spend, "monthly_spend")
        cacheable = spend * _pct(cacheable_pct, "cacheable_pct") / _HUNDRED
        basis = {"monthly_spend": spend, "monthly_cacheable_spend": cacheable}
    savings = _round(cacheable * hit_rate / _HUNDRED * saving / _HUNDRED)
    result = roi(spend, spend - savings, investment, months, monthly_operating_cost)
    return {"hit_rate_pct": hit_rate, "saving_per_hit_pct": saving, **basis, **result}


def to_json(value: Any) -> Any:
    """Decimals as exact decimal strings (never exponent notation), recursively."""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value
