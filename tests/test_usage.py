"""The usage event: the one input format. Every bad input names its field and reason."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fleetledger.core.errors import InvalidEvent
from fleetledger.core.usage import parse_event

BASE = {"timestamp": "2026-10-01T12:00:00+02:00", "provider": "openai", "model": "gpt-4o"}


def test_timestamp_is_stored_in_utc_and_aliases_normalize():
    event = parse_event({**BASE, "provider": "Azure-OpenAI", "environment": "prod", "department": " "})
    assert event.timestamp == datetime(2026, 10, 1, 10, 0, tzinfo=UTC)
    assert event.provider == "azure"
    assert event.environment == "production"
    assert event.department is None  # blank means unattributed, not a department called " "


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model": None}, "model: required"),
        ({"timestamp": "2026-10-01T12:00:00"}, "timestamp: timestamp needs a time zone"),
        ({"input_tokens": -1}, "input_tokens: Input should be greater than or equal to 0"),
        ({"input_tokens": 1.5}, "input_tokens: Input should be a valid integer"),
        ({"input_tokens": 10**13}, "input_tokens: Input should be less than or equal to"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"timestamp": "9999-01-01T00:00:00Z"}, "outside 2015-01-01 .. 2100-01-01"),
        ({"input_tokens": 10, "cache_read_tokens": 11}, "exceed input_tokens"),
        ({"output_tokens": 10, "reasoning_tokens": 11}, "exceed output_tokens"),
        ({"status": "maybe"}, "status: Input should be 'success' or 'error'"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        ({"cost_usd": "1.5"}, "cost_usd: only for line items"),
        ({"tags": {"k": 1}}, "tags.k: Input should be a valid string"),
    ],
)
def test_bad_fields_are_named(change, expected):
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(InvalidEvent) as info:
        parse_event(data, location="f.jsonl:3")
    assert expected in info.value.message
    assert info.value.location == "f.jsonl:3"


def test_line_item_needs_no_model_and_keeps_exact_cost():
    event = parse_event(
        {
            "timestamp": "2026-10-01T00:00:00Z",
            "provider": "aws",
            "category": "infrastructure",
            "cost_usd": "12.345678901",
        }
    )
    assert event.cost_usd == Decimal("12.345678901")


def test_content_id_is_stable_and_ignores_event_id():
    a = parse_event({**BASE, "input_tokens": 5})
    b = parse_event({**BASE, "input_tokens": 5, "event_id": "x"})
    c = parse_event({**BASE, "input_tokens": 6})
    assert a.content_id() == b.content_id() != c.content_id()


def test_not_an_object():
    with pytest.raises(InvalidEvent, match="expected a JSON object, got list"):
        parse_event([1, 2])
