"""The synthetic demo fleet: deterministic, exact, realistic enough, and its ground truth holds."""

from __future__ import annotations

import json
import types
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice

import genai_prices
import pytest

from fleetledger.core.usage import TOKEN_FIELDS, parse_event
from fleetledger.demo import DemoSpec, build_fleet, generate, ground_truth

END = datetime(2025, 10, 1, tzinfo=UTC)
UNKNOWN = ("vllm", "acme-llama-70b-ft")
BIG_FOUR = {"openai", "anthropic", "google", "mistral"}


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    return list(generate(DemoSpec(seed=7, days=90, events=20_000, end=END)))


def _price(event: dict) -> Decimal:
    if "cost_usd" in event:
        return Decimal(event["cost_usd"])
    usage = genai_prices.Usage(
        input_tokens=event["input_tokens"],
        output_tokens=event["output_tokens"],
        cache_read_tokens=event["cache_read_tokens"],
        cache_write_tokens=event["cache_write_tokens"],
    )
    return genai_prices.calc_price(
        usage, event["model"], provider_id=event["provider"], genai_request_timestamp=_ts(event["timestamp"])
    ).total_price


def test_generate_is_a_deterministic_stream() -> None:
    spec = DemoSpec(seed=7, days=90, events=200_000, end=END)
    stream = generate(spec)
    assert isinstance(stream, types.GeneratorType)
    first = list(islice(stream, 2000))
    assert first == list(islice(generate(DemoSpec(seed=7, days=90, events=200_000, end=END)), 2000))
    assert json.dumps(first) == json.dumps(list(islice(generate(spec), 2000)))
    other = list(islice(generate(DemoSpec(seed=8, days=90, events=200_000, end=END)), 2000))
    assert other != first
    assert ground_truth(spec) == ground_truth(DemoSpec(seed=7, days=90, events=200_000, end=END))


def test_ten_million_events_stream_lazily() -> None:
    first = next(generate(DemoSpec(seed=3, days=90, events=10_000_000, end=END)))
    assert first["event_id"] == "demo-3-0"


def test_exact_count_order_and_window() -> None:
    spec = DemoSpec(seed=11, days=14, events=5_000, end=datetime(2025, 3, 1, 17, 42, tzinfo=UTC))
    assert spec.end == datetime(2025, 3, 1, 17, tzinfo=UTC)  # rounded down to the hour
    events = list(generate(spec))
    assert len(events) == 5_000
    assert len({e["event_id"] for e in events}) == 5_000
    stamps = [_ts(e["timestamp"]) for e in events]
    assert stamps == sorted(stamps)
    assert spec.start <= stamps[0] and stamps[-1] < spec.end
    assert all(e["timestamp"].endswith("Z") for e in events)
    for n in (0, 1, 999, 5_000, 12_345):
        assert sum(1 for _ in generate(DemoSpec(seed=5, days=10, events=n, end=END))) == n


def test_fleet_structure() -> None:
    fleet = build_fleet(7)
    assert len(fleet.departments) >= 12 and len(fleet.agents) >= 150
    assert len({d.cost_center for d in fleet.departments}) == len(fleet.departments)
    assert all(d.cost_center.startswith("CC-") and d.projects and d.teams for d in fleet.departments)
    assert len({a.name for a in fleet.agents}) == len(fleet.agents)
    assert {a.versions[0][0] for a in fleet.agents} == {"v"}
    assert build_fleet(7) == fleet and build_fleet(8) != fleet


def test_sample_covers_the_dimensions(sample: list[dict]) -> None:
    tokens = [e for e in sample if "cost_usd" not in e]
    assert len({e["department"] for e in sample}) >= 12
    assert len({e["agent"] for e in tokens}) >= 150
    assert {e["provider"] for e in tokens} >= BIG_FOUR
    assert len({(e["provider"], e["model"]) for e in tokens if e["provider"] in BIG_FOUR}) >= 12
    assert {e["environment"] for e in sample} == {"production", "staging", "development"}
    environments = Counter(e["environment"] for e in sample)
    assert environments["production"] > 0.75 * len(sample)
    operations = {e["operation"] for e in tokens}
    assert {"summarize", "classify", "extract", "chat", "code_review", "embed", "plan", "research"} <= operations
    for event in tokens:
        for dim in (
            "department",
            "cost_center",
            "project",
            "team",
            "user",
            "agent",
            "task",
            "environment",
            "version",
            "operation",
            "session_id",
            "request_id",
            "trace_id",
            "span_id",
            "prompt_hash",
        ):
            assert event[dim], (dim, event)
        if event["category"] == "embedding":
            assert event["output_tokens"] == 0 and event["operation"] == "embed"
    assert any(e["reasoning_tokens"] for e in tokens)
    assert any(e["cache_read_tokens"] for e in tokens) and any(e["cache_write_tokens"] for e in tokens)
    assert 0.005 < sum(e["status"] == "error" for e in tokens) / len(tokens) < 0.03
    assert 0.02 < sum(e["service_tier"] == "batch" for e in tokens) / len(tokens) < 0.35
    hashes = Counter(e["prompt_hash"] for e in tokens)
    assert 0.08 < sum(c for c in hashes.values() if c > 1) / len(tokens) < 0.25
    tagged = [e for e in tokens if e["tags"]]
    assert tagged and {e["department"] for e in tagged} == {"customer-support"}
    assert {e["tags"]["arm"] for e in tagged} == {"control", "treatment"}
    sessions = Counter(e["session_id"] for e in tokens)
    assert len(tokens) / len(sessions) > 1.5


def test_every_event_validates(sample: list[dict]) -> None:
    for event in sample:
        parsed = parse_event(event)
        assert parsed.event_id == event["event_id"]
        json.dumps(event)
        if "cost_usd" not in event:
            assert all(isinstance(event[name], int) for name in TOKEN_FIELDS)
            assert event["reasoning_tokens"] <= event["output_tokens"]


def test_line_items(sample: list[dict]) -> None:
    items = [e for e in sample if "cost_usd" in e]
    assert Counter(e["category"] for e in items) == {"infrastructure": 90, "storage": 90}
    for item in items:
        assert isinstance(item["cost_usd"], str) and Decimal(item["cost_usd"]) > 0
        assert not any(name in item for name in TOKEN_FIELDS)
        assert item["provider"] == "aws"
    assert {e["model"] for e in items if e["category"] == "infrastructure"} == {"gpu-a100-hour"}


def test_weekends_are_lighter(sample: list[dict]) -> None:
    per_day: Counter[datetime] = Counter(_ts(e["timestamp"]).date() for e in sample)
    weekend = [n for day, n in per_day.items() if day.weekday() >= 5]
    weekday = [n for day, n in per_day.items() if day.weekday() < 5]
    ratio = (sum(weekend) / len(weekend)) / (sum(weekday) / len(weekday))
    assert 0.2 < ratio < 0.55


def test_every_model_but_the_self_hosted_one_is_priced(sample: list[dict]) -> None:
    models = {(e["provider"], e["model"]) for e in sample if "cost_usd" not in e}
    models |= {(m.provider, m.name) for m in build_fleet(7).models}
    assert UNKNOWN in models
    unknown = sum((e["provider"], e["model"]) == UNKNOWN for e in sample)
    assert 0 < unknown < 0.003 * len(sample)
    for provider, model in sorted(models - {UNKNOWN}):
        price = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1000, output_tokens=100), model, provider_id=provider
        )
        assert price.total_price > 0, (provider, model)
    with pytest.raises(LookupError):
        genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1000, output_tokens=100), UNKNOWN[1], provider_id=UNKNOWN[0]
        )


def test_ground_truth_shape() -> None:
    spec = DemoSpec(seed=7, days=90, events=200_000, end=END)
    truth = ground_truth(spec)
    json.dumps(truth)
    anomalies = truth["anomalies"]
    assert 4 <= len(anomalies) <= 6
    assert {a["cause"] for a in anomalies} == {"model_switch", "request_surge", "token_bloat", "runaway_loop"}
    scopes = [next(iter(a["scope"].items())) for a in anomalies]
    assert len(set(scopes)) == len(scopes)
    fleet = build_fleet(7)
    owner = {a.name: a.department for a in fleet.agents}
    departments = [v if k == "department" else owner[v] for k, v in scopes]
    assert len(set(departments)) == len(departments)  # no two spikes share a department
    middle, last_day = spec.start + timedelta(days=45), spec.end - timedelta(days=1)
    for a in anomalies:
        start, end = _ts(a["start"]), _ts(a["end"])
        assert middle <= start and end <= last_day
        assert timedelta(days=1) <= end - start <= timedelta(days=3)
        assert a["dimension"] and a["description"] and a["id"]
    assert truth["fleet"]["departments"] >= 12 and truth["fleet"]["agents"] >= 150
    assert truth["fleet"]["models"] >= 13
    assert ground_truth(DemoSpec(seed=7, days=5, events=1000, end=END))["anomalies"] == []


def test_spikes_are_obvious_and_explained() -> None:
    """Each spike at least doubles its scope's spend against the same window a week earlier, and the
    recorded dimension value carries most of the excess (and, when it is new, appears only then)."""
    spec = DemoSpec(seed=7, days=90, events=200_000, end=END)
    anomalies = ground_truth(spec)["anomalies"]
    spend: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for event in generate(spec):
        if (event["provider"], event["model"]) == UNKNOWN:
            continue
        for a in anomalies:
            ((key, value),) = a["scope"].items()
            if event.get(key) != value:
                continue
            ((dim, dim_value),) = a["dimension"].items()
            ts, start, end = _ts(event["timestamp"]), _ts(a["start"]), _ts(a["end"])
            if start <= ts < end:
                spend[a["id"], "spike"] += _price(event)
                if event[dim] == dim_value:
                    spend[a["id"], "explained"] += _price(event)
            else:
                if start - timedelta(days=7) <= ts < end - timedelta(days=7):
                    spend[a["id"], "before"] += _price(event)
                if dim in ("session_id", "version", "task"):  # values that exist only during the spike
                    assert event[dim] != dim_value, (a["id"], event)
    for a in anomalies:
        spike, before, explained = (spend[a["id"], k] for k in ("spike", "before", "explained"))
        assert spike >= 2 * before, (a, spike / before)
        assert explained >= Decimal("0.5") * (spike - before), (a, explained, spike, before)


def test_demo_budgets_cover_the_fleet_and_each_department_once(ledger, clock):
    from fleetledger.demo import load_demo

    ledger.budgets.create(name="research-monthly", scope={"department": "research"}, amount="12345")  # a real one
    spec = DemoSpec(seed=3, days=30, events=6_000, end=clock.now)
    summary = load_demo(ledger, spec, budgets=True)
    departments = {r["department"] for r in ledger.costs(by=["department"], since="30d").rows() if r["department"]}
    names = {b.name for b in ledger.budgets.list()}
    assert names == {"fleet-monthly"} | {f"{d}-monthly" for d in departments}
    assert "research-monthly" not in summary["budgets_created"]  # left as it was
    assert ledger.budgets.status(["research-monthly"])[0]["limit_usd"].startswith("12345.")
    statuses = {s["name"]: s for s in ledger.budgets.status()}
    assert all(
        b.action == "notify" and b.period == "monthly" for b in ledger.budgets.list() if b.name != "research-monthly"
    )
    # sized from recent spend: most have headroom, some are projected to run out by the period's end
    demo = [s for name, s in statuses.items() if name != "research-monthly"]
    over = [s for s in demo if Decimal(s["projected_period_spend_usd"]) > Decimal(s["limit_usd"])]
    assert over and len(over) < len(demo) / 2, [
        (s["name"], s["projected_period_spend_usd"], s["limit_usd"]) for s in demo
    ]
    again = load_demo(ledger, spec, budgets=True)
    assert again["budgets_created"] == [] and {b.name for b in ledger.budgets.list()} == names
