"""Forecasts: accuracy on known series, model choice by history, scenarios, runway, alert, CLI, API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import httpx
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fleetledger import Ledger, Settings
from fleetledger.access.keys import create_key
from fleetledger.analytics.forecast import (
    apply_scenario,
    budget_runway,
    daily_series,
    forecast,
    forecast_many,
    model_switch_factor,
    register,
)
from fleetledger.cli import _common
from fleetledger.cli.forecast import register as register_cli
from fleetledger.server import create_app
from fleetledger.server.routes.forecast import router

TODAY = date(2026, 10, 15)  # the clock fixture's day; it reads 12:00
WEEK = np.array([1.0, 1.05, 1.1, 1.08, 1.0, 0.6, 0.55])


def synthetic(seed: int, days: int = 120) -> list[tuple[date, Decimal]]:
    """Level + linear trend + weekly season + 5% Gaussian noise, in cents."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    level = rng.uniform(50, 500)
    slope = level * rng.uniform(-0.001, 0.006)
    values = level + slope * t + 0.3 * level * (WEEK[(t + seed) % 7] - WEEK.mean()) + rng.normal(0, 0.05 * level, days)
    return [(TODAY - timedelta(days=days - i), Decimal(str(round(float(max(v, 0)), 2)))) for i, v in enumerate(values)]


def test_accuracy_on_known_series_over_rolling_backtests():
    results = [forecast(synthetic(seed), 30, today=TODAY, seed=seed) for seed in range(20)]
    assert {r.model for r in results} == {"ets_weekly"}
    folds = sum(r.backtest["folds"] for r in results)
    assert folds == 80 and all(r.backtest["horizon_days"] == 30 for r in results)
    # Pooled over 20 series x 4 origins x 30 days = 2,400 forecast days (equal weights per series).
    mape = sum(r.backtest["mape"] for r in results) / len(results)
    coverage95 = sum(r.backtest["coverage95"] for r in results) / len(results)
    coverage80 = sum(r.backtest["coverage80"] for r in results) / len(results)
    assert mape <= 10, mape
    assert 88 <= coverage95 <= 99, coverage95
    assert 65 <= coverage80 <= 95, coverage80


def test_forecast_shape_and_money():
    result = forecast(synthetic(3), 90, today=TODAY)
    assert result.available and result.horizon == 90 and len(result.points) == 90
    first = result.points[0]
    assert first.day == TODAY and result.points[-1].day == TODAY + timedelta(days=89)
    for point in result.points:
        assert point.lo95 <= point.lo80 <= point.hi80 <= point.hi95
        assert all(isinstance(v, Decimal) and v == v.quantize(Decimal("0.01")) for v in point[1:])
    total = result.total
    assert total["lo95"] <= total["lo80"] <= total["mean"] <= total["hi80"] <= total["hi95"]
    # The total's interval is the spread of summed paths: far narrower than the sum of daily bounds.
    assert total["hi95"] - total["lo95"] < sum(p.hi95 - p.lo95 for p in result.points) / 2
    assert forecast(synthetic(3), 90, today=TODAY).to_dict() == result.to_dict()  # deterministic
    assert json.loads(json.dumps(result.to_dict()))["points"][0]["mean_usd"] == f"{first.mean:f}"


def test_short_history_uses_the_simple_model():
    series = synthetic(5)[-20:]
    result = forecast(series, 30, today=TODAY)
    assert result.model == "ets_simple" and result.history_days == 20 and len(result.points) == 30
    assert result.backtest["folds"] >= 1


def test_under_14_days_there_is_no_forecast_but_a_reason():
    result = forecast(synthetic(5)[-13:], 30, today=TODAY)
    assert not result.available and result.points == () and "13 day(s)" in result.reason
    leading_zeros = [(TODAY - timedelta(days=40 - i), Decimal(0)) for i in range(30)] + synthetic(5)[-10:]
    assert forecast(leading_zeros, 30, today=TODAY).history_days == 10
    assert "no spend" in forecast([], 30, today=TODAY).reason


def test_scenarios_scale_by_the_exact_factor():
    base = forecast(synthetic(8), 30, today=TODAY)
    factor = Decimal("1.10") * Decimal("0.95")
    changed = apply_scenario(base, traffic_pct="10", optimization_pct="-5")
    assert Decimal(changed.scenario["factor"]) == factor
    for key, value in base.total.items():
        assert changed.total[key] == (value * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    for before, after in zip(base.points, changed.points, strict=True):
        assert after.mean == (before.mean * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    assert apply_scenario(base, optimization_pct="5").total == apply_scenario(base, optimization_pct="-5").total


def tokens(back: int, at: datetime) -> int:
    """$10 on weekdays, $5 at weekends (gpt-4o input is $2.50/M), plus a little noise to estimate."""
    return (4_000_000 if at.weekday() < 5 else 2_000_000) + (back * 7919) % 50_000


def spend(ledger: Ledger, days: int, *, department: str = "research", end: date = TODAY) -> None:
    """One gpt-4o call a day at 10:00 for ``days`` days, ending on ``end``."""
    items = []
    for back in range(days):
        at = datetime(end.year, end.month, end.day, 10, tzinfo=UTC) - timedelta(days=back)
        items.append(
            (
                f"{department}-{back}",
                {
                    "timestamp": at.isoformat(),
                    "provider": "openai",
                    "model": "gpt-4o",
                    "input_tokens": tokens(back, at),
                    "output_tokens": 0,
                    "department": department,
                    "agent": f"{department}-bot",
                },
            )
        )
    ledger.ingest(items)


def test_daily_series_and_forecast_many_read_the_ledger(ledger):
    spend(ledger, 60)
    spend(ledger, 20, department="support")
    series = daily_series(
        ledger.store, where={"department": ["research"]}, since=TODAY - timedelta(days=70), until=TODAY
    )
    assert (
        len(series) == 70
        and series[0][1] == 0
        and series[-1][1] == Decimal(tokens(1, datetime(2026, 10, 14, tzinfo=UTC))) * Decimal("2.5") / 10**6
    )
    departments = forecast_many(ledger, level="department", horizon=30, today=TODAY)
    assert departments["research"].model == "ets_weekly" and departments["support"].model == "ets_simple"
    fleet = forecast_many(ledger, level="fleet", horizon=30, today=TODAY)["fleet"]
    assert fleet.available and fleet.history_days == 59  # today is not over
    agents = forecast_many(ledger, level="agent", horizon=30, today=TODAY)
    assert set(agents) == {"research-bot", "support-bot"}


def test_point_forecast_is_statsmodels_own():
    from fleetledger.analytics.forecast import _fit, _point_forecast

    for seed, seasonal in ((1, True), (2, True), (3, False)):
        values = np.array([float(v) for _, v in synthetic(seed)])
        result = _fit(values, seasonal)
        assert np.allclose(_point_forecast(result, seasonal, 90), result.forecast(90), rtol=1e-12, atol=1e-9)


def test_bulk_forecasts_in_worker_processes_equal_sequential_ones(monkeypatch):
    from fleetledger.analytics import forecast as module

    jobs = [(synthetic(seed, days=60 + seed), 30, TODAY) for seed in range(6)]
    sequential = [module._forecast_job(job) for job in jobs]
    monkeypatch.setattr(module, "PARALLEL_MIN_SERIES", 2)
    monkeypatch.setattr(module.os, "cpu_count", lambda: 2)
    parallel = module._run_jobs(jobs)
    assert [f.to_dict() for f in parallel] == [f.to_dict() for f in sequential]
    assert all(np.array_equal(a.paths, b.paths) for a, b in zip(parallel, sequential, strict=True))


def test_model_switch_factor_is_exact(ledger, clock):
    spend(ledger, 30)
    # gpt-4o-mini input is $0.15/M against gpt-4o's $2.50/M: ratio 0.06; half the traffic moves.
    factor = model_switch_factor(ledger, "gpt-4o", "gpt-4o-mini", "0.5", now=clock())
    assert factor == Decimal("0.53")
    base = forecast_many(ledger, horizon=30, today=TODAY)["fleet"]
    switched = apply_scenario(base, model_switch=("gpt-4o", "gpt-4o-mini", "0.5"), ledger=ledger)
    assert switched.total["mean"] == (base.total["mean"] * factor).quantize(Decimal("0.01"))


def test_budget_runway(ledger, clock):
    spend(ledger, 60)
    tight = ledger.budgets.create(name="research-monthly", amount="200", scope={"department": "research"})
    loose = ledger.budgets.create(name="research-loose", amount="5000", scope={"department": "research"})
    runway = budget_runway(ledger, tight, now=clock())
    assert runway["available"] and runway["model"] == "ets_weekly"
    spent = Decimal(runway["spent_usd"])
    assert Decimal(130) < spent < Decimal(140)  # Oct 1..15: 11 weekdays x $10 + 4 weekend days x $5
    projected = Decimal(runway["projected_period_spend_usd"])
    assert Decimal(240) < projected < Decimal(300)  # + 16.5 days at ~$8.5 a day
    assert Decimal(runway["overrun_probability"]) > Decimal("0.95")
    assert "2026-10-18" <= runway["depletion_date"] <= "2026-10-25"
    relaxed = budget_runway(ledger, loose.name, now=clock())
    assert relaxed["overrun_probability"] == "0.000" and relaxed["depletion_date"] is None


def test_forecast_overrun_rule_fires_through_the_alert_engine(ledger):
    spend(ledger, 60)
    ledger.budgets.create(name="research-monthly", amount="200", scope={"department": "research"})
    ledger.budgets.create(name="research-loose", amount="5000", scope={"department": "research"})
    register(ledger.alerts, lambda store: ledger)
    ledger.alerts.add_rule("overrun", "forecast_overrun", params={"probability": "0.5", "severity": "critical"})
    [alert] = ledger.alerts.evaluate()
    assert alert.severity == "critical" and "research-monthly" in alert.title
    assert alert.data["budget"] == "research-monthly" and alert.data["depletion_date"]
    assert ledger.alerts.evaluate() == []  # once per budget period


def test_cli_forecast_and_runway(ledger, db_url):
    spend(ledger, 40, end=datetime.now(UTC).date())  # the CLI's ledger reads the real clock
    ledger.budgets.create(name="research-monthly", amount="200", scope={"department": "research"})
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context, db: str = typer.Option(None, "--db")) -> None:
        ctx.obj = _common.State(db=db)

    register_cli(app)
    runner = CliRunner()
    result = runner.invoke(app, ["--db", db_url, "forecast", "--level", "department", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["research"]["model"] == "ets_weekly"
    args = ["--db", db_url, "forecast", "--department", "research", "--traffic", "+10", "--optimization", "-5"]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert Decimal(json.loads(result.stdout)["scenario"]["factor"]) == Decimal("1.045")
    result = runner.invoke(app, [*args, "--format", "csv"])
    assert result.exit_code == 0 and result.stdout.startswith("day,mean_usd,lo80_usd")
    assert runner.invoke(app, ["--db", db_url, "forecast", "--horizon", "60"]).exit_code == 0
    result = runner.invoke(app, ["--db", db_url, "forecast", "runway", "research-monthly", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["available"] is True


# -- API (in-process, as tests/server/conftest.py) -------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server_ledger(db_url, tmp_path, clock):
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool")
    with Ledger(settings=settings, background=False, clock=clock) as instance:
        yield instance


@pytest.fixture
def keys(server_ledger) -> dict[str, str]:
    made = {}
    for role, departments in (("finops", ()), ("viewer", ("research",))):
        made[role], _ = create_key(
            server_ledger.store, role=role, departments=departments, name=f"{role}-key", now=server_ledger.clock()
        )
    return made


@pytest.fixture
async def api(server_ledger, keys) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(server_ledger, local_only=False)
    if not any(getattr(route, "path", "") == "/api/forecast" for route in app.routes):
        app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.anyio
async def test_api_forecast_and_runway(api, server_ledger, keys):
    spend(server_ledger, 40)
    spend(server_ledger, 40, department="support")
    server_ledger.budgets.create(name="research-monthly", amount="200", scope={"department": "research"})
    server_ledger.budgets.create(name="support-monthly", amount="200", scope={"department": "support"})
    answer = await api.get("/api/forecast?level=department&traffic_pct=10", headers=auth(keys["finops"]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [f["key"] for f in body["forecasts"]] == ["research", "support"]
    assert Decimal(body["forecasts"][0]["scenario"]["factor"]) == Decimal("1.1")
    viewer = await api.get("/api/forecast?level=department", headers=auth(keys["viewer"]))
    assert [f["key"] for f in viewer.json()["forecasts"]] == ["research"]
    forbidden = await api.get("/api/forecast?department=support", headers=auth(keys["viewer"]))
    assert forbidden.status_code == 403
    runway = await api.get("/api/budgets/research-monthly/runway", headers=auth(keys["viewer"]))
    assert runway.status_code == 200 and runway.json()["available"] is True
    other = await api.get("/api/budgets/support-monthly/runway", headers=auth(keys["viewer"]))
    assert other.status_code == 403


def test_a_sparse_series_keeps_its_mean_inside_its_interval():
    """Spend near zero: the simulated paths are clipped at zero, and the mean must follow them.

    A series that is zero most days (a small department) has a skewed forecast distribution; the
    total's mean must lie inside its own 80% band, as the daily means do.
    """
    rng = np.random.default_rng(3)
    days = 60
    spend = [float(rng.choice([0, 0, 0, 0, 2, 9])) * rng.uniform(0.5, 1.5) for _ in range(days)]
    series = [(TODAY - timedelta(days=days - i), Decimal(str(round(v, 2)))) for i, v in enumerate(spend)]
    for horizon in (30, 60):
        result = forecast(series, horizon, today=TODAY, seed=1, backtest=False)
        assert result.available
        total = result.total
        assert total["lo95"] <= total["lo80"] <= total["mean"] <= total["hi80"] <= total["hi95"], total
        assert sum(p.mean for p in result.points) - total["mean"] <= Decimal("0.01") * horizon
