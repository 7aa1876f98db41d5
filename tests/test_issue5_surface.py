"""Issue 5's surface: every insight command speaks table, json and csv through the real CLI (on SQLite
and PostgreSQL), money never leaves as a float, breakdowns add up exactly, and the CLI, the REST API
and the library give the same figures."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from fleetledger import Ledger, Settings
from fleetledger.access.keys import create_key
from fleetledger.analytics import charts, experiments, forecast, matrix
from fleetledger.analytics.recommendations import engine as recs
from fleetledger.cli import app
from fleetledger.server import create_app
from support import record_all

NOW = datetime.now(UTC).replace(microsecond=0)
SINCE = (NOW - timedelta(days=30)).date().isoformat()
UNTIL = (NOW + timedelta(days=1)).date().isoformat()


@pytest.fixture
def fleet(db_url, tmp_path) -> dict[str, Any]:
    """21 days of a small fleet (real clock: the CLI reads ``now``), a shared GPU bill, an experiment."""
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool")
    with Ledger(settings=settings, background=False) as ledger:
        record_all(ledger, _fleet_traffic(), prefix="fleet")
        experiments.create(ledger, "exp-mini", control="gpt-4o", treatment="gpt-4o-mini")
        record_all(ledger, _experiment_lines(), prefix="exp")
        found = recs.scan(ledger, min_monthly_savings_usd="0")
        ledger.budgets.create(name="research-monthly", amount="100", scope={"department": "research"}, action="notify")
    return {
        "url": db_url,
        "env": {"FLEETLEDGER_SPOOL_DIR": str(tmp_path / "spool")},
        "recs": found,
        "settings": settings,
    }


def _fleet_traffic():
    for day in range(1, 22):
        at = NOW - timedelta(days=day, hours=1)
        for department, agent, model in (
            ("research", "r-bot", "gpt-4o"),
            ("sales", "s-bot", "gpt-4o-mini"),
            ("support", "t-bot", "gpt-4o"),
        ):
            for n in range(3):
                yield dict(
                    provider="openai", model=model, department=department, cost_center=f"cc-{department}",
                    agent=agent, operation="summarize", user="svc-nightly", input_tokens=4_000 + n,
                    output_tokens=300, latency_ms=900 + 10 * n, prompt_hash=f"p{n % 2}",
                    timestamp=at - timedelta(minutes=n),
                )  # fmt: skip
        yield dict(
            provider="aws", model="gpu-a100-hour", department="platform", cost_center="cc-platform",
            category="infrastructure", cost_usd="1.000000001", agent="infra", timestamp=at,
        )  # fmt: skip


def _experiment_lines():
    for i in range(12):
        for arm, cost in (("control", "0.0100"), ("treatment", "0.0070")):
            yield dict(
                provider="x", model="line", category="other", cost_usd=f"{Decimal(cost) + Decimal(i) / 10**5}",
                tags={"experiment": "exp-mini", "arm": arm, "quality": "0.9"}, latency_ms=100 + i,
                timestamp=NOW - timedelta(hours=2, minutes=i),
            )  # fmt: skip


def run(fleet: dict[str, Any], *args: str) -> str:
    result = CliRunner().invoke(app, ["--db", fleet["url"], *args], env=fleet["env"])
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def _money_is_text(value: Any, where: str = "") -> None:
    """Every ``*_usd`` value (and every value under a ``*_usd`` object) is a decimal string or null."""
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).endswith("_usd"):
                if isinstance(item, dict):
                    for inner in item.values():
                        assert inner is None or isinstance(inner, str), f"{where}.{key}: {inner!r}"
                        if inner is not None:
                            Decimal(inner)
                elif isinstance(item, list):
                    assert all(isinstance(x, str) for x in item), f"{where}.{key}"
                else:
                    assert item is None or isinstance(item, str), f"{where}.{key}: {item!r} is not text"
                    if item is not None:
                        assert "E" not in item, f"{where}.{key}: {item} in exponent notation"
                        Decimal(item)
            _money_is_text(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _money_is_text(item, f"{where}[{i}]")


COMMANDS = [
    ["roi", "--baseline-monthly", "50000", "--optimized-monthly", "25000", "--investment", "100000"],
    ["roi", "--scenarios"],
    ["roi", "caching", "--hit-rate", "30", "--investment", "50"],
    ["allocate", "--since", "30d"],
    ["chargeback", "--period", NOW.strftime("%Y-%m")],
    ["experiments", "list"],
    ["experiments", "analyze", "exp-mini", "--since", "7d"],
    ["fitness", "--since", "30d"],
    ["recommend", "list"],
    ["recommend", "summary"],
    ["anomalies", "scan", "--since", "30d"],
    ["forecast", "--horizon", "30"],
    ["forecast", "runway", "research-monthly"],
    *[["chart", name, "--since", SINCE, "--until", UNTIL] for name in ("trend", "providers", "distribution", "agents")],
    *[["chart", name, "--since", SINCE, "--until", UNTIL] for name in ("sunburst", "sankey", "waterfall", "models")],
    ["chart", "provider-matrix", "--since", SINCE, "--until", UNTIL],
    ["whatif", "provider-shift", "--to-provider", "azure", "--share-pct", "50"],
    ["whatif", "pricing", "--used-only", "--requests-per-month", "1000", "--input-tokens", "100"],
]


def test_every_insight_command_speaks_table_json_and_csv(fleet):
    for command in COMMANDS:
        assert run(fleet, *command, "--format", "table").strip()
        body = json.loads(run(fleet, *command, "--format", "json"))
        _money_is_text(body, " ".join(command))
        text = run(fleet, *command, "--format", "csv")
        reader = csv.DictReader(io.StringIO(text))
        assert reader.fieldnames and len(reader.fieldnames) >= 2, (command, text[:200])
        rows = list(reader)
        for row in rows:  # every line is a row of the header's width: nothing else was printed
            assert None not in row, (command, row)
    rec = fleet["recs"][0]
    show = run(fleet, "recommend", "show", str(rec.id), "--format", "table")
    assert "Implementation steps" in show and "Rollback" in show and rec.steps[0][:30] in show


def test_allocation_shares_add_up_to_exactly_100(fleet):
    # Thirds, which rounded one by one give 33.33 x 3 = 99.99.
    weights = ["--method", "weights", "--weights", "research=1,sales=1,support=1"]
    body = json.loads(run(fleet, "allocate", "--since", "30d", *weights, "--format", "json"))
    shares = [Decimal(r["allocation_share_pct"]) for r in body["rows"]]
    assert sum(shares) == Decimal("100.00")
    assert sorted(shares) == [0, 0, Decimal("33.33"), Decimal("33.33"), Decimal("33.34")]
    assert Decimal(body["total"]["fully_loaded_usd"]) == sum(Decimal(r["fully_loaded_usd"]) for r in body["rows"])
    assert Decimal(body["total"]["shared_allocated_usd"]) == Decimal("21.000000021")
    table = run(fleet, "allocate", "--since", "30d", *weights)
    assert "100.00" in table.splitlines()[-2]


def test_roi_caching_csv_from_the_ledger_is_only_csv(fleet):
    text = run(fleet, "roi", "caching", "--hit-rate", "50", "--format", "csv")
    assert text.splitlines()[0] == "measure,value"


def test_experiment_output_carries_the_interval_sample_size_and_verdict(fleet):
    rows = list(csv.DictReader(io.StringIO(run(fleet, "experiments", "analyze", "exp-mini", "--format", "csv"))))
    assert [r["arm"] for r in rows] == ["control", "treatment", "treatment - control"]
    difference = rows[-1]
    assert difference["verdict"] == "treatment_cheaper"
    assert Decimal(difference["ci_low_usd"]) < Decimal(difference["ci_high_usd"]) < 0
    assert int(difference["needed_per_arm"]) >= 2 and float(difference["p_value"]) < 0.05
    table = run(fleet, "experiments", "analyze", "exp-mini")
    assert "needed_per_arm" in table and "treatment_cheaper" in table


def test_recommendations_show_steps_and_rollback_in_csv(fleet):
    rows = list(csv.DictReader(io.StringIO(run(fleet, "recommend", "list", "--format", "csv"))))
    assert len(rows) == len(fleet["recs"]) > 0
    for row in rows:
        assert row["steps"] and row["rollback"] and row["quality_impact"]
        assert Decimal(row["savings_monthly_usd"]) == Decimal(row["current_cost_monthly_usd"]) - Decimal(
            row["optimized_cost_monthly_usd"]
        )


def test_forecast_scenarios_in_the_cli(fleet):
    base = json.loads(run(fleet, "forecast", "--format", "json"))["fleet"]
    more = json.loads(run(fleet, "forecast", "--traffic", "10", "--format", "json"))["fleet"]
    assert more["scenario"]["factor"] == "1.1"
    assert Decimal(more["total_usd"]["mean"]) == (Decimal(base["total_usd"]["mean"]) * Decimal("1.1")).quantize(
        Decimal("0.01")
    ) or abs(Decimal(more["total_usd"]["mean"]) - Decimal(base["total_usd"]["mean"]) * Decimal("1.1")) <= Decimal(
        "0.01"
    )
    switched = json.loads(
        run(fleet, "forecast", "--switch-from", "gpt-4o", "--switch-to", "gpt-4o-mini", "--format", "json")
    )["fleet"]
    with Ledger(settings=fleet["settings"], background=False) as ledger:
        expected = forecast.model_switch_factor(ledger, "gpt-4o", "gpt-4o-mini", "1")
    assert Decimal(switched["scenario"]["factor"]) == expected < 1
    assert "gpt-4o -> gpt-4o-mini" in switched["scenario"]["model_switch"]
    half = CliRunner().invoke(app, ["--db", fleet["url"], "forecast", "--switch-from", "gpt-4o"], env=fleet["env"])
    assert half.exit_code == 2 and "--switch-to" in half.output


def test_chart_cli_equals_the_library_and_sunburst_leaves_sum_to_the_total(fleet):
    with Ledger(settings=fleet["settings"], background=False) as ledger:
        for name, function in (
            ("sunburst", charts.sunburst),
            ("waterfall", charts.token_waterfall),
            ("agents", charts.top_agents),
            ("models", matrix.model_matrix),
        ):
            expected = json.loads(json.dumps(function(ledger, since=SINCE, until=UNTIL, where={}), default=str))
            got = json.loads(run(fleet, "chart", name, "--since", SINCE, "--until", UNTIL, "--format", "json"))
            assert got == expected, name
        total = charts.sunburst(ledger, since=SINCE, until=UNTIL)["total_usd"]
        shift = matrix.provider_shift(
            ledger, to_provider="openai", to_model="gpt-4o-mini", from_provider="openai", share_pct="50",
            since=SINCE, until=UNTIL, where={},
        )  # fmt: skip
    shift_args = ["--to-provider", "openai", "--to-model", "gpt-4o-mini", "--from-provider", "openai"]
    got = run(fleet, "whatif", "provider-shift", *shift_args, "--share-pct", "50", "--since", SINCE, "--until", UNTIL,
              "--format", "json")  # fmt: skip
    assert json.loads(got) == json.loads(json.dumps(shift, default=str))
    leaves = csv.DictReader(
        io.StringIO(run(fleet, "chart", "sunburst", "--since", SINCE, "--until", UNTIL, "--format", "csv"))
    )
    assert sum(Decimal(r["cost_usd"]) for r in leaves) == Decimal(total)
    bad = CliRunner().invoke(app, ["--db", fleet["url"], "chart", "pie"], env=fleet["env"])
    assert bad.exit_code == 2 and "trend" in bad.output


@pytest.mark.anyio
async def test_recommendation_detail_and_realized_savings_over_rest(db_url, tmp_path, clock):
    pytest.importorskip("anyio")
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool")
    with Ledger(settings=settings, background=False, clock=clock) as ledger:
        for n in range(40):
            ledger.record(
                provider="openai", model="gpt-4o", agent="nightly", user="svc-nightly", operation="summarize",
                input_tokens=20_000 + n, output_tokens=800, prompt_hash=f"p{n % 20}",
                timestamp=clock.now - timedelta(hours=10, minutes=n),
            )  # fmt: skip
        (caching,) = recs.scan(ledger, min_monthly_savings_usd="0", kinds=["caching"])
        finops, _ = create_key(ledger.store, role="finops", name="f", now=clock.now)
        viewer, _ = create_key(ledger.store, role="viewer", departments=("research",), name="v", now=clock.now)
        headers = {"Authorization": f"Bearer {finops}"}
        transport = httpx.ASGITransport(app=create_app(ledger, local_only=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            one = await client.get(f"/api/recommendations/{caching.id}", headers=headers)
            assert one.status_code == 200
            assert one.json()["steps"] == caching.steps and one.json()["rollback"] == caching.rollback
            assert (await client.get("/api/recommendations/999999", headers=headers)).status_code == 404
            # The calls carry no department: a research viewer sees neither the list entry nor the detail.
            as_viewer = {"Authorization": f"Bearer {viewer}"}
            assert (await client.get("/api/recommendations", headers=as_viewer)).json() == []
            assert (await client.get(f"/api/recommendations/{caching.id}", headers=as_viewer)).status_code == 403
            assert len((await client.get("/api/recommendations", headers=headers)).json()) == 1
            early = await client.post(f"/api/recommendations/{caching.id}/realized", headers=headers)
            assert early.status_code == 409
            for status in ("approved", "implemented"):
                moved = await client.patch(
                    f"/api/recommendations/{caching.id}", json={"status": status}, headers=headers
                )
                assert moved.status_code == 200
            clock.now = clock.now + timedelta(days=3)
            denied = await client.post(
                f"/api/recommendations/{caching.id}/realized", headers={"Authorization": f"Bearer {viewer}"}
            )
            assert denied.status_code == 403
            measured = await client.post(f"/api/recommendations/{caching.id}/realized", headers=headers)
            assert measured.status_code == 200
            realized = measured.json()["realized"]
            assert realized["before"]["requests"] == 40 and realized["after"]["requests"] == 0
            assert Decimal(realized["realized_monthly_usd"]) > 0
            summary = (await client.get("/api/savings/summary", headers=headers)).json()
            assert summary["realized_monthly_usd"] == realized["realized_monthly_usd"]
            # Anomaly scans take the CLI's --level too; a bad level is a 400 naming it.
            scan = await client.post("/api/anomalies/scan", params={"since": "30d", "level": "fleet"}, headers=headers)
            assert scan.status_code == 200 and all(a["level"] == "fleet" for a in scan.json()["anomalies"])
            bad = await client.post("/api/anomalies/scan", params={"level": "planet"}, headers=headers)
            assert bad.status_code == 400 and "level" in bad.json()["error"]["message"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_cost_histogram_bins_are_proper_and_hold_every_request(ledger, clock):
    at = clock.now - timedelta(hours=1)
    for tokens in (0, 0, 1, 2, 7, 1_000, 100_000, 3_000_000):  # gpt-4o-mini input: 150 nano-USD a token
        ledger.record(provider="openai", model="gpt-4o-mini", input_tokens=tokens, timestamp=at)
    result = charts.cost_distribution(ledger, since="1d", bins=30)
    bins = result["histogram"]
    assert all(Decimal(b["from_usd"]) < Decimal(b["to_usd"]) for b in bins)
    assert all(Decimal(a["to_usd"]) == Decimal(b["from_usd"]) for a, b in zip(bins, bins[1:], strict=False))
    assert Decimal(bins[0]["from_usd"]) == 0 and Decimal(bins[-1]["to_usd"]) > Decimal("0.45")
    assert sum(b["requests"] for b in bins) == result["requests"] == 8
    for cost in (0, Decimal("0.00000015"), Decimal("0.45")):  # each request sits in the bin whose range holds it
        (home,) = [b for b in bins if Decimal(b["from_usd"]) <= cost < Decimal(b["to_usd"])]
        assert home["requests"] >= 1
