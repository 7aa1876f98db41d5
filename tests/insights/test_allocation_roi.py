"""Exact allocation (a hypothesis property), shared-cost spreading, chargeback, and the seed ROI formulas."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from fleetledger.analytics import allocation, roi
from fleetledger.cli import insights as insights_cli
from fleetledger.core.errors import InvalidInput

_weights = st.dictionaries(
    st.text(min_size=1, max_size=4),
    st.one_of(st.integers(0, 10**6), st.decimals(0, 10**4, places=3, allow_nan=False, allow_infinity=False)),
    min_size=1,
    max_size=12,
).filter(lambda w: any(v > 0 for v in w.values()))


@given(total=st.integers(-(10**15), 10**15), weights=_weights)
def test_int_shares_sum_exactly_to_the_total(total, weights):
    shares = allocation.largest_remainder(total, weights)
    assert sum(shares.values()) == total
    assert set(shares) == set(weights)
    for key, weight in weights.items():
        if weight == 0:
            assert shares[key] == 0
    # Each share is within one unit of its exact proportion.
    whole = sum(Decimal(w) for w in weights.values())
    for key, weight in weights.items():
        assert abs(Decimal(shares[key]) - Decimal(total) * Decimal(weight) / whole) < 1 + Decimal("1e-9")


@given(cents=st.integers(-(10**9), 10**9), weights=_weights)
def test_decimal_shares_sum_exactly_to_the_total(cents, weights):
    total = Decimal(cents).scaleb(-2)
    shares = allocation.largest_remainder(total, weights, quantum=Decimal("0.01"))
    assert sum(shares.values(), Decimal(0)) == total
    assert all(share == share.quantize(Decimal("0.01")) for share in shares.values())


@given(weights=_weights)
def test_the_split_does_not_depend_on_the_order_of_the_weights(weights):
    reordered = dict(reversed(list(weights.items())))
    assert allocation.largest_remainder(10**9 + 7, weights) == allocation.largest_remainder(10**9 + 7, reordered)


@given(negative=st.integers(-(10**6), -1))
def test_negative_weights_are_refused(negative):
    with pytest.raises(InvalidInput, match="negative"):
        allocation.largest_remainder(100, {"a": 1, "b": negative})


def test_ties_break_deterministically_and_all_zero_weights_only_split_zero():
    assert allocation.largest_remainder(100, {"b": 1, "a": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    assert allocation.largest_remainder(0, {"a": 0}) == {"a": 0}
    with pytest.raises(InvalidInput, match="every weight is zero"):
        allocation.largest_remainder(5, {"a": 0, "b": 0})
    with pytest.raises(InvalidInput, match="whole number"):
        allocation.largest_remainder(Decimal("1.005"), {"a": 1}, quantum=Decimal("0.01"))


@given(st.lists(st.decimals(-1000, 1000, places=9, allow_nan=False, allow_infinity=False), min_size=1, max_size=15))
def test_rounded_breakdown_sums_to_the_rounded_total(parts):
    rows = dict(enumerate(parts))
    rounded = allocation.round_breakdown(rows)
    total = sum(parts, Decimal(0)).quantize(Decimal("0.01"))
    assert sum(rounded.values(), Decimal(0)) == total
    assert all(abs(rounded[k] - rows[k]) < Decimal("0.01") for k in rows)


# -- shared costs -------------------------------------------------------------------------------


@pytest.fixture
def shared_ledger(ledger, clock):
    at = clock.now - timedelta(days=1)
    items = [
        ("research", "cc-100", "tool_use", "60"),
        ("sales", "cc-200", "tool_use", "30"),
        ("platform", "cc-900", "infrastructure", "9"),
        ("platform", "cc-900", "storage", "1"),
    ]
    for department, cost_center, category, cost in items:
        ledger.record(
            provider="aws", model="line-item", department=department, cost_center=cost_center, project=department,
            category=category, cost_usd=cost, timestamp=at,
        )  # fmt: skip
    return ledger


def _by(rows, key, column):
    return {r[key]: r[column] for r in rows}


def test_proportional_allocation_moves_shared_cost_onto_users_exactly(shared_ledger):
    rows = allocation.allocate_shared(shared_ledger, since="MTD", over="department", method="proportional")
    assert _by(rows, "department", "shared_allocated_usd") == {
        "research": "6.666666667",
        "sales": "3.333333333",
        "platform": "0.000000000",
    }
    assert _by(rows, "department", "fully_loaded_usd")["research"] == "66.666666667"
    assert _by(rows, "department", "shared_booked_usd")["platform"] == "10.000000000"
    assert allocation.allocation_totals(rows)["fully_loaded_usd"] == "100.000000000"


def test_even_and_weighted_allocation(shared_ledger):
    even = allocation.allocate_shared(shared_ledger, since="MTD", method="even")
    assert _by(even, "department", "shared_allocated_usd")["sales"] == "5.000000000"
    weighted = allocation.allocate_shared(
        shared_ledger, since="MTD", method="weights", weights={"research": 1, "sales": 3, "legal": 1}
    )
    assert _by(weighted, "department", "shared_allocated_usd") == {
        "sales": "6.000000000",
        "research": "2.000000000",
        "legal": "2.000000000",
        "platform": "0.000000000",
    }
    assert allocation.allocation_totals(weighted)["fully_loaded_usd"] == "100.000000000"
    with pytest.raises(InvalidInput):
        allocation.allocate_shared(shared_ledger, since="MTD", method="weights", weights={"a": -1})


def test_scoped_rows_are_a_part_of_the_organisation_wide_allocation(shared_ledger):
    rows = allocation.allocate_shared(shared_ledger, since="MTD", over="project", departments=["research"])
    assert rows == [
        {
            "project": "research",
            "direct_usd": "60.000000000",
            "shared_booked_usd": "0.000000000",
            "shared_allocated_usd": "6.666666667",
            "fully_loaded_usd": "66.666666667",
            "allocation_share_pct": "66.67",
        }
    ]


def test_chargeback_by_cost_center_sums_to_the_period_total(shared_ledger):
    result = allocation.chargeback(shared_ledger, "2026-10")
    assert result["total_usd"] == "100.000000000" and not result["complete"]
    assert _by(result["rows"], "cost_center", "charge_usd") == {
        "cc-100": "66.666666667",
        "cc-200": "33.333333333",
        "cc-900": "0.000000000",
    }
    with pytest.raises(InvalidInput):
        allocation.chargeback(shared_ledger, "2026-13")


# -- ROI ----------------------------------------------------------------------------------------


def test_the_seed_001_scenario_table_is_reproduced():
    # Seed 001, "ROI Projection Model":
    #   conservative: cost_reduction 50%, optimization_investment 100000, monthly_baseline_cost 50000,
    #                 monthly_savings 25000, payback_period_months 4.0, 3_year_roi 800%
    #   realistic:    70%, 150000, 100000, monthly_savings 70000, payback 2.1, 3_year_roi 1580%
    #   optimistic:   90%, 200000, 200000, monthly_savings 180000, payback 1.1, 3_year_roi 3140%
    seed = {
        "conservative": ("25000", "4.0", "800"),
        "realistic": ("70000", "2.1", "1580"),
        "optimistic": ("180000", "1.1", "3140"),
    }
    table = roi.scenario_table()
    assert [row["scenario"] for row in table] == list(seed)
    for row in table:
        savings, payback, roi_3y = seed[row["scenario"]]
        assert row["monthly_savings"] == Decimal(savings)
        assert row["payback_months"].quantize(Decimal("0.1")) == Decimal(payback)
        assert row["roi_3y_pct"] == Decimal(roi_3y)


def test_roi_formulas_and_edge_cases():
    # Seed 000, ROICalculator: baseline 100000, optimized 40000, investment 20000 -> ROI 300%.
    result = roi.roi("100000", "40000", "20000")
    assert result["monthly_roi_pct"] == Decimal("300.00") and result["payback_months"] == Decimal("0.33")
    with_overhead = roi.roi(50_000, 25_000, 100_000, monthly_operating_cost=5_000)
    assert with_overhead["monthly_savings"] == 20_000 and with_overhead["payback_months"] == Decimal("5.00")
    none = roi.roi(100, 120, 0)
    assert none["payback_months"] is None and none["roi_3y_pct"] is None
    with pytest.raises(InvalidInput):
        roi.roi(1.5, 1, 1)  # floats are not money


def test_caching_roi_reads_repeated_prompt_spend_from_the_ledger(ledger, clock):
    for n in range(4):  # one prompt four times: three repeats are cacheable
        ledger.record(
            provider="x", model="m", category="other", cost_usd="2.5", prompt_hash="same",
            timestamp=clock.now - timedelta(days=1, minutes=n),
        )  # fmt: skip
    ledger.record(
        provider="x", model="m", category="other", cost_usd="10", prompt_hash="once",
        timestamp=clock.now - timedelta(hours=1),
    )  # fmt: skip
    spend = roi.cacheable_spend(ledger, since="30d")
    assert spend["spend"] == Decimal("20") and spend["cacheable_spend"] == Decimal("7.5")
    assert spend["repeated_requests"] == 3
    result = roi.caching_roi(ledger=ledger, hit_rate_pct=50, investment=9)
    assert result["monthly_savings"] == Decimal("3.38")  # 7.50 x 50% x 90%, rounded to cents
    assert result["payback_months"] == Decimal("2.66")


def _cli() -> typer.Typer:
    app = typer.Typer()
    insights_cli.register(app)
    return app


def test_cli_roi_json_is_exact():
    result = CliRunner().invoke(
        _cli(),
        [
            "roi",
            "--baseline-monthly",
            "50000",
            "--optimized-monthly",
            "25000",
            "--investment",
            "100000",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "baseline_monthly": "50000",
        "optimized_monthly": "25000",
        "investment": "100000",
        "monthly_operating_cost": "0",
        "months": 36,
        "cost_reduction_pct": "50.00",
        "gross_monthly_savings": "25000",
        "monthly_savings": "25000",
        "annual_savings": "300000",
        "payback_months": "4.00",
        "monthly_roi_pct": "25.00",
        "roi_3y_pct": "800.00",
        "net_3y": "800000",
    }


def test_cli_caching_and_scenarios_without_a_ledger():
    cached = CliRunner().invoke(
        _cli(),
        ["roi", "caching", "--hit-rate", "30", "--monthly-spend", "10000", "--investment", "5000", "--format", "json"],
    )
    assert cached.exit_code == 0, cached.output
    body = json.loads(cached.stdout)
    assert body["monthly_savings"] == "2700.00" and body["payback_months"] == "1.85"
    table = CliRunner().invoke(_cli(), ["roi", "--scenarios", "--format", "json"])
    assert [row["roi_3y_pct"] for row in json.loads(table.stdout)] == ["800.00", "1580.00", "3140.00"]
