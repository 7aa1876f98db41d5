"""The ledger on SQLite and PostgreSQL: exact storage, idempotency, rollups that agree with raw events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from fleetledger import InvalidEvent, Ledger, Settings
from fleetledger.core.time import to_us
from fleetledger.storage.query import grouped_costs
from fleetledger.storage.schema import events
from fleetledger.storage.store import ALL_ROLLUPS

T0 = datetime(2026, 10, 1, tzinfo=UTC)
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-flash"),
    ("vllm", "acme-llama-70b-ft"),
]


def random_events(n: int, seed: int = 1, days: int = 5) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        provider, model = rng.choice(MODELS)
        inp = rng.randint(0, 50_000)
        out.append(
            {
                "event_id": f"e{seed}-{i}",
                "timestamp": (
                    T0 + timedelta(seconds=rng.randint(0, days * 86_400 - 1), microseconds=rng.randint(0, 999_999))
                ).isoformat(),
                "provider": provider,
                "model": model,
                "input_tokens": inp,
                "cache_read_tokens": rng.randint(0, inp // 2),
                "output_tokens": rng.randint(0, 4_000),
                "department": rng.choice(["research", "support", "sales", None]),
                "agent": f"agent-{rng.randint(1, 7)}",
                "user": rng.choice(["ana", "bo", None]),
                "environment": rng.choice(["production", "staging"]),
                "status": rng.choice(["success"] * 9 + ["error"]),
                "latency_ms": rng.randint(50, 5000),
                "tags": {"experiment": rng.choice(["a", "b"])},
            }
        )
    return out


def raw_totals(ledger: Ledger, by: str, since: datetime, until: datetime) -> dict:
    with ledger.store.read() as conn:
        rows = conn.execute(
            select(events.c[by], func.sum(events.c.cost_nanos), func.count())
            .where(events.c.ts_us >= to_us(since), events.c.ts_us < to_us(until))
            .group_by(events.c[by])
        ).all()
    return {row[0]: (int(row[1]), row[2]) for row in rows}


def test_record_prices_and_stores_itemised_cost(ledger):
    with ledger.attribute(department="research", agent="summarizer", tags={"team": "nlp"}):
        priced = ledger.record(
            provider="openai",
            model="gpt-4o",
            input_tokens=1_200,
            cache_read_tokens=200,
            output_tokens=300,
            request_id="req-1",
        )
    assert str(priced.cost_usd) == "0.005750000"
    detail = ledger.event("req-1")
    assert detail["department"] == "research" and detail["agent"] == "summarizer"
    assert detail["tags"] == {"team": "nlp"}
    assert detail["cost_usd"] == "0.005750000"
    assert detail["cost_components"] == {
        "input_mtok": "0.002500000",
        "cache_read_mtok": "0.000250000",
        "output_mtok": "0.003000000",
    }
    assert detail["price_source"] == "genai-prices"


def test_duplicate_event_id_is_counted_never_charged_twice(ledger):
    items = [(f"l{i}", e) for i, e in enumerate(random_events(50))]
    first = ledger.ingest(items)
    again = ledger.ingest(items)
    assert (first.accepted, first.duplicates) == (50, 0)
    assert (again.accepted, again.duplicates) == (0, 50)
    report = ledger.costs(since=T0, until=T0 + timedelta(days=6))
    assert report.total["requests"] == 50
    assert report.total["cost_nanos"] == first.cost_nanos
    # a batch that repeats an id within itself is charged once too
    dup = random_events(1, seed=9)[0]
    result = ledger.ingest([("a", dup), ("b", dup)])
    assert (result.accepted, result.duplicates) == (1, 1)


def test_rejected_items_lose_nothing_else(ledger):
    good = random_events(3)
    items = [
        ("1", good[0]),
        ("2", {"timestamp": "2026-10-01T00:00:00Z", "input_tokens": 5}),
        ("3", good[1]),
        ("4", {"garbage": True}),
        ("5", good[2]),
    ]
    result = ledger.ingest(items)
    assert (result.accepted, result.rejected) == (3, 2)
    assert [r.location for r in result.rejections] == ["2", "4"]
    assert "model: required" in result.rejections[0].reason


@pytest.mark.parametrize("by", ["department", "model", "agent", "environment", "provider"])
def test_rollup_segments_equal_raw_scan(ledger, by):
    ledger.ingest((str(i), e) for i, e in enumerate(random_events(600, days=4)))
    rng = random.Random(by)
    for _ in range(6):
        since = T0 + timedelta(seconds=rng.randint(0, 2 * 86_400), microseconds=rng.randint(0, 999_999))
        until = since + timedelta(seconds=rng.randint(60, 3 * 86_400))
        rows = grouped_costs(ledger.store, [by], to_us(since), to_us(until))
        got = {row.keys[0]: (row.measures["cost_nanos"], row.measures["requests"]) for row in rows}
        assert got == raw_totals(ledger, by, since, until)


def test_costs_report_groups_sum_to_total_and_filters(ledger):
    ledger.ingest((str(i), e) for i, e in enumerate(random_events(300)))
    report = ledger.costs(by=["department", "model"], since=T0, until=T0 + timedelta(days=6))
    rows = report.rows()
    assert sum(int(r["requests"]) for r in rows) == 300
    from decimal import Decimal

    assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal(report.total_json()["cost_usd"])
    unattributed = ledger.costs(
        by=["department"], since=T0, until=T0 + timedelta(days=6), where={"department": [None]}
    ).rows()
    assert [r["department"] for r in unattributed] == [None]
    research = ledger.costs(
        by=["user"], since=T0, until=T0 + timedelta(days=6), where={"department": ["research"], "tag.experiment": ["a"]}
    )
    assert research.total["requests"] == sum(
        1 for e in random_events(300) if e["department"] == "research" and e["tags"]["experiment"] == "a"
    )
    unpriced = sum(1 for e in random_events(300) if e["provider"] == "vllm")
    assert report.total["unpriced"] == unpriced > 0


def test_group_by_day_and_hour_from_rollups(ledger):
    ledger.ingest((str(i), e) for i, e in enumerate(random_events(400)))
    by_day = ledger.costs(by=["day"], since=T0, until=T0 + timedelta(days=5)).rows()
    assert [r["day"] for r in by_day] == [(T0 + timedelta(days=d)).isoformat().replace("+00:00", "Z") for d in range(5)]
    by_hour = ledger.costs(by=["hour"], since=T0, until=T0 + timedelta(days=5))
    assert by_hour.total == ledger.costs(by=["day"], since=T0, until=T0 + timedelta(days=5)).total


def test_reprice_after_override_updates_events_and_rollups(ledger, clock):
    from fleetledger.pricing.overrides import add_override, load_overrides
    from fleetledger.pricing.reprice import reprice

    ledger.ingest((str(i), e) for i, e in enumerate(random_events(200)))
    before = ledger.costs(by=["model"], since=T0, until=T0 + timedelta(days=6))
    unpriced = before.total["unpriced"]
    assert unpriced > 0
    add_override(
        ledger.store,
        provider="vllm",
        model_pattern="acme-llama-70b-ft",
        prices={"input_mtok": "0.4", "output_mtok": "0.8"},
        now=clock(),
    )
    ledger.pricer.set_overrides(load_overrides(ledger.store))
    result = reprice(ledger, T0)
    assert result.newly_priced == unpriced == result.changed
    after = ledger.costs(by=["model"], since=T0, until=T0 + timedelta(days=6))
    assert after.total["unpriced"] == 0
    assert after.total["cost_nanos"] == before.total["cost_nanos"] + result.delta_nanos
    assert raw_totals(ledger, "model", T0, T0 + timedelta(days=6))["acme-llama-70b-ft"][0] == result.delta_nanos
    # the rollups were rebuilt to match the raw events
    with ledger.store.read() as conn:
        for table in ALL_ROLLUPS:
            assert (
                conn.execute(select(func.sum(table.c.cost_nanos))).scalar()
                == conn.execute(select(func.sum(events.c.cost_nanos))).scalar()
            )
    assert reprice(ledger, T0).changed == 0  # running it again changes nothing


def test_background_writer_flushes_on_close(db_url, tmp_path, clock):
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool", flush_interval_s=5)
    with Ledger(settings=settings, clock=clock) as ledger:
        for i in range(1_000):
            ledger.record(provider="openai", model="gpt-4o-mini", input_tokens=i, output_tokens=1, agent="bg")
    with Ledger(settings=settings, clock=clock, background=False) as reader:
        assert reader.store.count_events() == 1_000
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


def test_attribute_rejects_unknown_dimension(ledger):
    with pytest.raises(InvalidEvent, match="unknown dimension"), ledger.attribute(departmnet="x"):
        pass
