"""Properties that must hold for any input: exact money, exact grouping, idempotent ingest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetledger import Ledger, Settings
from fleetledger.core.usage import parse_event
from fleetledger.pricing import Pricer

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "o3-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-1"),
    ("google", "gemini-2.5-pro"),
    ("mistral", "mistral-large-latest"),
    ("vllm", "unknown-model"),
]
T0 = datetime(2026, 9, 1, tzinfo=UTC)
PRICER = Pricer()


@st.composite
def usage_events(draw, with_id: bool = True):
    provider, model = draw(st.sampled_from(MODELS))
    input_tokens = draw(st.integers(0, 2_000_000))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    output = draw(st.integers(0, 200_000))
    event = {
        "timestamp": (T0 + timedelta(microseconds=draw(st.integers(0, 20 * 86_400 * 10**6)))).isoformat(),
        "provider": provider,
        "model": model,
        "input_tokens": input_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "cache_write_1h_tokens": draw(st.integers(0, cache_write)),
        "output_tokens": output,
        "reasoning_tokens": draw(st.integers(0, output)),
        "service_tier": draw(st.sampled_from(["standard", "batch", "flex", "priority"])),
        "department": draw(st.sampled_from(["research", "support", "legal", None])),
        "agent": draw(st.sampled_from(["a", "b", "c"])),
    }
    if with_id:
        event["event_id"] = draw(st.uuids()).hex
    return {k: v for k, v in event.items() if v is not None}


@given(usage_events())
@settings(max_examples=400, deadline=None)
def test_components_sum_to_total_exactly(data):
    cost = PRICER.price(parse_event(data))
    assert sum(cost.components.values()) == cost.total_nanos == sum(cost.buckets)
    assert all(isinstance(v, int) and v >= 0 for v in cost.components.values())
    assert isinstance(cost.total_usd, Decimal)


def _ledger(tmp_path_factory) -> Ledger:
    folder = tmp_path_factory.mktemp("prop")
    return Ledger(
        settings=Settings(database_url=f"sqlite:///{folder / 'p.db'}", spool_dir=folder / "spool"),
        background=False,
        clock=lambda: T0 + timedelta(days=30),
    )


@given(
    st.lists(usage_events(), min_size=1, max_size=60),
    st.sampled_from([["department"], ["model"], ["department", "agent"], ["day"], ["provider", "service_tier"]]),
    st.integers(0, 10 * 86_400),
    st.integers(3_600, 25 * 86_400),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_grouped_sums_equal_total_exactly(tmp_path_factory, items, by, start, length):
    ledger = _ledger(tmp_path_factory)
    try:
        ledger.ingest((str(i), e) for i, e in enumerate(items))
        since, until = T0 + timedelta(seconds=start), T0 + timedelta(seconds=start + length)
        grouped = ledger.costs(by=by, since=since, until=until)
        overall = ledger.costs(since=since, until=until)
        assert sum(Decimal(r["cost_usd"]) for r in grouped.rows()) == Decimal(overall.total_json()["cost_usd"])
        assert sum(r["requests"] for r in grouped.rows()) == overall.total["requests"]
        # and the total is the exact sum of the individual events' costs in the window
        expected = sum(
            PRICER.price(parse_event(e)).total_nanos
            for e in {e["event_id"]: e for e in items}.values()
            if since <= datetime.fromisoformat(e["timestamp"]) < until
        )
        assert overall.total["cost_nanos"] == expected
    finally:
        ledger.close()


@given(
    st.lists(
        st.one_of(usage_events(with_id=False), st.just("{broken"), st.just('{"model": "x"}')), min_size=1, max_size=40
    )
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_ingesting_the_same_file_twice_changes_nothing(tmp_path_factory, lines):
    from fleetledger.ingest.files import read_events

    folder = tmp_path_factory.mktemp("file")
    path = folder / "usage.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    ledger = _ledger(tmp_path_factory)
    try:
        first = ledger.ingest(read_events(path))
        snapshot = ledger.costs(by=["department", "model"], since=T0, until=T0 + timedelta(days=21)).rows()
        second = ledger.ingest(read_events(path))
        assert second.accepted == 0
        assert second.duplicates == first.accepted + first.duplicates
        assert second.rejected == first.rejected == sum(isinstance(line, str) for line in lines)
        assert ledger.costs(by=["department", "model"], since=T0, until=T0 + timedelta(days=21)).rows() == snapshot
    finally:
        ledger.close()
