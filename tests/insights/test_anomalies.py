"""Anomalies: accuracy on the demo's injected spikes, clear synthetic spikes found with their cause
and no alarm on plain seasonal noise, idempotent rescans, the lifecycle, the CLI and API."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

import anomaly_demo
from fleetledger import Ledger, Settings
from fleetledger.analytics.anomalies import detect as anomalies
from fleetledger.core.errors import InvalidInput
from fleetledger.storage.query import grouped_costs


@pytest.fixture
def spiky(ledger, clock):
    """35 quiet days of two agents, then 2 days where one agent's requests jump tenfold."""
    rng = random.Random(4)
    items = []
    for day in range(35, 0, -1):
        for agent in ("planner", "writer"):
            calls = 40 if not (agent == "planner" and day in (3, 2)) else 400
            for n in range(calls):
                items.append((f"{day}-{agent}-{n}", {
                    "timestamp": (clock.now - timedelta(days=day, minutes=n)).isoformat(),
                    "provider": "openai", "model": "gpt-4o-mini", "agent": agent, "department": "research",
                    "operation": "plan" if agent == "planner" else "draft",
                    "input_tokens": 2_000 + rng.randint(0, 200), "output_tokens": 300 + rng.randint(0, 50),
                }))  # fmt: skip
    ledger.ingest(items)
    return ledger


def test_a_clear_spike_is_found_with_its_cause_and_rescans_are_idempotent(spiky, clock):
    found = anomalies.scan(spiky, levels=("agent",), since="35d", now=clock.now)
    planner = [a for a in found if a.scope.get("agent") == "planner"]
    assert planner, [a.to_dict() for a in found]
    spike = planner[0]
    assert spike.actual_usd > spike.expected_usd * 3
    assert spike.causes and spike.causes[0]["cause"] == "request_surge"
    assert not [a for a in found if a.scope.get("agent") == "writer"]
    again = anomalies.scan(spiky, levels=("agent",), since="35d", now=clock.now)
    assert sorted(a.id for a in again) == sorted(a.id for a in found)


def test_lifecycle_and_expected_suppression(spiky, clock):
    [spike] = [a for a in anomalies.scan(spiky, levels=("agent",), since="35d", now=clock.now)
               if a.scope.get("agent") == "planner"][:1]  # fmt: skip
    with pytest.raises(InvalidInput, match="status"):
        anomalies.set_status(spiky.store, spike.id, "solved", now=clock.now)
    marked = anomalies.set_status(spiky.store, spike.id, "expected", note="quarter-end batch", now=clock.now)
    assert marked.status == "expected"
    listed = anomalies.list_anomalies(spiky.store, status="expected")
    assert [a.id for a in listed] == [spike.id]
    rescanned = anomalies.scan(spiky, levels=("agent",), since="35d", now=clock.now)
    assert all(a.status == "expected" for a in rescanned if a.scope.get("agent") == "planner")


def test_cli_and_api(spiky, clock, tmp_path):
    import asyncio

    import httpx

    from fleetledger.access.keys import create_key
    from fleetledger.server import create_app

    key, _ = create_key(spiky.store, role="finops", now=clock.now)
    app = create_app(spiky, local_only=False)

    async def calls():
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers) as c:
            scanned = (await c.post("/api/anomalies/scan", params={"since": "35d"})).json()
            assert scanned["found"] >= 1
            first = scanned["anomalies"][0]["id"]
            bad = await c.patch(f"/api/anomalies/{first}", json={"status": "solved"})
            assert bad.status_code == 400 and "status" in bad.json()["error"]["message"]
            ok = await c.patch(f"/api/anomalies/{first}", json={"status": "investigating", "note": "looking"})
            assert ok.json()["status"] == "investigating"
            listed = (await c.get("/api/anomalies", params={"status": "investigating"})).json()
            assert [a["id"] for a in listed] == [first]

    asyncio.run(calls())


def test_the_scans_lean_sums_equal_grouped_costs_on_every_segment(spiky, clock):
    """The scan (and the sunburst) sum only the measures they use; same plan, same exact figures."""
    from fleetledger.analytics.charts import measure_sums
    from fleetledger.core.time import to_us

    end = to_us(clock.now) - 17 * 60 * 10**6 - 123  # raw, hourly and daily segments
    start = end - 20 * 86_400 * 10**6 + 3_600 * 10**6 + 5
    measures = ("cost_nanos", "requests", "input_tokens", "output_tokens")
    for keys, where in (
        (["day", "agent"], {}),
        (["hour"], {"agent": ["planner"]}),
        (["department", "model"], {}),
        (["agent", "task"], {}),  # task: raw events only
        ([], {"department": ["research", None]}),
    ):
        expected = {
            r.keys: [int(r.measures[m]) for m in measures] for r in grouped_costs(spiky.store, keys, start, end, where)
        }
        assert measure_sums(spiky.store, keys, start, end, where, measures) == expected, keys
        assert expected


# -- synthetic series -------------------------------------------------------------------------------

WEEKDAY = [1.0, 1.1, 1.05, 1.0, 0.95, 0.4, 0.35]  # Monday..Sunday volume


def _seasonal_items(clock, *, days: int, switch_days: frozenset[int] = frozenset(), seed: int = 9):
    """Two pipelines with a weekly profile, Poisson-ish daily noise and a slow trend; on
    ``switch_days`` (days ago) the summarizer moves 90% of its calls to a dearer model."""
    rng = random.Random(seed)
    items = []
    for day in range(days, 0, -1):
        when = clock.now.replace(hour=0) - timedelta(days=day)
        for agent, operation, base in (("summarizer", "summarize", 90), ("tagger", "classify", 120)):
            calls = max(1, round(rng.gauss(base * WEEKDAY[when.weekday()] * (1 + 0.004 * (days - day)), 6)))
            for n in range(calls):
                model = "gpt-4o-mini"
                if agent == "summarizer" and day in switch_days and rng.random() < 0.9:
                    model = "gpt-4o"
                items.append((f"{day}-{agent}-{n}", {
                    "timestamp": (when + timedelta(seconds=rng.randrange(86_400))).isoformat(),
                    "provider": "openai", "model": model, "agent": agent, "department": "ops",
                    "operation": operation, "input_tokens": 1_500 + rng.randint(0, 400),
                    "output_tokens": 200 + rng.randint(0, 60),
                }))  # fmt: skip
    return items


def test_plain_seasonal_noise_raises_no_alarm(ledger, clock):
    ledger.ingest(_seasonal_items(clock, days=70))
    for granularity in anomalies.GRANULARITIES:
        found = anomalies.detect(ledger.store, now=clock.now, since="42d", granularity=granularity)
        assert found == [], [a.to_dict() for a in found]


def test_a_model_switch_is_found_with_its_model_and_hour_bounds(ledger, clock):
    ledger.ingest(_seasonal_items(clock, days=70, switch_days=frozenset({4, 3})))
    found = anomalies.detect(ledger.store, now=clock.now, since="42d", levels=("agent",), granularity="hour")
    assert [a.scope for a in found] == [{"agent": "summarizer"}], [a.to_dict() for a in found]
    spike = found[0]
    switch_start = clock.now.replace(hour=0) - timedelta(days=4)
    assert switch_start - timedelta(hours=3) <= spike.start and spike.end <= switch_start + timedelta(days=2, hours=3)
    assert spike.cause == "model_switch" and spike.causes[0]["dimension"] == {"model": "gpt-4o"}
    assert 0 < spike.score <= 1 and spike.impact_nanos > 0 and spike.impact_pct > 100
    assert spike.department == "ops"
    # Money in the causes is a plain decimal string, also where the baseline is zero (a new model).
    assert spike.causes[0]["baseline_usd"] == "0.000000000"
    for cause in spike.causes:
        for key in ("baseline_usd", "actual_usd"):
            assert "E" not in cause[key] and Decimal(cause[key]) >= 0, cause


# -- the demo fleet's injected spikes ---------------------------------------------------------------

DEMO_END = anomaly_demo.DEMO_END


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo fleet, 1M events over 90 days, with its recorded ground truth (SQLite).

    1M events because the injected 3-4x spikes of the smallest scopes (a busy triage bot makes
    ~100 calls a day at this size) only stand clear of day-to-day noise from about this volume;
    at 300k events two of the five are statistically indistinguishable from the noise peaks (and
    at 500k-780k events, or 60-70 days of the same density, a spike's bounds or cause still miss).
    Built once and cached by the version of the code that builds it (tests/anomaly_demo.py).
    """
    folder = tmp_path_factory.mktemp("demo")
    path = anomaly_demo.demo_ledger_file(folder / "demo.db")
    settings = Settings(database_url=f"sqlite:///{path}", spool_dir=folder / "spool")
    ledger = Ledger(settings=settings, background=False, clock=lambda: DEMO_END)
    yield ledger
    ledger.close()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.slow
def test_accuracy_on_the_demo_ledgers_injected_spikes(demo):
    """Precision and recall >= 0.9 at every level, with the injected cause ranked first.

    A FinOps reading of "correct": a detection is right when its window overlaps an injected
    spike's and its scope is the spike's, contains it (the fleet; the department of a spiked
    agent) or lies inside it (an agent of a spiked department); a spike is found when a detection
    of exactly its scope overlaps it, and that detection's first cause must name the injected
    mechanism and dimension value (e.g. ``model_switch`` on ``model=gpt-4o``).
    """
    truth = demo.store.get_meta("demo_ground_truth")["anomalies"]
    assert len(truth) == 5
    owner = {r.keys[0]: r.keys[1] for r in grouped_costs(demo.store, ["agent", "department"], 0, 2**62)}

    def related(scope: dict[str, str], spiked: dict[str, str]) -> bool:
        if not scope:
            return True
        ((key, value),), ((spiked_key, spiked_value),) = scope.items(), spiked.items()
        if key == spiked_key:
            return value == spiked_value
        if key == "department":
            return owner.get(spiked_value) == value
        return owner.get(value) == spiked_value

    def overlaps(a: anomalies.Anomaly, spike: dict) -> bool:
        return a.start < _at(spike["end"]) and _at(spike["start"]) < a.end

    found = anomalies.detect(demo.store, now=DEMO_END, since="90d", granularity="hour")
    described = [(a.scope, a.start.isoformat(), a.end.isoformat(), a.cause) for a in found]
    correct = [a for a in found if any(related(a.scope, s["scope"]) and overlaps(a, s) for s in truth)]
    precision = len(correct) / len(found) if found else 0.0
    hits = {s["id"]: [a for a in found if a.scope == s["scope"] and overlaps(a, s)] for s in truth}
    recall = sum(1 for s in truth if hits[s["id"]]) / len(truth)
    assert precision >= 0.9, (precision, described)
    assert recall >= 0.9, (recall, described, truth)
    for spike in truth:
        for a in hits[spike["id"]]:
            first = a.causes[0]
            assert (first["cause"], first["dimension"]) == (spike["cause"], spike["dimension"]), (spike, a.causes)
            assert 0 < a.score <= 1 and a.actual_nanos > a.expected_nanos > 0
            assert a.impact_pct is not None and a.impact_pct > Decimal(50)
            assert a.impact_usd == a.actual_usd - a.expected_usd
            # hour-precise bounds: within half a day of the injected window
            assert abs(a.start - _at(spike["start"])) <= timedelta(hours=12), (spike, a.to_dict())
            assert abs(a.end - _at(spike["end"])) <= timedelta(hours=12), (spike, a.to_dict())
