"""A/B cost experiments: control versus treatment, read from tagged usage events.

The tag convention (nothing else is needed to run an experiment)::

    ledger.record(..., tags={"experiment": "exp-prompt-v2", "arm": "control"})     # or "treatment"
    ledger.record(..., tags={"experiment": "exp-prompt-v2", "arm": "treatment", "quality": "0.82"})

``quality`` is optional: a score between 0 and 1 from your own evaluation. :func:`create` records an
experiment's definition (what control and treatment are, the hypothesis) in the ``meta`` table so
the dashboard can list it; :func:`analyze` works with or without one.

:func:`analyze` compares the arms' **mean cost per request** with Welch's t interval (unequal
variances) on the difference treatment - control, and says how many requests per arm would detect
the observed difference at 80% power and 5% significance::

    se      = sqrt(s_t^2 / n_t + s_c^2 / n_c)
    df      = se^4 / ((s_t^2 / n_t)^2 / (n_t - 1) + (s_c^2 / n_c)^2 / (n_c - 1))     (Welch-Satterthwaite)
    CI      = (mean_t - mean_c) +/- t(1 - alpha/2, df) x se
    n / arm = (z(1 - alpha/2) + z(power))^2 x (s_t^2 + s_c^2) / (mean_t - mean_c)^2

The interval and sample size are statistical estimates, computed in floating point on nano-USD and
shown rounded to the nano-dollar; the arms' costs themselves are exact sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select

from fleetledger.core.errors import Conflict, InvalidInput, NotFound
from fleetledger.core.money import format_usd
from fleetledger.core.time import parse_range, to_us
from fleetledger.storage import schema
from fleetledger.storage.schema import events

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "META_KEY",
    "create",
    "list_experiments",
    "get_experiment",
    "analyze",
    "welch",
    "Welch",
    "required_sample_size",
    "t_quantile",
]

META_KEY = "experiments"
ARMS = ("control", "treatment")


# -- definitions --------------------------------------------------------------------------------


def list_experiments(ledger: Ledger) -> list[dict[str, Any]]:
    """Every recorded experiment definition, oldest first."""
    return list(ledger.store.get_meta(META_KEY, []) or [])


def get_experiment(ledger: Ledger, name: str) -> dict[str, Any] | None:
    return next((e for e in list_experiments(ledger) if e.get("name") == name), None)


def create(ledger: Ledger, name: str, *, control: str, treatment: str, hypothesis: str | None = None) -> dict[str, Any]:
    """Record an experiment definition. Tag its events ``experiment=<name>``, ``arm=control|treatment``."""
    name = name.strip()
    if not name or len(name) > 512:
        raise InvalidInput("experiment name: give 1 to 512 characters (it is the value of tags.experiment)")
    if not control.strip() or not treatment.strip():
        raise InvalidInput("experiment: describe both arms, e.g. --control gpt-4o --treatment gpt-4o-mini")
    definition = {
        "name": name,
        "control": control.strip(),
        "treatment": treatment.strip(),
        "hypothesis": (hypothesis or "").strip() or None,
        "created_at": ledger.clock().isoformat().replace("+00:00", "Z"),
        "tags": {"experiment": name, "arm": list(ARMS)},
    }
    store = ledger.store
    # Read and write in one transaction so two creates cannot drop each other's definition.
    with store.write() as conn:
        current = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == META_KEY)).scalar() or []
        if any(e.get("name") == name for e in current):
            raise Conflict(f"experiment {name!r} already exists; pick another name")
        store.set_meta(META_KEY, [*current, definition], conn=conn)
    return definition


# -- statistics ---------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def _t_quantile_own(p: float, df: float) -> float:
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -_t_quantile_own(1.0 - p, df)
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if _t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile: scipy's when installed, else bisection on the incomplete beta CDF."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise InvalidInput(f"t quantile: need 0 < p < 1 and df > 0, got p={p}, df={df}")
    try:
        from scipy.stats import t as student_t
    except ImportError:  # pragma: no cover - scipy is optional
        return _t_quantile_own(p, df)
    return float(student_t.ppf(p, df))


@dataclass(frozen=True)
class Welch:
    """Welch's t interval on ``mean(b) - mean(a)``."""

    difference: float
    low: float
    high: float
    se: float
    df: float
    p_value: float


def _moments(values: Sequence[float]) -> tuple[int, float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return n, mean, variance


def welch(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05) -> Welch | None:
    """Welch's interval on ``mean(b) - mean(a)``; None with fewer than two values in an arm."""
    if len(a) < 2 or len(b) < 2:
        return None
    na, ma, va = _moments(a)
    nb, mb, vb = _moments(b)
    diff = mb - ma
    qa, qb = va / na, vb / nb
    se = math.sqrt(qa + qb)
    if se == 0.0:
        return Welch(diff, diff, diff, 0.0, float(na + nb - 2), 0.0 if diff else 1.0)
    df = (qa + qb) ** 2 / ((qa**2 / (na - 1) if qa else 0.0) + (qb**2 / (nb - 1) if qb else 0.0))
    margin = t_quantile(1.0 - alpha / 2.0, df) * se
    p_value = 2.0 * (1.0 - _t_cdf(abs(diff) / se, df))
    return Welch(diff, diff - margin, diff + margin, se, df, max(0.0, min(1.0, p_value)))


def required_sample_size(
    var_a: float, var_b: float, difference: float, *, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Requests per arm to detect ``difference`` (two-sided, normal approximation); None if zero."""
    if difference == 0.0:
        return None
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0) + NormalDist().inv_cdf(power)
    return max(2, math.ceil(z * z * (var_a + var_b) / (difference * difference)))


# -- analysis -----------------------------------------------------------------------------------


def _usd(nanos: float) -> str:
    return format_usd(round(nanos))


def _arm_rows(
    ledger: Ledger, experiment: str, since: Any, until: Any, departments: Sequence[str | None] | None
) -> tuple[Any, Any, dict[str, list[tuple]]]:
    start, end = parse_range(since, until, now=ledger.clock())
    ledger.flush()
    conditions = [
        events.c.ts_us >= to_us(start),
        events.c.ts_us < to_us(end),
        events.c.tags["experiment"].as_string() == experiment,
    ]
    if departments is not None:
        named = [d for d in departments if d is not None]
        conditions.append(
            or_(events.c.department.in_(named), events.c.department.is_(None))
            if None in departments
            else events.c.department.in_(named)
        )
    statement = select(
        events.c.tags["arm"].as_string(),
        events.c.cost_nanos,
        events.c.latency_ms,
        events.c.status,
        events.c.tags["quality"].as_string(),
    ).where(and_(*conditions))
    arms: dict[str, list[tuple]] = {}
    with ledger.store.read() as conn:
        for arm, cost, latency, status, quality in conn.execute(statement):
            arms.setdefault(arm or "(none)", []).append((int(cost), latency, status, quality))
    return start, end, arms


def _quality(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _arm_summary(rows: list[tuple]) -> dict[str, Any]:
    n = len(rows)
    costs = [float(r[0]) for r in rows]
    latencies = [float(r[1]) for r in rows if r[1] is not None]
    qualities = [q for r in rows if (q := _quality(r[3])) is not None]
    total = sum(r[0] for r in rows)
    _, _, variance = _moments(costs) if n else (0, 0.0, 0.0)
    return {
        "requests": n,
        "cost_usd": format_usd(total),
        "mean_cost_per_request_usd": _usd(total / n) if n else None,
        "sd_cost_per_request_usd": _usd(math.sqrt(variance)) if n > 1 else None,
        "errors": sum(1 for r in rows if r[2] == "error"),
        "error_rate": round(sum(1 for r in rows if r[2] == "error") / n, 4) if n else None,
        "avg_latency_ms": round(math.fsum(latencies) / len(latencies), 1) if latencies else None,
        "quality": round(math.fsum(qualities) / len(qualities), 4) if qualities else "n/a",
        "quality_samples": len(qualities),
    }


def analyze(
    ledger: Ledger,
    experiment: str,
    *,
    since: Any = "90d",
    until: Any = None,
    alpha: float = 0.05,
    power: float = 0.8,
    departments: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Cost, quality and latency per arm, Welch's interval on the cost difference, and a verdict.

    Verdicts: ``treatment_cheaper`` / ``treatment_more_expensive`` (the interval excludes zero),
    ``inconclusive`` (it does not: ``needed_per_arm`` says how many requests per arm would settle
    the observed difference), ``insufficient_data`` (fewer than two requests in an arm).
    ``departments`` limits the requests read to those departments (scoped API keys).
    """
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise InvalidInput("alpha and power must be between 0 and 1")
    start, end, arms = _arm_rows(ledger, experiment, since, until, departments)
    definition = get_experiment(ledger, experiment)
    if not arms and definition is None:
        raise NotFound(
            f"no experiment {experiment!r}: no events tagged experiment={experiment} in the range and no definition"
        )
    control, treatment = arms.get("control", []), arms.get("treatment", [])
    result: dict[str, Any] = {
        "experiment": experiment,
        "definition": definition,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "alpha": alpha,
        "power": power,
        "arms": {"control": _arm_summary(control), "treatment": _arm_summary(treatment)},
        "untagged_arm_requests": sum(len(rows) for arm, rows in arms.items() if arm not in ARMS),
    }
    cost_c = [float(r[0]) for r in control]
    cost_t = [float(r[0]) for r in treatment]
    interval = welch(cost_c, cost_t, alpha=alpha)
    if interval is None:
        result.update(
            difference=None,
            verdict="insufficient_data",
            needed_per_arm=None,
            summary="need at least two requests in each arm (tags.arm = control / treatment)",
        )
        return result
    _, mean_c, var_c = _moments(cost_c)
    _, mean_t, var_t = _moments(cost_t)
    needed = required_sample_size(var_c, var_t, interval.difference, alpha=alpha, power=power)
    level = f"{(1 - alpha) * 100:g}%"
    result["difference"] = {
        "mean_cost_per_request_usd": _usd(interval.difference),
        "relative_pct": round(interval.difference / mean_c * 100, 2) if mean_c else None,
        "confidence": level,
        "ci_low_usd": _usd(interval.low),
        "ci_high_usd": _usd(interval.high),
        "p_value": round(interval.p_value, 6),
        "df": round(interval.df, 1),
        "method": "welch",
    }
    quality_c = [q for r in control if (q := _quality(r[3])) is not None]
    quality_t = [q for r in treatment if (q := _quality(r[3])) is not None]
    quality = welch(quality_c, quality_t, alpha=alpha)
    if quality is not None:
        result["quality_difference"] = {
            "mean": round(quality.difference, 4),
            "ci_low": round(quality.low, 4),
            "ci_high": round(quality.high, 4),
            "p_value": round(quality.p_value, 6),
        }
    result["needed_per_arm"] = needed
    if interval.high < 0:
        verdict = "treatment_cheaper"
        summary = (
            f"treatment is cheaper by {_usd(-interval.difference)} USD per request "
            f"({level} CI {_usd(-interval.high)} to {_usd(-interval.low)})"
        )
    elif interval.low > 0:
        verdict = "treatment_more_expensive"
        summary = (
            f"treatment costs {_usd(interval.difference)} USD more per request "
            f"({level} CI {_usd(interval.low)} to {_usd(interval.high)})"
        )
    else:
        verdict = "inconclusive"
        smallest = min(len(control), len(treatment))
        if needed is None:
            summary = "no cost difference observed between the arms"
        else:
            summary = (
                f"no significant cost difference yet; about {max(0, needed - smallest):,} more requests per arm "
                f"({needed:,} each) would detect the observed difference of {_usd(interval.difference)} USD "
                f"per request at {power:.0%} power"
            )
        result["more_needed_per_arm"] = None if needed is None else max(0, needed - smallest)
    if quality is not None and verdict == "treatment_cheaper" and quality.high < 0:
        summary += "; but its quality is significantly lower"
    result["verdict"] = verdict
    result["summary"] = summary
    result["mean_cost_per_request_usd"] = {"control": _usd(mean_c), "treatment": _usd(mean_t)}
    return result
