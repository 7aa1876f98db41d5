"""Alert rules: what may be configured, and how the spend rules are checked against the ledger.

Why separate from the engine: the checks here are pure (config in, normalised config or
:class:`~fleetledger.core.errors.InvalidInput` out; ledger totals in, findings out), so the CLI, the REST
API and the tests all share one definition of a valid rule, for every kind: the parameters of
``reconciliation_drift`` are checked here too (:func:`validate_drift_params`), so a rule is
validated the same way by an engine that has no evaluator for its kind.

A rule kind is evaluated by an *evaluator*: ``(rule, now, store) -> findings``, looked up in the
engine's :class:`~fleetledger.alerts.registry.RuleRegistry`. ``absolute_spend``,
``percent_increase`` and ``cost_per_request`` are built in (:data:`BUILTIN_EVALUATORS`);
``forecast_overrun``, ``anomaly`` and ``reconciliation_drift`` belong to the layers above (analytics,
reconciliation), which import :class:`Finding`, :class:`Rule` and :func:`usd_text` from here; the
composition root (:mod:`fleetledger.ledger.app`) registers their evaluators. ``budget`` rules are
not evaluated on a schedule: they react to the budgets engine's ``budget.*`` events.

Every finding carries a ``dedup_key`` naming the rule and the period it is about, so a rule fires
at most once per period (and the cooldown stops repeats of the same key within 24 h).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import format_usd, nanos_to_usd, parse_usd, usd_to_nanos
from fleetledger.core.time import floor_day, from_us, to_us
from fleetledger.core.usage import MAX_COST_USD
from fleetledger.storage.query import grouped_costs
from fleetledger.storage.store import DAY_US, HOUR_US, Store

__all__ = [
    "Rule",
    "Finding",
    "Evaluator",
    "RULE_KINDS",
    "SEVERITIES",
    "SEVERITY_RANK",
    "BUDGET_LEVELS",
    "SCOPE_KEYS",
    "PERIODS",
    "WINDOWS",
    "validate_kind",
    "validate_scope",
    "validate_params",
    "validate_severity",
    "validate_drift_params",
    "period_start",
    "previous_period_start",
    "BUILTIN_EVALUATORS",
    "usd_text",
]

RULE_KINDS = (
    "budget",
    "absolute_spend",
    "percent_increase",
    "cost_per_request",
    "forecast_overrun",
    "anomaly",
    "reconciliation_drift",
)
#: In escalation order: a higher severity fires even within the cooldown of a lower one.
SEVERITIES = ("info", "warning", "critical", "exceeded")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
BUDGET_LEVELS = ("warning", "critical", "exceeded")
#: The dimensions a scope may filter on, as for budgets (plus ``tag.<name>``).
SCOPE_KEYS = (
    "department",
    "cost_center",
    "project",
    "team",
    "agent",
    "user",
    "session_id",
    "environment",
    "model",
    "provider",
)
PERIODS = ("day", "week", "month")
WINDOWS = {"1h": HOUR_US, "24h": DAY_US}


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    name: str
    kind: str
    scope: dict[str, list[str]]
    params: dict[str, Any]
    channels: list[str]
    cooldown_s: int
    enabled: bool
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "scope": self.scope,
            "params": self.params,
            "channels": self.channels,
            "cooldown_s": self.cooldown_s,
            "enabled": self.enabled,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a rule noticed; the engine turns it into an alert unless the cooldown holds it."""

    severity: str
    dedup_key: str
    title: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


#: ``(rule, now, store) -> findings``; see :class:`~fleetledger.alerts.registry.RuleRegistry`.
Evaluator = Callable[[Rule, datetime, Store], Iterable[Finding]]


# -- validation ------------------------------------------------------------------------------


def validate_kind(kind: Any) -> str:
    if kind not in RULE_KINDS:
        raise InvalidInput(f"kind: {kind!r} is not a rule kind; use one of {', '.join(RULE_KINDS)}")
    return str(kind)


def validate_severity(severity: Any, field_name: str = "severity") -> str:
    if severity not in SEVERITY_RANK:
        raise InvalidInput(f"{field_name}: {severity!r} is not a severity; use one of {', '.join(SEVERITIES)}")
    return str(severity)


def validate_scope(scope: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """``{dimension: value or [values]}`` -> ``{dimension: [values]}``; unknown keys are refused."""
    if scope is None:
        return {}
    if not isinstance(scope, Mapping):
        raise InvalidInput("scope: must be an object such as {'department': 'research'}")
    out: dict[str, list[str]] = {}
    for key, value in scope.items():
        if key not in SCOPE_KEYS and not (isinstance(key, str) and key.startswith("tag.") and len(key) > 4):
            raise InvalidInput(f"scope: unknown key {key!r}; use one of {', '.join(SCOPE_KEYS)} or tag.<name>")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list | tuple) or not values:
            raise InvalidInput(f"scope.{key}: give a value or a list of values")
        for item in values:
            if not isinstance(item, str) or not item.strip():
                raise InvalidInput(f"scope.{key}: values must be non-empty strings")
        out[key] = [item.strip() for item in values]
    return dict(sorted(out.items()))


def _amount(params: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    if params.get(name) in (None, ""):
        if required:
            raise InvalidInput(f"{name}: required, a dollar amount such as 500 or 0.05")
        return None
    value = parse_usd(params[name], field=name)
    if value <= 0:
        raise InvalidInput(f"{name}: must be more than 0 (got {value})")
    return str(value)


def _percent(params: Mapping[str, Any], name: str, *, required: bool, upper: int = 100) -> str | None:
    """A percentage in (0, upper]; thresholds of use are at most 100, increases may be more."""
    raw = params.get(name)
    if raw in (None, ""):
        if required:
            raise InvalidInput(f"{name}: required, a percentage between 0 and {upper}")
        return None
    if isinstance(raw, float) or isinstance(raw, bool):
        raise InvalidInput(f"{name}: give the percentage as a decimal string, e.g. '50'")
    try:
        value = Decimal(str(raw).strip().rstrip("%"))
    except InvalidOperation:
        raise InvalidInput(f"{name}: {raw!r} is not a number") from None
    if not value.is_finite() or not 0 < value <= upper:
        raise InvalidInput(f"{name}: {raw} is outside 0-{upper}")
    return str(value)


def _choice(params: Mapping[str, Any], name: str, choices: Iterable[str], default: str) -> str:
    value = params.get(name) or default
    choices = tuple(choices)
    if value not in choices:
        raise InvalidInput(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def _check_param_keys(params: Mapping[str, Any], allowed: set[str], kind: str) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput(f"params.{unknown[0]}: not a {kind} rule parameter; use {', '.join(sorted(allowed))}")


def validate_params(kind: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalise a rule's parameters for its kind (amounts and percents as decimal strings)."""
    params = dict(params or {})
    if kind in ("forecast_overrun", "anomaly"):
        return params  # their evaluators define and check these
    if kind == "reconciliation_drift":
        return validate_drift_params(params)
    if kind == "budget":
        _check_param_keys(params, {"budget", "levels", "percent"}, kind)
        budget = params.get("budget") or "*"
        if not isinstance(budget, str):
            raise InvalidInput("budget: a budget name, or * for every budget")
        levels = params.get("levels") or list(BUDGET_LEVELS)
        if isinstance(levels, str):
            levels = [part.strip() for part in levels.split(",") if part.strip()]
        for level in levels:
            if level not in BUDGET_LEVELS:
                raise InvalidInput(f"levels: {level!r} is not a budget level; use {', '.join(BUDGET_LEVELS)}")
        out: dict[str, Any] = {"budget": budget.strip(), "levels": [lv for lv in BUDGET_LEVELS if lv in levels]}
        percent = _percent(params, "percent", required=False)
        if percent is not None:
            out["percent"] = percent
        return out
    common = {"severity"}
    severity = validate_severity(params.get("severity") or "warning")
    if kind == "absolute_spend":
        _check_param_keys(params, common | {"amount_usd", "period"}, kind)
        return {
            "amount_usd": _amount(params, "amount_usd"),
            "period": _choice(params, "period", PERIODS, "day"),
            "severity": severity,
        }
    if kind == "percent_increase":
        _check_param_keys(params, common | {"percent", "period", "min_usd"}, kind)
        out = {
            "percent": _percent(params, "percent", required=True, upper=10_000),  # "more than doubled" is 100+
            "period": _choice(params, "period", PERIODS, "day"),
            "severity": severity,
        }
        min_usd = _amount(params, "min_usd", required=False)
        if min_usd is not None:
            out["min_usd"] = min_usd
        return out
    if kind == "cost_per_request":
        _check_param_keys(params, common | {"amount_usd", "window", "min_requests"}, kind)
        min_requests = params.get("min_requests", 1)
        if isinstance(min_requests, bool) or not isinstance(min_requests, int | str) or not str(min_requests).isdigit():
            raise InvalidInput(f"min_requests: {min_requests!r} is not a whole number")
        if int(min_requests) < 1:
            raise InvalidInput("min_requests: must be at least 1")
        return {
            "amount_usd": _amount(params, "amount_usd"),
            "window": _choice(params, "window", WINDOWS, "1h"),
            "min_requests": int(min_requests),
            "severity": severity,
        }
    raise InvalidInput(f"kind: {kind!r} is not a rule kind; use one of {', '.join(RULE_KINDS)}")


def validate_drift_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``reconciliation_drift`` rule params: ``threshold_usd`` and/or ``threshold_percent``,
    ``days`` (the last N whole days, default 7), ``provider``, ``severity``."""
    params = dict(params or {})
    unknown = sorted(set(params) - {"threshold_usd", "threshold_percent", "days", "provider", "severity"})
    if unknown:
        raise InvalidInput(
            f"params.{unknown[0]}: not a reconciliation_drift rule parameter; "
            "use threshold_usd, threshold_percent, days, provider, severity"
        )
    out: dict[str, Any] = {"severity": validate_severity(params.get("severity") or "warning")}
    if params.get("threshold_usd") not in (None, ""):
        amount = parse_usd(params["threshold_usd"], field="threshold_usd")
        if not 0 < amount <= MAX_COST_USD:  # a larger one failed at each evaluation (nanos past 28 digits)
            raise InvalidInput(f"threshold_usd: must be more than 0 and at most {MAX_COST_USD}")
        out["threshold_usd"] = str(amount)
    if params.get("threshold_percent") not in (None, ""):
        out["threshold_percent"] = _positive_percent(params["threshold_percent"], "threshold_percent")
    if "threshold_usd" not in out and "threshold_percent" not in out:
        raise InvalidInput("threshold_usd or threshold_percent: give at least one (e.g. threshold_percent=2)")
    days = params.get("days", 7)
    if isinstance(days, bool) or not str(days).isdigit() or not 1 <= int(days) <= 366:
        raise InvalidInput(f"days: {days!r} must be a whole number of days between 1 and 366")
    out["days"] = int(days)
    if params.get("provider"):
        out["provider"] = str(params["provider"]).strip().lower()
    return out


def _positive_percent(value: Any, name: str) -> str:
    """A percentage above 0 with no upper bound (a drift may exceed 100%)."""
    if isinstance(value, float | bool):
        raise InvalidInput(f"{name}: give the percentage as a decimal string, e.g. '5'")
    try:
        number = Decimal(str(value).strip().rstrip("%"))
    except InvalidOperation:
        raise InvalidInput(f"{name}: {value!r} is not a number") from None
    if not number.is_finite() or number <= 0:
        raise InvalidInput(f"{name}: must be more than 0")
    return str(number)


# -- periods ---------------------------------------------------------------------------------


def period_start(period: str, now: datetime) -> datetime:
    """Start of the UTC calendar day, ISO week (Monday) or month containing ``now``."""
    day = floor_day(now)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def previous_period_start(period: str, start: datetime) -> datetime:
    if period == "day":
        return start - timedelta(days=1)
    if period == "week":
        return start - timedelta(days=7)
    return (start - timedelta(days=1)).replace(day=1)


# -- built-in evaluators -----------------------------------------------------------------------


def _spend(store: Store, rule: Rule, since_us: int, until_us: int) -> tuple[int, int]:
    """(cost in nano-USD, requests) in ``[since, until)`` within the rule's scope."""
    if until_us <= since_us:
        return 0, 0
    rows = grouped_costs(store, [], since_us, until_us, where=rule.scope)
    if not rows:
        return 0, 0
    return int(rows[0].measures["cost_nanos"]), int(rows[0].measures["requests"])


def usd_text(nanos: int | Decimal) -> str:
    """For messages people read (nano-USD, or a Decimal in USD): cents from a dollar up, more below."""
    value = nanos_to_usd(int(nanos)) if isinstance(nanos, int) else nanos
    places = Decimal("0.01") if abs(value) >= 1 else Decimal("0.0001")
    return f"${value.quantize(places)}"


def _scope_text(rule: Rule) -> str:
    if not rule.scope:
        return ""
    return " for " + ", ".join(f"{k}={'|'.join(v)}" for k, v in rule.scope.items())


def evaluate_absolute_spend(rule: Rule, now: datetime, store: Store) -> list[Finding]:
    period = rule.params["period"]
    start = period_start(period, now)
    spent, requests = _spend(store, rule, to_us(start), to_us(now))
    threshold = usd_to_nanos(rule.params["amount_usd"])
    if spent < threshold:
        return []
    return [
        Finding(
            severity=rule.params.get("severity", "warning"),
            dedup_key=f"rule:{rule.id}:{period}:{start.date().isoformat()}",
            title=f"{rule.name}: {usd_text(spent)} spent this {period}{_scope_text(rule)}",
            message=(
                f"Spend since {start.date().isoformat()} is {usd_text(spent)} over {requests:,} requests, "
                f"at or above the {usd_text(threshold)} threshold{_scope_text(rule)}."
            ),
            data={
                "spent_usd": format_usd(spent),
                "threshold_usd": rule.params["amount_usd"],
                "requests": requests,
                "period": period,
                "period_start": start.isoformat(),
                "scope": rule.scope,
            },
        )
    ]


def evaluate_percent_increase(rule: Rule, now: datetime, store: Store) -> list[Finding]:
    """This period so far against the same stretch of the previous period (like for like)."""
    period = rule.params["period"]
    start = period_start(period, now)
    previous = previous_period_start(period, start)
    elapsed = now - start
    current, _ = _spend(store, rule, to_us(start), to_us(now))
    before, _ = _spend(store, rule, to_us(previous), to_us(min(previous + elapsed, start)))
    percent = Decimal(rule.params["percent"])
    if before <= 0 or current < usd_to_nanos(rule.params.get("min_usd", "0")):
        return []  # no baseline to compare with
    if current * 100 <= before * (100 + percent):
        return []
    increase = (Decimal(current - before) * 100 / before).quantize(Decimal("0.1"))
    return [
        Finding(
            severity=rule.params.get("severity", "warning"),
            dedup_key=f"rule:{rule.id}:{period}:{start.date().isoformat()}",
            title=f"{rule.name}: spend up {increase}% on the previous {period}{_scope_text(rule)}",
            message=(
                f"{usd_text(current)} since {start.date().isoformat()} against {usd_text(before)} over the same "
                f"stretch of the previous {period}: up {increase}%, above the {percent}% threshold{_scope_text(rule)}."
            ),
            data={
                "current_usd": format_usd(current),
                "previous_usd": format_usd(before),
                "increase_percent": str(increase),
                "threshold_percent": rule.params["percent"],
                "period": period,
                "period_start": start.isoformat(),
                "scope": rule.scope,
            },
        )
    ]


def evaluate_cost_per_request(rule: Rule, now: datetime, store: Store) -> list[Finding]:
    """Average cost per request over the trailing window; at most one alert per window bucket."""
    window = rule.params["window"]
    width = WINDOWS[window]
    now_us = to_us(now)
    cost, requests = _spend(store, rule, now_us - width, now_us)
    threshold = usd_to_nanos(rule.params["amount_usd"])
    if requests < rule.params.get("min_requests", 1) or cost <= threshold * requests:
        return []
    average = nanos_to_usd(cost) / requests
    bucket = from_us(now_us - now_us % width)
    return [
        Finding(
            severity=rule.params.get("severity", "warning"),
            dedup_key=f"rule:{rule.id}:{window}:{bucket.isoformat()}",
            title=f"{rule.name}: {usd_text(average)} per request over the last {window}{_scope_text(rule)}",
            message=(
                f"{requests:,} requests cost {usd_text(cost)} in the last {window}, {usd_text(average)} each on "
                f"average, above the {usd_text(threshold)} per-request threshold{_scope_text(rule)}."
            ),
            data={
                "cost_usd": format_usd(cost),
                "requests": requests,
                "average_usd": str(average.quantize(Decimal("0.000000001"))),
                "threshold_usd": rule.params["amount_usd"],
                "window": window,
                "window_start": bucket.isoformat(),
                "scope": rule.scope,
            },
        )
    ]


BUILTIN_EVALUATORS: dict[str, Evaluator] = {
    "absolute_spend": evaluate_absolute_spend,
    "percent_increase": evaluate_percent_increase,
    "cost_per_request": evaluate_cost_per_request,
}
