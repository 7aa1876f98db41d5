"""Cost anomalies: a seasonality-aware robust detector, ranked root causes and a review lifecycle.

Detection (:func:`scan`)
    One grouped query per level (``fleet``, ``department``, ``agent``) gives a spend series per scope,
    by day (or by hour). A point's *expected* value is the median of the same weekday (hour of week)
    in the trailing ``weeks`` weeks, each reference scaled by how the series' trailing-week level has
    moved since (the robust trend adjustment). Residuals are log ratios ``log(actual / expected)``;
    their scale is ``1.4826 x MAD`` of the series' residuals over the scanned range, floored so a
    very regular series does not turn pennies into alarms. The robust z becomes a 0-1 score,
    ``1 - 2^-(z/3)^2`` (z = 3 scores 0.5, z = 5 about 0.85), and a point is flagged when its score
    reaches ``min_score``, it is at least ``min_ratio`` times its expectation and the excess is
    material (``min_impact_share`` of the fleet's median daily spend). Only increases are reported.
    Consecutive flagged points merge into one anomaly window, with expected, actual and impact in
    exact nano-USD (``impact_pct`` relative to expected).

Root causes (:func:`explain`)
    The window is compared with the same hours of the trailing ``weeks`` weeks (per value: the median
    of those weeks, scaled to the detector's expectation). For each dimension of
    :data:`CAUSE_DIMENSIONS`, each value's *excess* is its spend beyond a proportional scale-up of
    its baseline, ``c_v - b_v x C/B``; its explained share is ``excess / (C - B)``, folded back
    above 1 (``2 - x``) because a value that moves more than the whole scope is a relabelling (a
    version rollout) offset by another value, not the explanation. The best value per dimension is
    a candidate; its mechanism comes from its own slice: a single ``session_id`` is a
    ``runaway_loop``; a ``model`` whose share of requests rose is a ``model_switch``, one with the
    same share but dearer tokens a ``price_change``; a slice sending >= 1.5x the tokens per request
    is ``token_bloat``; otherwise more requests are a ``request_surge`` (``mix_change`` when
    requests did not rise). Candidates within 0.15 of the best explained share are ranked by how
    specific and actionable their dimension is (:data:`CAUSE_DIMENSIONS` order: a session, then a
    model, a version, an environment... before a task or a user, which often just label the same
    extra traffic); the others follow by explained share.

Status lifecycle (:func:`set_status`)
    ``detected`` -> ``investigating`` | ``resolved`` | ``false_positive`` | ``expected``;
    ``investigating`` -> any other; ``resolved`` -> ``investigating``; ``false_positive`` and
    ``expected`` -> ``detected`` (reopen). Marking an anomaly ``expected`` suppresses similar ones:
    a *new* detection with the same scope and the same first-ranked cause is stored with status
    ``expected`` (its note names the anomaly that suppressed it), so it is kept for the record but
    never alerted on. Re-scans upsert by fingerprint (granularity, level, scope, window start) and
    never change a status or note people set.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from statistics import median
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from ..errors import InvalidInput, NotFound
from ..money import nanos_to_usd
from ..store.query import grouped_costs
from ..store.store import DAY_US, HOUR_US, Store
from ..timeutil import from_us, parse_moment, to_us
from .anomaly_tables import anomalies

if TYPE_CHECKING:
    from ..alerts.rules import Finding, Rule
    from ..ledger import Ledger

__all__ = [
    "Anomaly",
    "DetectorConfig",
    "LEVELS",
    "GRANULARITIES",
    "STATUSES",
    "CAUSES",
    "CAUSE_DIMENSIONS",
    "scan",
    "scan_store",
    "detect",
    "explain",
    "list_anomalies",
    "get_anomaly",
    "set_status",
    "evaluate_anomaly_rule",
    "register_evaluator",
]

LEVELS = ("fleet", "department", "agent")
GRANULARITIES = ("day", "hour")
STATUSES = ("detected", "investigating", "resolved", "false_positive", "expected")
CAUSES = ("runaway_loop", "model_switch", "price_change", "token_bloat", "request_surge", "mix_change")
#: Dimensions a change is attributed to, most specific and actionable first (the tie-break order).
CAUSE_DIMENSIONS = ("session_id", "model", "version", "environment", "provider", "operation", "agent", "task", "user")
_TRANSITIONS = {
    "detected": {"investigating", "resolved", "false_positive", "expected"},
    "investigating": {"detected", "resolved", "false_positive", "expected"},
    "resolved": {"investigating"},
    "false_positive": {"detected"},
    "expected": {"detected"},
}
_STEP = {"day": DAY_US, "hour": HOUR_US}
_SEASON = {"day": 7, "hour": 168}  # points per week
_TIE = 0.15  # explained shares this close count as a tie, broken by dimension
_MAX_CAUSES = 5


@dataclass(frozen=True)
class DetectorConfig:
    """Knobs of the detector; the defaults are tuned on the demo fleet (see the tests)."""

    weeks: int = 4  # same-weekday references
    min_weeks: int = 2  # fewer references than this: no expectation, no detection
    min_score: float = 0.8
    min_ratio: float = 1.25  # actual / expected spend
    min_impact_share: float = 0.005  # of the fleet's median daily spend
    min_requests: float = 24.0  # median calls per day (pro rata per hour) a series needs to be scored
    scale_floor: float = 0.1  # floor of the log-residual scale (10%)
    z_half: float = 3.0  # the robust z that scores 0.5


@dataclass(frozen=True)
class Anomaly:
    """A detected anomaly window of one scope, with its root causes and review status."""

    level: str
    granularity: str
    scope: dict[str, str]
    start: datetime
    end: datetime
    score: float
    expected_nanos: int
    actual_nanos: int
    causes: list[dict[str, Any]] = field(default_factory=list)
    status: str = "detected"
    note: str | None = None
    department: str | None = None
    id: int | None = None
    detected_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def impact_nanos(self) -> int:
        return self.actual_nanos - self.expected_nanos

    @property
    def expected_usd(self) -> Decimal:
        return nanos_to_usd(self.expected_nanos)

    @property
    def actual_usd(self) -> Decimal:
        return nanos_to_usd(self.actual_nanos)

    @property
    def impact_usd(self) -> Decimal:
        return nanos_to_usd(self.impact_nanos)

    @property
    def impact_pct(self) -> Decimal | None:
        if self.expected_nanos <= 0:
            return None
        return (Decimal(self.impact_nanos) * 100 / Decimal(self.expected_nanos)).quantize(Decimal("0.1"))

    @property
    def cause(self) -> str | None:
        return self.causes[0]["cause"] if self.causes else None

    @property
    def fingerprint(self) -> str:
        key = json.dumps([self.granularity, self.level, self.scope, to_us(self.start)], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:40]

    def to_dict(self) -> dict[str, Any]:
        pct = self.impact_pct
        return {
            "id": self.id,
            "level": self.level,
            "granularity": self.granularity,
            "scope": self.scope,
            "department": self.department,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "score": round(self.score, 3),
            "expected_usd": str(self.expected_usd),
            "actual_usd": str(self.actual_usd),
            "impact_usd": str(self.impact_usd),
            "impact_pct": None if pct is None else str(pct),
            "cause": self.cause,
            "causes": self.causes,
            "status": self.status,
            "note": self.note,
            "detected_at": self.detected_at.isoformat() if self.detected_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "fingerprint": self.fingerprint,
        }


# -- detection ---------------------------------------------------------------------------------------


def _choice(values: Iterable[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    out = tuple(values)
    for value in out:
        if value not in allowed:
            raise InvalidInput(f"{what}: {value!r} is not one of {', '.join(allowed)}")
    return out


def _level_key(level: str) -> list[str]:
    return [] if level == "fleet" else [level]


def _series(
    store: Store, level: str, granularity: str, first_us: int, until_us: int, *, by_model: bool = False
) -> dict[tuple[Any, ...], dict[str, list[int]]]:
    """Per scope of ``level`` (and model), cost, requests and tokens per point of the range."""
    step = _STEP[granularity]
    n = (until_us - first_us) // step
    out: dict[tuple[Any, ...], dict[str, list[int]]] = {}
    keys = [granularity, *_level_key(level), *(["model"] if by_model else [])]
    for row in grouped_costs(store, keys, first_us, until_us):
        bucket, *scope = row.keys
        i = (int(bucket) - first_us) // step
        if 0 <= i < n:
            m = row.measures
            series = out.setdefault(tuple(scope), {k: [0] * n for k in ("cost", "requests", "tokens")})
            series["cost"][i] += int(m["cost_nanos"])
            series["requests"][i] += int(m["requests"])
            series["tokens"][i] += int(m["input_tokens"]) + int(m["output_tokens"])
    return out


def _expected(values: Sequence[int], season: int, weeks: int, min_weeks: int) -> list[float | None]:
    """Same point of the trailing weeks, each scaled by the change of the trailing-week level."""
    n = len(values)
    prefix = [0]
    for v in values:
        prefix.append(prefix[-1] + v)

    def level(t: int) -> float | None:  # mean of the week before point t
        return (prefix[t] - prefix[t - season]) / season if t >= season else None

    born = next((i for i, v in enumerate(values) if v > 0), n)  # no references before the data starts
    out: list[float | None] = []
    for i in range(n):
        refs = []
        now_level = level(i)
        for j in range(1, weeks + 1):
            k = i - season * j
            if k < born:
                break
            then_level = level(k)
            factor = 1.0
            if now_level and then_level:
                factor = min(2.0, max(0.5, now_level / then_level))
            refs.append(values[k] * factor)
        out.append(median(refs) if len(refs) >= min_weeks else None)
    return out


def _robust_z(
    values: Sequence[int], expected: Sequence[float | None], first: int, floor: float, *, counts: bool
) -> dict[int, float]:
    """Robust z of ``log(actual / expected)`` per point; counts also get a Poisson floor."""
    positives = sorted(v for v in values if v > 0)
    if not positives:
        return {}
    eps = max(5.0, 0.05 * positives[len(positives) // 2]) if counts else 0.05 * positives[len(positives) // 2] + 1
    residuals: dict[int, float] = {}
    for i in range(first, len(values)):
        e = expected[i]
        if e is not None:
            residuals[i] = math.log((values[i] + eps) / (e + eps))
    if len(residuals) < 7:
        return {}
    center = median(residuals.values())
    scale = max(1.4826 * median(abs(r - center) for r in residuals.values()), floor)
    out = {}
    for i, r in residuals.items():
        local = max(scale, 1 / math.sqrt((expected[i] or 0) + eps)) if counts else scale
        out[i] = (r - center) / local
    return out


def _score(z: float, z_half: float) -> float:
    return 0.0 if z <= 0 else 1.0 - 2.0 ** (-((z / z_half) ** 2))


@dataclass
class _Window:
    start: int
    end: int  # exclusive point index
    expected: float
    actual: int
    score: float


def _flag(
    series: Mapping[str, Sequence[int]],
    models: Sequence[Mapping[str, Sequence[int]]],
    first: int,
    config: DetectorConfig,
    season: int,
    min_impact: float,
) -> list[_Window]:
    """Windows of consecutive flagged points at index ``>= first``.

    Spend is heavy-tailed (one long research call on a premium model costs a thousand triage
    calls), so the evidence is the strongest robust z among spend and its drivers: requests,
    tokens, and the requests of each model (a model switch); a point is flagged when that evidence
    scores ``min_score`` *and* spend itself rose materially (``min_ratio`` and ``min_impact``).
    """
    cost = series["cost"]
    expected_cost = _expected(cost, season, config.weeks, config.min_weeks)
    signals = [_robust_z(cost, expected_cost, first, config.scale_floor, counts=False)]
    for name in ("requests", "tokens"):
        values = series[name]
        expected = _expected(values, season, config.weeks, config.min_weeks)
        signals.append(_robust_z(values, expected, first, config.scale_floor, counts=name == "requests"))
    for model in models:
        values = model["requests"]
        expected = _expected(values, season, config.weeks, config.min_weeks)
        signals.append(_robust_z(values, expected, first, config.scale_floor, counts=True))
    windows: list[_Window] = []
    for i, z_cost in signals[0].items():
        e = expected_cost[i] or 0.0
        if cost[i] < config.min_ratio * e or cost[i] - e < min_impact:
            continue
        z = max(z_cost, *(signal.get(i, 0.0) for signal in signals[1:]))
        score = _score(z, config.z_half)
        if score < config.min_score:
            continue
        last = windows[-1] if windows else None
        if last is not None and last.end == i:
            last.end, last.expected, last.actual = i + 1, last.expected + e, last.actual + cost[i]
            last.score = max(last.score, score)
        else:
            windows.append(_Window(i, i + 1, e, cost[i], score))
    return windows


def detect(
    store: Store,
    *,
    now: datetime,
    since: Any = "90d",
    levels: Sequence[str] = LEVELS,
    granularity: str = "day",
    config: DetectorConfig | None = None,
    explain_causes: bool = True,
) -> list[Anomaly]:
    """Find anomalies (not stored) in the complete days (hours) from ``since`` to ``now``."""
    config = config or DetectorConfig()
    levels = _choice(levels, LEVELS, "level")
    (granularity,) = _choice([granularity], GRANULARITIES, "granularity")
    step, season = _STEP[granularity], _SEASON[granularity]
    until_us = to_us(now) - to_us(now) % step  # only complete points
    since_us = to_us(parse_moment(since, now=now))
    since_us -= since_us % step
    if since_us >= until_us:
        return []
    # History before ``since`` gives the first points their weekly references and trend.
    first_us = since_us - (config.weeks + 1) * season * step
    first = (since_us - first_us) // step
    fleet = _series(store, "fleet", "day", first_us - first_us % DAY_US, until_us - until_us % DAY_US)
    daily = [v for v in next(iter(fleet.values()), {"cost": []})["cost"] if v > 0]
    min_impact = config.min_impact_share * (median(daily) if daily else 0) * step / DAY_US
    agent_department: dict[str, str | None] = {}
    if "agent" in levels:
        for row in grouped_costs(store, ["agent", "department"], first_us, until_us):
            agent_department.setdefault(row.keys[0], row.keys[1])
    found: list[Anomaly] = []
    for level in levels:
        per_model: dict[tuple[Any, ...], list[dict[str, list[int]]]] = {}
        for key, model_series in _series(store, level, granularity, first_us, until_us, by_model=True).items():
            per_model.setdefault(key[:-1], []).append(model_series)
        for scope_key, series in _series(store, level, granularity, first_us, until_us).items():
            if level != "fleet" and scope_key[0] is None:
                continue  # events without a department / agent are covered by the fleet level
            requests = series["requests"]
            born = next((i for i, r in enumerate(requests) if r > 0), len(requests))
            if not requests[born:] or median(requests[born:]) < config.min_requests * step / DAY_US:
                continue  # too few calls for a statistical profile: its spend is mostly chance
            for window in _flag(series, per_model.get(scope_key, []), first, config, season, min_impact):
                scope = {} if level == "fleet" else {level: str(scope_key[0])}
                department = (
                    scope.get("department") if level == "department" else agent_department.get(scope.get("agent", ""))
                )
                found.append(
                    Anomaly(
                        level=level,
                        granularity=granularity,
                        scope=scope,
                        department=department,
                        start=from_us(first_us + window.start * step),
                        end=from_us(first_us + window.end * step),
                        score=round(window.score, 4),
                        expected_nanos=round(window.expected),
                        actual_nanos=window.actual,
                    )
                )
    if explain_causes:
        found = [replace(a, causes=explain(store, a, weeks=config.weeks)) for a in found]
    return found


# -- root causes -------------------------------------------------------------------------------------


@dataclass
class _Slice:
    cost: float = 0.0
    requests: float = 0.0
    tokens: float = 0.0

    @property
    def tokens_per_request(self) -> float | None:
        return self.tokens / self.requests if self.requests else None

    @property
    def cost_per_token(self) -> float | None:
        return self.cost / self.tokens if self.tokens else None


def _slices(store: Store, dimension: str, since_us: int, until_us: int, where: Mapping[str, list[str]]) -> dict:
    out: dict[Any, _Slice] = {}
    for row in grouped_costs(store, [dimension], since_us, until_us, where or None):
        m = row.measures
        out[row.keys[0]] = _Slice(
            float(m["cost_nanos"]), float(m["requests"]), float(m["input_tokens"]) + float(m["output_tokens"])
        )
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _mechanism(dimension: str, share: float, now: _Slice, base: _Slice, total_now: _Slice, total_base: _Slice) -> str:
    reference = base if base.requests else total_base
    tokens_ratio = _ratio(now.tokens_per_request, reference.tokens_per_request) or 1.0
    price_ratio = _ratio(now.cost_per_token, reference.cost_per_token) or 1.0
    requests_ratio = _ratio(total_now.requests, total_base.requests) or float("inf")
    if dimension == "session_id" and share >= 0.3:
        return "runaway_loop"
    if dimension == "model":
        share_now = now.requests / total_now.requests if total_now.requests else 0.0
        share_then = base.requests / total_base.requests if total_base.requests else 0.0
        if share_now - share_then >= 0.1:
            return "model_switch"
        if price_ratio >= 1.2 and tokens_ratio < 1.2:
            return "price_change"
    if tokens_ratio >= 1.5:
        return "token_bloat"
    if price_ratio >= 1.25 and tokens_ratio < 1.2 and requests_ratio < 1.3:
        return "price_change"
    return "request_surge" if requests_ratio >= 1.3 else "mix_change"


def _whole_scope_cause(anomaly: Anomaly, now: _Slice, base: _Slice) -> dict[str, Any]:
    requests = _rounded_ratio(now.requests, base.requests)
    per_request = _rounded_ratio(now.tokens_per_request, base.tokens_per_request)
    cost_per_token_now = now.cost / now.tokens if now.tokens else 0.0
    cost_per_token_base = base.cost / base.tokens if base.tokens else 0.0
    if requests is not None and requests >= 1.5 and (per_request is None or per_request < 1.3):
        cause = "request_surge"
    elif per_request is not None and per_request >= 1.3:
        cause = "token_bloat"
    elif cost_per_token_base and cost_per_token_now / cost_per_token_base >= 1.2:
        cause = "price_change"
    else:
        cause = "request_surge" if (requests or 0) >= 1.0 else "token_bloat"
    return {
        "cause": cause,
        "dimension": dict(anomaly.scope) or {"scope": "fleet"},
        "explained_share": 1.0,
        "baseline_usd": str(nanos_to_usd(round(base.cost))),
        "actual_usd": str(nanos_to_usd(round(now.cost))),
        "requests_ratio": requests,
        "tokens_per_request_ratio": per_request,
    }


def explain(store: Store, anomaly: Anomaly, *, weeks: int = 4) -> list[dict[str, Any]]:
    """Ranked root causes of ``anomaly``: which dimension values explain the change, and how."""
    since_us, until_us = to_us(anomaly.start), to_us(anomaly.end)
    where = {key: [value] for key, value in anomaly.scope.items()}
    candidates: list[dict[str, Any]] = []
    whole: tuple[_Slice, _Slice] | None = None
    for dimension in CAUSE_DIMENSIONS:
        if dimension in anomaly.scope:
            continue
        now = _slices(store, dimension, since_us, until_us, where)
        weeks_back = [
            _slices(store, dimension, since_us - j * 7 * DAY_US, until_us - j * 7 * DAY_US, where)
            for j in range(1, weeks + 1)
        ]
        values = set(now).union(*weeks_back)
        base = {
            v: _Slice(*(median(getattr(w.get(v, _Slice()), m) for w in weeks_back) for m in _Slice.__annotations__))
            for v in values
        }
        total_now = _Slice(*(sum(getattr(s, m) for s in now.values()) for m in _Slice.__annotations__))
        total_base = _Slice(*(sum(getattr(s, m) for s in base.values()) for m in _Slice.__annotations__))
        # Scale the baseline to the detector's expectation (trend), so the deltas add up to the impact.
        k = anomaly.expected_nanos / total_base.cost if total_base.cost else 1.0
        for v in values:
            b = base[v]
            base[v] = _Slice(b.cost * k, b.requests * k, b.tokens * k)
        total_base = _Slice(total_base.cost * k, total_base.requests * k, total_base.tokens * k)
        whole = (total_now, total_base)
        delta = total_now.cost - total_base.cost
        if delta <= 0:
            continue
        growth = total_now.cost / total_base.cost if total_base.cost else 0.0
        best: tuple[float, Any] | None = None
        for v in values:
            c = now.get(v, _Slice()).cost
            share = (c - base[v].cost * growth) / delta
            share = max(0.0, min(1.0, 2.0 - share if share > 1 else share))
            if best is None or share > best[0]:
                best = (share, v)
        if best is None or best[0] <= 0:
            continue
        share, value = best
        slice_now, slice_base = now.get(value, _Slice()), base[value]
        candidates.append(
            {
                "cause": _mechanism(dimension, share, slice_now, slice_base, total_now, total_base),
                "dimension": {dimension: value},
                "explained_share": round(share, 3),
                "baseline_usd": str(nanos_to_usd(round(slice_base.cost))),
                "actual_usd": str(nanos_to_usd(round(slice_now.cost))),
                "requests_ratio": _rounded_ratio(slice_now.requests, slice_base.requests),
                "tokens_per_request_ratio": _rounded_ratio(
                    slice_now.tokens_per_request, (slice_base if slice_base.requests else total_base).tokens_per_request
                ),
            }
        )
    if not candidates:
        # Nothing shifted between values (one agent, one model, just more of it): the change is the
        # scope as a whole. Say which mechanism moved: requests, tokens per request, or price.
        return [_whole_scope_cause(anomaly, *whole)] if whole is not None else []
    top = max(c["explained_share"] for c in candidates)
    order = {d: i for i, d in enumerate(CAUSE_DIMENSIONS)}

    def rank(c: dict[str, Any]) -> tuple[int, float]:
        tied = c["explained_share"] >= top - _TIE
        (dimension,) = c["dimension"]
        return (0, order[dimension]) if tied else (1, -c["explained_share"])

    return sorted(candidates, key=rank)[:_MAX_CAUSES]


def _rounded_ratio(a: float | None, b: float | None) -> float | None:
    ratio = _ratio(a, b)
    return None if ratio is None else round(ratio, 2)


# -- persistence ------------------------------------------------------------------------------------


def _from_row(row: Any) -> Anomaly:
    return Anomaly(
        id=int(row.id),
        level=row.level,
        granularity=row.granularity,
        scope=dict(row.scope or {}),
        department=row.department,
        start=from_us(row.start_us),
        end=from_us(row.end_us),
        score=float(row.score),
        expected_nanos=int(row.expected_nanos),
        actual_nanos=int(row.actual_nanos),
        causes=list(row.causes or []),
        status=row.status,
        note=row.note,
        detected_at=from_us(row.detected_us),
        updated_at=from_us(row.updated_us),
    )


def _suppress_key(scope: Mapping[str, Any], cause: str | None) -> str:
    return json.dumps([dict(scope), cause], sort_keys=True)


def _store(conn: Connection, found: Sequence[Anomaly], now_us: int) -> list[Anomaly]:
    existing = {}
    fingerprints = [a.fingerprint for a in found]
    for chunk in range(0, len(fingerprints), 500):
        part = fingerprints[chunk : chunk + 500]
        for row in conn.execute(select(anomalies).where(anomalies.c.fingerprint.in_(part))):
            existing[row.fingerprint] = row
    expected_ids = {
        _suppress_key(row.scope or {}, (row.causes or [{}])[0].get("cause")): int(row.id)
        for row in conn.execute(select(anomalies).where(anomalies.c.status == "expected"))
        if not (row.note or "").startswith("suppressed:")
    }
    out = []
    for anomaly in found:
        values = {
            "end_us": to_us(anomaly.end),
            "score": anomaly.score,
            "expected_nanos": anomaly.expected_nanos,
            "actual_nanos": anomaly.actual_nanos,
            "impact_nanos": anomaly.impact_nanos,
            "causes": anomaly.causes,
            "department": anomaly.department,
        }
        stored_row = existing.get(anomaly.fingerprint)
        if stored_row is not None:
            row = stored_row
            changed = {k: v for k, v in values.items() if getattr(row, k) != v}
            if changed:
                conn.execute(update(anomalies).where(anomalies.c.id == row.id).values(**changed, updated_us=now_us))
            stored = _from_row(row)
            out.append(replace(stored, **_fields(values), updated_at=from_us(now_us) if changed else stored.updated_at))
            continue
        status, note = "detected", None
        suppressor = expected_ids.get(_suppress_key(anomaly.scope, anomaly.cause))
        if suppressor is not None:
            status, note = "expected", f"suppressed: matches expected anomaly #{suppressor}"
        new_id = conn.execute(
            insert(anomalies).values(
                level=anomaly.level,
                granularity=anomaly.granularity,
                scope=anomaly.scope,
                start_us=to_us(anomaly.start),
                status=status,
                note=note,
                detected_us=now_us,
                updated_us=now_us,
                fingerprint=anomaly.fingerprint,
                **values,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        out.append(
            replace(
                anomaly,
                id=int(new_id),
                status=status,
                note=note,
                detected_at=from_us(now_us),
                updated_at=from_us(now_us),
            )
        )
    return out


def _fields(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "end": from_us(values["end_us"]),
        "score": values["score"],
        "expected_nanos": values["expected_nanos"],
        "actual_nanos": values["actual_nanos"],
        "causes": values["causes"],
        "department": values["department"],
    }


def scan_store(
    store: Store,
    *,
    now: datetime,
    levels: Sequence[str] = LEVELS,
    since: Any = "90d",
    granularity: str = "day",
    config: DetectorConfig | None = None,
) -> list[Anomaly]:
    """Detect, explain and upsert anomalies; returns them with ids and statuses (idempotent)."""
    found = detect(store, now=now, since=since, levels=levels, granularity=granularity, config=config)
    with store.write() as conn:
        return _store(conn, found, to_us(now))


def scan(
    ledger: Ledger,
    *,
    levels: Sequence[str] = LEVELS,
    since: Any = "90d",
    now: datetime | None = None,
    granularity: str = "day",
    config: DetectorConfig | None = None,
) -> list[Anomaly]:
    """Scan ``ledger`` per level for anomalies since ``since`` (e.g. ``90d``) and store them."""
    return scan_store(
        ledger.store,
        now=now or ledger.clock(),
        levels=levels,
        since=since,
        granularity=granularity,
        config=config,
    )


def list_anomalies(
    store: Store,
    *,
    status: str | None = None,
    level: str | None = None,
    departments: Sequence[str] | None = None,
    since: datetime | None = None,
    limit: int = 500,
) -> list[Anomaly]:
    """Stored anomalies, newest window first; ``departments`` limits to those departments' scopes."""
    statement = select(anomalies)
    if status is not None:
        _choice([status], STATUSES, "status")
        statement = statement.where(anomalies.c.status == status)
    if level is not None:
        _choice([level], LEVELS, "level")
        statement = statement.where(anomalies.c.level == level)
    if departments is not None:
        statement = statement.where(anomalies.c.department.in_(list(departments)))
    if since is not None:
        statement = statement.where(anomalies.c.end_us > to_us(since))
    statement = statement.order_by(anomalies.c.start_us.desc(), anomalies.c.id.desc()).limit(limit)
    with store.read() as conn:
        return [_from_row(row) for row in conn.execute(statement)]


def get_anomaly(store: Store, anomaly_id: int) -> Anomaly:
    with store.read() as conn:
        row = conn.execute(select(anomalies).where(anomalies.c.id == anomaly_id)).first()
    if row is None:
        raise NotFound(f"anomaly {anomaly_id}: no such anomaly; list them with `tokenledger anomalies list`")
    return _from_row(row)


def set_status(store: Store, anomaly_id: int, status: str, *, note: str | None = None, now: datetime) -> Anomaly:
    """Move an anomaly through its lifecycle (see the module docstring); ``note`` says why."""
    if status not in STATUSES:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    if note is not None and len(note) > 2000:
        raise InvalidInput("note: at most 2000 characters")
    with store.write() as conn:
        row = conn.execute(select(anomalies).where(anomalies.c.id == anomaly_id)).first()
        if row is None:
            raise NotFound(f"anomaly {anomaly_id}: no such anomaly; list them with `tokenledger anomalies list`")
        if status != row.status and status not in _TRANSITIONS[row.status]:
            allowed = ", ".join(sorted(_TRANSITIONS[row.status]))
            raise InvalidInput(f"status: a {row.status} anomaly cannot become {status}; use one of {allowed}")
        values: dict[str, Any] = {"status": status, "updated_us": to_us(now)}
        if note is not None:
            values["note"] = note
        conn.execute(update(anomalies).where(anomalies.c.id == anomaly_id).values(**values))
        row = conn.execute(select(anomalies).where(anomalies.c.id == anomaly_id)).one()
    return _from_row(row)


# -- alerts ----------------------------------------------------------------------------------------


def _rule_params(params: Mapping[str, Any]) -> tuple[float, str, bool, int]:
    allowed = {"min_score", "severity", "scan", "lookback_h"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput(f"params.{unknown[0]}: not an anomaly rule parameter; use {', '.join(sorted(allowed))}")
    try:
        min_score = float(params.get("min_score", 0.8))
        lookback_h = int(params.get("lookback_h", 24))
    except (TypeError, ValueError):
        raise InvalidInput("params.min_score / lookback_h: numbers, e.g. 0.8 and 24") from None
    if not 0 <= min_score <= 1:
        raise InvalidInput("params.min_score: between 0 and 1")
    return min_score, str(params.get("severity", "warning")), bool(params.get("scan", True)), lookback_h


def _in_rule_scope(anomaly: Anomaly, scope: Mapping[str, Sequence[str]]) -> bool:
    for key, wanted in scope.items():
        value = anomaly.department if key == "department" else anomaly.scope.get(key)
        if value not in wanted:
            return False
    return True


def evaluate_anomaly_rule(rule: Rule, now: datetime, store: Store) -> list[Finding]:
    """The ``anomaly`` rule: one finding per anomaly detected in the last ``lookback_h`` hours.

    Params: ``min_score`` (default 0.8), ``severity`` (default warning), ``scan`` (default true:
    scan the last two days first) and ``lookback_h`` (default 24). Only ``detected`` anomalies
    alert; ``expected`` (and suppressed) ones never do.
    """
    from ..alerts.rules import Finding

    min_score, severity, rescan, lookback_h = _rule_params(rule.params)
    if rescan:
        scan_store(store, now=now, since="2d")
    fresh = [
        a
        for a in list_anomalies(store, status="detected")
        if a.score >= min_score
        and a.detected_at is not None
        and to_us(a.detected_at) >= to_us(now) - lookback_h * HOUR_US
        and _in_rule_scope(a, rule.scope)
    ]
    findings = []
    for a in fresh:
        what = ", ".join(f"{k}={v}" for k, v in a.scope.items()) or "fleet"
        cause = a.causes[0] if a.causes else None
        because = ""
        if cause:
            ((dim, val),) = cause["dimension"].items()
            because = f"; likely {cause['cause']} ({dim}={val})"
        findings.append(
            Finding(
                severity=severity,
                dedup_key=f"anomaly:{a.fingerprint}",
                title=f"Cost anomaly: {what}",
                message=f"{what} spent ${a.actual_usd:.2f} from {a.start:%Y-%m-%d %H:%M} to {a.end:%Y-%m-%d %H:%M} "
                f"UTC, expected ${a.expected_usd:.2f} (+{a.impact_pct}%){because}",
                data=a.to_dict(),
            )
        )
    return findings


def register_evaluator(engine: Any) -> None:
    """Plug the ``anomaly`` rule kind into an :class:`~tokenledger.alerts.AlertEngine`."""
    engine.register_evaluator("anomaly", evaluate_anomaly_rule)
