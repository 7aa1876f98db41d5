"""Forecasts of daily spend, with prediction intervals, backtests, scenarios and budget runway.

Model choice, by the days of history (from the first day with spend to yesterday, UTC):

* 28 days or more: ``ets_weekly``, statsmodels Holt-Winters exponential smoothing with an additive
  damped trend and additive weekly seasonality. Additive, not multiplicative, because agents have
  days without spend, which a multiplicative season cannot hold.
* 14 to 27 days: ``ets_simple``, the same without the season (too few weeks to estimate one).
* under 14 days: no forecast, with the reason.

Intervals come from simulated paths (Gaussian errors with the fitted residual spread; paths are
clipped at zero, spend is never negative, and the mean carries the clipping's effect so it stays
inside its band on sparse series), so the interval of a *total* is the spread of summed
paths, not a sum of daily bounds. Every forecast carries a rolling-origin backtest on its own series
(up to four origins a week apart, 30-day horizons when history allows): MAPE on the days with spend
and the share of actual days inside the 80% and 95% intervals.

Money: the ledger's exact Decimal USD is converted to float for statsmodels, and back to Decimal
(rounded half-even to cents) at the boundary: a forecast is an estimate, its cents are not an
accounting figure. Scenario factors are exact Decimals and are applied to the Decimal figures.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from fleetledger.alerts.rules import Finding, Rule, usd_text
from fleetledger.budgets.model import Budget
from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import NANOS_PER_USD, format_usd
from fleetledger.core.time import floor_day, from_us, to_us
from fleetledger.core.usage import parse_event
from fleetledger.storage.query import grouped_costs
from fleetledger.storage.store import DAY_US, Store

if TYPE_CHECKING:
    from fleetledger.alerts.engine import AlertEngine
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "Forecast",
    "ForecastPoint",
    "HORIZONS",
    "LEVELS",
    "MIN_HISTORY_DAYS",
    "daily_series",
    "forecast",
    "forecast_many",
    "apply_scenario",
    "scenario_factor",
    "model_switch_factor",
    "budget_runway",
    "forecast_overrun_evaluator",
    "register",
]

HORIZONS = (30, 60, 90)
LEVELS = ("fleet", "department", "agent")
MIN_HISTORY_DAYS = 14
WEEKLY_HISTORY_DAYS = 28
HISTORY_DAYS = 180  # how far back forecasts read
BACKTEST_FOLDS = 4
BACKTEST_HORIZON = 30
PATHS = 1000
BACKTEST_PATHS = 400
_CENT = Decimal("0.01")
_PCT = Decimal("0.1")
_QUANTILES = (10.0, 90.0, 2.5, 97.5)


class ForecastPoint(NamedTuple):
    day: date
    mean: Decimal
    lo80: Decimal
    hi80: Decimal
    lo95: Decimal
    hi95: Decimal


@dataclass(frozen=True)
class Forecast:
    """Daily spend ahead of ``start`` (the first forecast day). ``model`` is None with a ``reason``."""

    start: date
    horizon: int
    history_days: int
    model: str | None
    reason: str | None = None
    points: tuple[ForecastPoint, ...] = ()
    total: dict[str, Decimal] = field(default_factory=dict)
    backtest: dict[str, Any] = field(default_factory=dict)
    scenario: dict[str, str] = field(default_factory=dict)
    #: Simulated daily paths in USD (horizon x paths); for totals, scenarios and runway.
    paths: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def available(self) -> bool:
        return self.model is not None

    def to_dict(self) -> dict[str, Any]:
        def text(value: Any) -> Any:
            return f"{value:f}" if isinstance(value, Decimal) else value

        return {
            "start": self.start.isoformat(),
            "horizon_days": self.horizon,
            "history_days": self.history_days,
            "model": self.model,
            "reason": self.reason,
            "total_usd": {k: text(v) for k, v in self.total.items()},
            "backtest": {k: text(v) for k, v in self.backtest.items()},
            "scenario": dict(self.scenario),
            "points": [
                {
                    "day": p.day.isoformat(),
                    "mean_usd": text(p.mean),
                    "lo80_usd": text(p.lo80),
                    "hi80_usd": text(p.hi80),
                    "lo95_usd": text(p.lo95),
                    "hi95_usd": text(p.hi95),
                }
                for p in self.points
            ],
        }


# -- history ------------------------------------------------------------------------------------


def _day_of(us: int) -> date:
    return from_us(us - us % DAY_US).date()


def _day_us(day: date) -> int:
    return to_us(datetime(day.year, day.month, day.day, tzinfo=UTC))


def _fill(days: Mapping[date, int], since: date, until: date) -> list[tuple[date, Decimal]]:
    out = []
    day = since
    while day < until:
        out.append((day, Decimal(days.get(day, 0)) / NANOS_PER_USD))
        day += timedelta(days=1)
    return out


def daily_series(
    store: Store,
    *,
    where: Mapping[str, Sequence[str | None]] | None = None,
    since: date,
    until: date,
) -> list[tuple[date, Decimal]]:
    """Exact spend per UTC day in ``[since, until)``, days without spend as 0."""
    if until <= since:
        return []
    rows = grouped_costs(store, ["day"], _day_us(since), _day_us(until), where or {})
    return _fill({_day_of(int(r.keys[0])): int(r.measures["cost_nanos"]) for r in rows}, since, until)


# -- models -------------------------------------------------------------------------------------


def _fit(values: np.ndarray, seasonal: bool) -> Any:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    model = ExponentialSmoothing(
        values,
        trend="add",
        damped_trend=True,
        seasonal="add" if seasonal else None,
        seasonal_periods=7 if seasonal else None,
        initialization_method="estimated",
    )
    # least_squares: as good a fit as the default L-BFGS-B here, ~8x faster (measured).
    return model.fit(method="least_squares", use_brute=False)


_WARNINGS_LOCK = threading.Lock()


def _renew_lock() -> None:  # a forked worker must not inherit the lock held by another thread
    global _WARNINGS_LOCK
    _WARNINGS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_renew_lock)


def _point_forecast(result: Any, seasonal: bool, horizon: int) -> np.ndarray:
    """The fitted model's h-step forecasts: level + damped trend (+ the season's state).

    What ``result.forecast(horizon)`` returns (identical, tested), without its pandas machinery,
    which cost as much as the simulation of 1,000 paths.
    """
    damping = float(result.params["damping_trend"])
    mean = result.level[-1] + np.cumsum(damping ** np.arange(1, horizon + 1)) * result.trend[-1]
    if seasonal:
        mean = mean + np.asarray(result.season)[-7:][np.arange(horizon) % 7]
    return np.asarray(mean, dtype=float)


def _simulate(values: np.ndarray, seasonal: bool, horizon: int, paths: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean forecast, simulated paths horizon x paths), both clipped at zero."""
    # catch_warnings swaps the process-wide filters: two server threads forecasting at once would
    # restore each other's filters mid-fit, so one lock serialises the block.
    with _WARNINGS_LOCK, warnings.catch_warnings():
        # Convergence and overflow chatter on short or flat series; the backtest is the judge.
        warnings.simplefilter("ignore")
        result = _fit(values, seasonal)
        mean = _point_forecast(result, seasonal, horizon)
        simulated = np.asarray(
            result.simulate(
                horizon, anchor="end", repetitions=paths, error="add", random_state=np.random.default_rng(seed)
            ),
            dtype=float,
        ).reshape(horizon, paths)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(simulated))):
        raise ArithmeticError("the model diverged")
    clipped = np.clip(simulated, 0, None)
    # Spend is never negative, so the forecast distribution is the clipped one, and its mean is
    # above the model's mean wherever paths dip below zero (a small, sparse series). The model's
    # exact mean plus the clipping's effect on the simulated paths: equal to the model's mean when
    # nothing is clipped, and consistent with the bands (taken from the same clipped paths) when
    # something is: a total's mean inside its own interval.
    mean = mean + (clipped.mean(axis=1) - simulated.mean(axis=1))
    return np.clip(mean, 0, None), clipped


#: Backtest folds for forecast_many (see its docstring).
BULK_BACKTEST_FOLDS = 2


def _backtest(
    values: np.ndarray, seasonal: bool, min_train: int, seed: int, folds_wanted: int = BACKTEST_FOLDS
) -> dict[str, Any]:
    horizon = min(BACKTEST_HORIZON, len(values) - min_train)
    if horizon < 1:
        return {"mape": None, "coverage80": None, "coverage95": None, "folds": 0, "horizon_days": 0}
    errors: list[float] = []
    inside80 = inside95 = days = folds = 0
    for fold in range(folds_wanted):
        origin = len(values) - horizon - 7 * fold
        if origin < min_train:
            break
        actual = values[origin : origin + horizon]
        try:
            mean, paths = _simulate(values[:origin], seasonal, horizon, BACKTEST_PATHS, seed + fold)
        except (ArithmeticError, ValueError, np.linalg.LinAlgError):
            continue
        lo80, hi80, lo95, hi95 = np.percentile(paths, _QUANTILES, axis=1)
        spent = actual > 0
        errors.extend((np.abs(actual[spent] - mean[spent]) / actual[spent]).tolist())
        inside80 += int(np.sum((actual >= lo80) & (actual <= hi80)))
        inside95 += int(np.sum((actual >= lo95) & (actual <= hi95)))
        days += len(actual)
        folds += 1
    if not folds:
        return {"mape": None, "coverage80": None, "coverage95": None, "folds": 0, "horizon_days": horizon}

    def percent(value: float) -> Decimal:
        return Decimal(repr(100 * value)).quantize(_PCT, rounding=ROUND_HALF_EVEN)

    return {
        "mape": percent(float(np.mean(errors))) if errors else None,
        "coverage80": percent(inside80 / days),
        "coverage95": percent(inside95 / days),
        "folds": folds,
        "horizon_days": horizon,
    }


def _usd(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(_CENT, rounding=ROUND_HALF_EVEN)


def _points(start: date, mean: np.ndarray, paths: np.ndarray) -> tuple[ForecastPoint, ...]:
    lo80, hi80, lo95, hi95 = np.percentile(paths, _QUANTILES, axis=1)
    return tuple(
        ForecastPoint(
            start + timedelta(days=i), _usd(mean[i]), _usd(lo80[i]), _usd(hi80[i]), _usd(lo95[i]), _usd(hi95[i])
        )
        for i in range(len(mean))
    )


def _total(mean: np.ndarray, paths: np.ndarray) -> dict[str, Decimal]:
    sums = paths.sum(axis=0)
    lo80, hi80, lo95, hi95 = np.percentile(sums, _QUANTILES)
    return {
        "mean": _usd(mean.sum()),
        "lo80": _usd(lo80),
        "hi80": _usd(hi80),
        "lo95": _usd(lo95),
        "hi95": _usd(hi95),
    }


def forecast(
    series: Sequence[tuple[date, Decimal]],
    horizon: int = 30,
    *,
    today: date,
    seed: int = 0,
    backtest: bool = True,
    backtest_folds: int = BACKTEST_FOLDS,
) -> Forecast:
    """Forecast daily spend for ``horizon`` days from ``today`` from complete days before it.

    ``series`` is ``(day, USD)`` per day, as :func:`daily_series` gives; days from ``today`` on are
    ignored (today is not over), days before the first spend do not count as history.
    Same input and ``seed``, same forecast.
    """
    if horizon < 1 or horizon > 366:
        raise InvalidInput(f"horizon: {horizon} must be between 1 and 366 days")
    history = [(day, amount) for day, amount in sorted(series) if day < today]
    while history and history[0][1] == 0:
        history.pop(0)
    n = len(history)
    if n < MIN_HISTORY_DAYS:
        why = "no spend in the history" if n == 0 else f"only {n} day(s) of history"
        return Forecast(today, horizon, n, None, f"{why}; a forecast needs at least {MIN_HISTORY_DAYS} days")
    values = np.array([float(amount) for _, amount in history])
    seasonal = n >= WEEKLY_HISTORY_DAYS
    name = "ets_weekly" if seasonal else "ets_simple"
    try:
        mean, paths = _simulate(values, seasonal, horizon, PATHS, seed)
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
        return Forecast(today, horizon, n, None, f"the {name} model could not be fitted: {exc}")
    checks = (
        _backtest(values, seasonal, WEEKLY_HISTORY_DAYS if seasonal else MIN_HISTORY_DAYS, seed + 1, backtest_folds)
        if backtest
        else {"mape": None, "coverage80": None, "coverage95": None, "folds": 0, "horizon_days": 0}
    )
    return Forecast(
        start=today,
        horizon=horizon,
        history_days=n,
        model=name,
        points=_points(today, mean, paths),
        total=_total(mean, paths),
        backtest=checks,
        paths=paths,
    )


def forecast_many(
    ledger: Ledger,
    *,
    level: str = "fleet",
    horizon: int = 30,
    today: date | None = None,
    where: Mapping[str, Sequence[str | None]] | None = None,
    history_days: int = HISTORY_DAYS,
) -> dict[str | None, Forecast]:
    """One forecast per department or agent (or one for the fleet), from ONE grouped query.

    Keys are department / agent names (None: unattributed spend); the fleet's key is ``"fleet"``.
    Bulk forecasts are backtested on 2 rolling folds instead of 4 (fits dominate the time: 3 per
    series instead of 5); each still reports its MAPE and interval coverage.
    """
    if level not in LEVELS:
        raise InvalidInput(f"level: {level!r} must be one of {', '.join(LEVELS)}")
    ledger.flush()
    today = today or floor_day(ledger.clock()).date()
    since = today - timedelta(days=history_days)
    by = ["day"] if level == "fleet" else ["day", level]
    rows = grouped_costs(ledger.store, by, _day_us(since), _day_us(today), where or {})
    spend: dict[str | None, dict[date, int]] = {}
    for row in rows:
        key = "fleet" if level == "fleet" else row.keys[1]
        days = spend.setdefault(key, {})
        day = _day_of(int(row.keys[0]))
        days[day] = days.get(day, 0) + int(row.measures["cost_nanos"])
    if level == "fleet" and not spend:
        spend["fleet"] = {}
    ordered = sorted(spend.items(), key=lambda item: (item[0] is None, item[0] or ""))
    jobs = [(_fill(days, since, today), horizon, today) for _, days in ordered]
    return dict(zip([key for key, _ in ordered], _run_jobs(jobs), strict=True))


#: Bulk forecasts of at least this many series fit in worker processes (one per CPU, up to 8).
PARALLEL_MIN_SERIES = 24
_MAX_WORKERS = 8


def _forecast_job(job: tuple[list[tuple[date, Decimal]], int, date]) -> Forecast:
    series, horizon, today = job
    return forecast(series, horizon, today=today, backtest_folds=BULK_BACKTEST_FOLDS)


def _run_jobs(jobs: list[tuple[list[tuple[date, Decimal]], int, date]]) -> list[Forecast]:
    """Forecasts of ``jobs``, in order; many series are fitted in parallel processes.

    Fitting is CPU-bound Python (scipy's least squares driving statsmodels), so threads would
    queue on the GIL. Workers come from a fork server, not from a fork of the caller: the caller
    is often a threaded server (uvicorn's thread pool, the ledger's writer thread), and forking a
    threaded process can copy a lock another thread holds (logging, BLAS, a connection pool) into
    the child, where nothing will ever release it. The fork server is a clean single-threaded
    process started once, with this module (and statsmodels) preloaded, so workers still start in
    milliseconds and never re-import the caller's ``__main__``. Each forecast is seeded and
    deterministic, so the result is the same as sequential fitting.
    """
    workers = min(os.cpu_count() or 1, _MAX_WORKERS, len(jobs))
    if len(jobs) < PARALLEL_MIN_SERIES or workers < 2:
        return [_forecast_job(job) for job in jobs]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(_forecast_job, jobs, chunksize=max(1, len(jobs) // (workers * 4))))


# -- scenarios ----------------------------------------------------------------------------------


def _pct(value: Any, name: str) -> Decimal:
    if isinstance(value, float | bool):
        raise InvalidInput(f"{name}: give the percentage as a decimal string, e.g. '10'")
    try:
        number = Decimal(str(value).strip().rstrip("%"))
    except ArithmeticError:
        raise InvalidInput(f"{name}: {value!r} is not a number") from None
    if not number.is_finite():
        raise InvalidInput(f"{name}: {value!r} is not a number")
    return number


def model_switch_factor(
    ledger: Ledger,
    from_model: str,
    to_model: str,
    share: Any = 1,
    *,
    now: datetime | None = None,
    where: Mapping[str, Sequence[str | None]] | None = None,
    days: int = 30,
) -> Decimal:
    """The exact factor on total spend when ``share`` of ``from_model``'s traffic moves to ``to_model``.

    From the last ``days`` days in scope: ``1 + share x (from spend / all spend) x (price ratio - 1)``;
    the price ratio is the cost of ``from_model``'s average request (same tokens) on ``to_model``
    over its cost on ``from_model``, both priced by ``ledger.pricer`` now.
    """
    fraction = _pct(share, "share")
    if not 0 <= fraction <= 1:
        raise InvalidInput(f"share: {share} must be between 0 and 1")
    now = now or ledger.clock()
    ledger.flush()
    rows = grouped_costs(ledger.store, ["model"], to_us(now) - days * DAY_US, to_us(now), where or {})
    total = sum(int(r.measures["cost_nanos"]) for r in rows)
    mine = [r for r in rows if r.keys[0] == from_model]
    if not mine or total == 0:
        raise InvalidInput(f"model switch: no spend on {from_model!r} in the last {days} days to base it on")
    measures = {name: sum(int(r.measures[name]) for r in mine) for name in mine[0].measures if name != "latency_ms_sum"}
    requests = max(measures["requests"], 1)
    tokens = {
        name: measures[name] // requests
        for name in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
    }

    def priced(model: str) -> int:
        event = parse_event({"timestamp": now, "model": model, **tokens})
        cost = ledger.pricer.price(event)
        if not cost.priced:
            raise InvalidInput(f"model switch: no price for {model!r}; add one with `fleetledger pricing set`")
        return cost.total_nanos

    before, after = priced(from_model), priced(to_model)
    if before == 0:
        raise InvalidInput(f"model switch: {from_model!r} requests cost nothing; no ratio to apply")
    from_spend = sum(int(r.measures["cost_nanos"]) for r in mine)
    return 1 + fraction * (Decimal(from_spend) / Decimal(total)) * (Decimal(after) / Decimal(before) - 1)


def scenario_factor(traffic_pct: Any = 0, optimization_pct: Any = 0, switch_factor: Decimal | None = None) -> Decimal:
    """``(1 + traffic/100) x (1 - |optimization|/100) x switch``: ``-5`` and ``5`` both save 5%."""
    traffic, saving = _pct(traffic_pct, "traffic_pct"), abs(_pct(optimization_pct, "optimization_pct"))
    if traffic < -100 or saving > 100:
        raise InvalidInput("scenario: traffic must be above -100% and optimization at most 100%")
    return (1 + traffic / 100) * (1 - saving / 100) * (switch_factor if switch_factor is not None else Decimal(1))


def apply_scenario(
    result: Forecast,
    traffic_pct: Any = 0,
    optimization_pct: Any = 0,
    model_switch: tuple[str, str, Any] | None = None,
    *,
    ledger: Ledger | None = None,
    where: Mapping[str, Sequence[str | None]] | None = None,
) -> Forecast:
    """The forecast under +x% traffic, -y% from optimizations and a model switch (needs ``ledger``).

    Every figure is multiplied by one exact Decimal factor (spend scales linearly with traffic).
    """
    switch = None
    described: dict[str, str] = {}
    if model_switch is not None:
        if ledger is None:
            raise InvalidInput("model switch: needs the ledger, for the recent spend mix and the prices")
        from_model, to_model, share = model_switch
        switch = model_switch_factor(ledger, from_model, to_model, share, where=where)
        described["model_switch"] = f"{share} of {from_model} -> {to_model}"
    factor = scenario_factor(traffic_pct, optimization_pct, switch)
    described.update(
        {"traffic_pct": str(traffic_pct), "optimization_pct": str(optimization_pct), "factor": f"{factor:f}"}
    )
    if not result.available:
        return replace(result, scenario=described)

    def scaled(value: Decimal) -> Decimal:
        return (value * factor).quantize(_CENT, rounding=ROUND_HALF_EVEN)

    return replace(
        result,
        points=tuple(ForecastPoint(p.day, *(scaled(v) for v in p[1:])) for p in result.points),
        total={k: scaled(v) for k, v in result.total.items()},
        scenario=described,
        paths=result.paths * float(factor) if result.paths is not None else None,
    )


# -- budget runway ------------------------------------------------------------------------------


def budget_runway(ledger: Ledger, budget: Budget | int | str, *, now: datetime | None = None) -> dict[str, Any]:
    """Projected end-of-period spend, the probability of overrunning the limit, the depletion date.

    Projection = spent so far + the forecast of the rest of the period (today's forecast counts for
    the part of today still to come). Overrun probability = the share of simulated paths above the
    limit. Depletion date = the first day the mean path reaches the limit (null if it does not).
    """
    if not isinstance(budget, Budget):
        budget = ledger.budgets.get(budget)
    now = now or ledger.clock()
    ledger.flush()
    now_us = to_us(now)
    window = budget.window(now)
    limit = budget.limit_at(now_us)
    out: dict[str, Any] = {
        "budget": budget.name,
        "budget_id": budget.id,
        "scope": budget.scope,
        "period_start": window.start.isoformat(),
        "period_end": window.end.isoformat(),
        "limit_usd": format_usd(limit),
    }
    if window.rolling:
        return {**out, "available": False, "reason": "a rolling budget has no period end to project to"}
    where = {k: list(v) for k, v in budget.scope.items()}
    rows = grouped_costs(ledger.store, [], window.start_us, now_us, where) if now_us > window.start_us else []
    spent = int(rows[0].measures["cost_nanos"]) if rows else 0
    out["spent_usd"] = format_usd(spent)
    today = floor_day(now).date()
    days_left = (window.end.date() - today).days + 1
    series = daily_series(ledger.store, where=where, since=today - timedelta(days=HISTORY_DAYS), until=today)
    result = forecast(series, max(days_left, 1), today=today, seed=budget.id, backtest=False)
    if not result.available or result.paths is None:
        return {**out, "available": False, "reason": result.reason, "projected_period_spend_usd": format_usd(spent)}
    # The share of each forecast day that is still to come inside the period.
    weights = np.array(
        [
            max(
                0,
                min(_day_us(p.day) + DAY_US, window.end_us) - max(_day_us(p.day), now_us),
            )
            / DAY_US
            for p in result.points
        ]
    )
    spent_usd = spent / NANOS_PER_USD
    limit_usd = limit / NANOS_PER_USD
    future = (result.paths * weights[:, None]).sum(axis=0)
    mean_path = np.array([float(p.mean) for p in result.points]) * weights
    projected = spent_usd + float(mean_path.sum())
    lo80, hi80, lo95, hi95 = np.percentile(spent_usd + future, _QUANTILES)
    crossing = np.nonzero(spent_usd + np.cumsum(mean_path) >= limit_usd)[0]
    depletion = today if spent >= limit else (result.points[crossing[0]].day if len(crossing) else None)
    probability = 1.0 if spent >= limit else float(np.mean(spent_usd + future > limit_usd))
    return {
        **out,
        "available": True,
        "model": result.model,
        "projected_period_spend_usd": f"{_usd(projected):f}",
        "projected_interval_usd": {
            "lo80": f"{_usd(lo80):f}",
            "hi80": f"{_usd(hi80):f}",
            "lo95": f"{_usd(lo95):f}",
            "hi95": f"{_usd(hi95):f}",
        },
        "overrun_probability": f"{Decimal(repr(probability)).quantize(Decimal('0.001')):f}",
        "depletion_date": depletion.isoformat() if depletion else None,
    }


# -- alerting -----------------------------------------------------------------------------------


def _rule_covers(rule: Rule, budget: Budget) -> bool:
    for key, wanted in rule.scope.items():
        if not set(wanted) & set(budget.scope.get(key, [])):
            return False
    return True


def forecast_overrun_evaluator(rule: Rule, now: datetime, store: Store, *, ledger: Ledger) -> list[Finding]:
    """A finding per active budget whose overrun probability is above ``params.probability`` (0.5).

    The ``forecast_overrun`` rule kind's evaluator; the composition root
    (:func:`fleetledger.ledger.app.register_rule_kinds`) registers it with the ledger it serves.

    Params: ``probability`` (0..1), ``budget`` (a name, or ``*``), ``severity`` (warning).
    """
    threshold = _pct(rule.params.get("probability", "0.5"), "probability")
    if not 0 < threshold < 1:
        raise InvalidInput(f"probability: {threshold} must be between 0 and 1")
    wanted = rule.params.get("budget") or "*"
    findings = []
    for budget in ledger.budgets.list():
        if not budget.active or (wanted != "*" and budget.name != wanted) or not _rule_covers(rule, budget):
            continue
        runway = budget_runway(ledger, budget, now=now)
        if not runway.get("available"):
            continue
        probability = Decimal(runway["overrun_probability"])
        if probability <= threshold:
            continue
        percent = (probability * 100).quantize(Decimal(1))
        depletion = runway["depletion_date"]
        findings.append(
            Finding(
                severity=rule.params.get("severity", "warning"),
                dedup_key=f"rule:{rule.id}:budget:{budget.id}:{runway['period_start']}",
                title=f"{rule.name}: budget {budget.name} is forecast to overrun ({percent}% likely)",
                message=(
                    f"Budget {budget.name} has spent {usd_text(Decimal(runway['spent_usd']))} of "
                    f"{usd_text(Decimal(runway['limit_usd']))}; the forecast for the period is "
                    f"{usd_text(Decimal(runway['projected_period_spend_usd']))}, over the limit with probability "
                    f"{percent}%" + (f", reached on {depletion}." if depletion else ".")
                ),
                data=runway,
            )
        )
    return findings


def register(alert_engine: AlertEngine, ledger_factory: Callable[[Store], Ledger]) -> None:
    """Plug the ``forecast_overrun`` rule kind into ``alert_engine`` (its rule registry).

    ``ledger_factory(store)`` gives the Ledger over the store the engine evaluates (for budgets and
    prices); its owner closes it, not this module. A Ledger's own engine needs no call: the
    composition root registers the kind.
    """

    def evaluate(rule: Rule, now: datetime, store: Store) -> Iterable[Finding]:
        return forecast_overrun_evaluator(rule, now, store, ledger=ledger_factory(store))

    alert_engine.register_evaluator("forecast_overrun", evaluate)
