"""Importers: LiteLLM spend-log exports and OpenAI Usage API pages, from realistic fixture files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fleetledger import Ledger, Settings
from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.usage import parse_event
from fleetledger.ingest.importers import read_litellm_spend_logs, read_openai_usage

FIXTURES = Path(__file__).parent / "fixtures"
SPEND_JSON = FIXTURES / "litellm_spend_logs.json"
SPEND_CSV = FIXTURES / "litellm_spend_logs.csv"
USAGE_COMPLETIONS = FIXTURES / "openai_usage_completions.json"
USAGE_EMBEDDINGS = FIXTURES / "openai_usage_embeddings.json"
KEY_HASH = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'o.db'}", spool_dir=tmp_path / "s")
    with Ledger(settings=settings, background=False) as instance:
        yield instance


def split(items: list[tuple[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """{location: valid event} and {location: rejection reason}, as the ledger would judge them."""
    events, rejections = {}, {}
    for location, item in items:
        if isinstance(item, InvalidEvent):
            assert item.location == location
            rejections[location] = item.message
            continue
        try:
            parse_event(item, location=location)
        except InvalidEvent as exc:
            rejections[location] = exc.message
        else:
            events[location] = item
    return events, rejections


def cost(ledger: Ledger, event_id: str) -> Decimal:
    stored = ledger.event(event_id)
    assert stored is not None, event_id
    return Decimal(stored["cost_usd"])


# -- LiteLLM spend logs -------------------------------------------------------------------------------


def test_litellm_json_export_maps_every_column() -> None:
    events, rejections = split(list(read_litellm_spend_logs(SPEND_JSON)))

    assert events["litellm_spend_logs.json[0]"] == {
        "event_id": "litellm-chatcmpl-BXk2sWq1aF9rT0",
        "request_id": "chatcmpl-BXk2sWq1aF9rT0",
        "timestamp": datetime(2025, 11, 14, 9, 15, 2, 512_000, tzinfo=UTC),  # naive in the export: UTC
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1200,  # prompt_tokens already counts the 1000 cached tokens
        "cache_read_tokens": 1000,
        "cache_write_tokens": 0,
        "output_tokens": 300,
        "team": "payments",  # the key's team alias, not the team id
        "user": "customer-9931",  # end_user, the customer the call was for
        "session_id": "sess-31f",
        "status": "success",
        "category": "llm_inference",
        "latency_ms": 1500.0,
        "tags": {
            "ticket": "PAY-1042",
            "litellm_spend": "0.00475",
            "litellm_call_type": "acompletion",
            "litellm_model_group": "gpt-4o",
            "litellm_api_key": KEY_HASH,
            "litellm_key_alias": "checkout-prod",
            "litellm_tags": "prod,checkout",
            "litellm_key_user": "internal-user-7",
        },
    }

    anthropic = events["litellm_spend_logs.json[1]"]  # metadata and request_tags as JSON strings
    assert (anthropic["provider"], anthropic["model"]) == ("anthropic", "claude-sonnet-4-5")
    assert (anthropic["input_tokens"], anthropic["cache_read_tokens"], anthropic["cache_write_tokens"]) == (
        4000,
        3000,
        500,
    )
    assert (anthropic["team"], anthropic["agent"], anthropic["latency_ms"]) == ("research", "deep-research", 3250.0)
    assert "user" not in anthropic
    assert anthropic["tags"]["litellm_tags"] == "agent:deep-research"

    embedding = events["litellm_spend_logs.json[2]"]
    assert (embedding["category"], embedding["input_tokens"], embedding["output_tokens"]) == ("embedding", 5000, 0)

    cache_hit = events["litellm_spend_logs.json[3]"]
    assert (cache_hit["input_tokens"], cache_hit["output_tokens"]) == (0, 0)
    assert {k: cache_hit["tags"][k] for k in ("cache_hit", "litellm_cached_prompt_tokens")} == {
        "cache_hit": "true",
        "litellm_cached_prompt_tokens": "1200",
    }
    assert cache_hit["tags"]["litellm_cached_completion_tokens"] == "300"

    assert events["litellm_spend_logs.json[4]"]["status"] == "error"

    older_release = events["litellm_spend_logs.json[8]"]  # prompt_tokens had the cache reads only
    assert (older_release["input_tokens"], older_release["cache_read_tokens"]) == (3512, 3000)
    assert older_release["tags"]["input_tokens_adjusted"] == "added_cache_writes"

    vertex = events["litellm_spend_logs.json[9]"]
    assert (vertex["provider"], vertex["model"], vertex["reasoning_tokens"]) == ("google", "gemini-2.5-flash", 250)

    assert "litellm_spend_logs.json[5]" not in events | rejections  # the MCP tool call is skipped
    assert rejections == {
        "litellm_spend_logs.json[6]": "request_id: missing (it is the spend log's primary key)",
        "litellm_spend_logs.json[7]": "prompt_tokens: must be between 0 and 1000000000000, got -5",
    }


def test_litellm_csv_export_with_multiline_cells_and_bad_rows() -> None:
    events, rejections = split(list(read_litellm_spend_logs(SPEND_CSV)))

    assert list(events) == ["litellm_spend_logs.csv:2", "litellm_spend_logs.csv:3", "litellm_spend_logs.csv:16"]
    same_request = events["litellm_spend_logs.csv:2"]
    assert same_request["event_id"] == "litellm-chatcmpl-BXk2sWq1aF9rT0"
    assert same_request["timestamp"] == datetime(2025, 11, 14, 9, 15, 2, 512_000, tzinfo=UTC)  # "+00" offset
    assert (same_request["input_tokens"], same_request["cache_read_tokens"], same_request["team"]) == (
        1200,
        1000,
        "payments",
    )
    assert same_request["tags"]["litellm_spend"] == "0.00475"  # verbatim from the cell

    assert events["litellm_spend_logs.csv:3"]["team"] == "payments"  # a metadata cell spanning 11 lines
    mistral = events["litellm_spend_logs.csv:16"]
    assert (mistral["provider"], mistral["model"]) == ("mistral", "mistral-large-latest")  # from the model prefix
    assert mistral["timestamp"] == datetime(2025, 11, 14, 10, 0, 0, 500_000, tzinfo=UTC)

    assert rejections == {
        "litellm_spend_logs.csv:14": "metadata: not valid JSON",
        "litellm_spend_logs.csv:15": "4 cells but the header has 19",
        "litellm_spend_logs.csv:17": "startTime: not a date-time: 'yesterday'",
    }


def test_litellm_ingest_prices_ourselves_and_is_idempotent_across_formats(ledger: Ledger) -> None:
    first = ledger.ingest(read_litellm_spend_logs(SPEND_JSON), source="litellm")
    assert (first.accepted, first.duplicates, first.rejected) == (7, 0, 2)
    assert [r.location for r in first.rejections] == ["litellm_spend_logs.json[6]", "litellm_spend_logs.json[7]"]

    # Our prices, not LiteLLM's spend (which happens to agree here):
    assert cost(ledger, "litellm-chatcmpl-BXk2sWq1aF9rT0") == Decimal("0.00475")  # 200x2.50+1000x1.25+300x10 /1M
    assert cost(ledger, "litellm-msg_01XFDUDYJgAACzvnptvVoYEL") == Decimal("0.008025")  # 500x3+3000x.3+500x3.75+250x15
    assert cost(ledger, "litellm-emb-7f3a9c01") == Decimal("0.0001")
    assert cost(ledger, "litellm-chatcmpl-cachehit-0042") == Decimal(0)  # served by LiteLLM's cache
    assert cost(ledger, "litellm-msg_01OldLiteLLMCacheReadsOnly") == Decimal("0.004011")
    assert cost(ledger, "litellm-gen-vertex-77a1") == Decimal("0.00124")  # 800x0.30+400x2.50 /1M
    assert first.cost_nanos == 4_750_000 + 8_025_000 + 100_000 + 4_011_000 + 1_240_000

    stored = ledger.event("litellm-chatcmpl-BXk2sWq1aF9rT0")
    assert stored is not None
    assert (stored["team"], stored["user"], stored["tags"]["litellm_tags"]) == (
        "payments",
        "customer-9931",
        "prod,checkout",
    )

    from_csv = ledger.ingest(read_litellm_spend_logs(SPEND_CSV), source="litellm")
    assert (from_csv.accepted, from_csv.duplicates, from_csv.rejected) == (2, 1, 3)
    assert from_csv.cost_nanos == 195_000 + 2_600_000  # gpt-4o-mini 1000x0.15+75x0.60; mistral-large 1000x2+100x6

    again = ledger.ingest(read_litellm_spend_logs(SPEND_JSON), source="litellm")
    assert (again.accepted, again.duplicates, again.rejected, again.cost_nanos) == (0, 7, 2, 0)


def test_litellm_rows_api_answer_and_jsonl(tmp_path: Path) -> None:
    rows = json.loads(SPEND_JSON.read_text())
    from_rows = list(read_litellm_spend_logs(rows))
    assert [location for location, _ in from_rows][:2] == ["rows[0]", "rows[1]"]
    assert [item for _, item in from_rows if isinstance(item, dict)] == [
        item for _, item in read_litellm_spend_logs(SPEND_JSON) if isinstance(item, dict)
    ]
    assert list(read_litellm_spend_logs({"data": rows[:1], "total": 1, "page": 1}))[0][1]["event_id"] == (
        "litellm-chatcmpl-BXk2sWq1aF9rT0"
    )

    jsonl = tmp_path / "spend.jsonl"
    jsonl.write_text(json.dumps(rows[0]) + "\n\n{broken\n" + json.dumps("a string") + "\n")
    events, rejections = split(list(read_litellm_spend_logs(jsonl)))
    assert list(events) == ["spend.jsonl:1"]
    assert rejections["spend.jsonl:3"].startswith("broken JSON")
    assert rejections["spend.jsonl:4"] == "expected a spend-log row (JSON object), got str"


def test_litellm_implausible_durations_keep_the_event() -> None:
    row = {
        "request_id": "r-1",
        "model": "gpt-4o",
        "custom_llm_provider": "openai",
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "startTime": "2025-11-14T09:00:00",
        "endTime": "2025-11-14T09:00:02",
    }
    events = [item for _, item in read_litellm_spend_logs([{**row, "request_duration_ms": "n/a"}])]
    assert events[0]["latency_ms"] == 2000.0  # falls back to endTime - startTime
    events = [item for _, item in read_litellm_spend_logs([{**row, "endTime": "2025-11-10T09:00:00"}])]
    assert "latency_ms" not in events[0]
    parse_event(events[0])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "no such file"),
        ("spend.txt", "x", "cannot tell the format"),
        ("spend.json", '{"rows": []}', "expected a JSON array"),
        ("spend.json", "[1, 2", "not a JSON export"),
        ("spend.csv", "id,model\n1,gpt-4o\n", "no request_id column"),
    ],
)
def test_litellm_unreadable_sources_raise_invalid_input(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        list(read_litellm_spend_logs(path))
    with pytest.raises(InvalidInput, match="expected spend-log rows"):
        list(read_litellm_spend_logs({"rows": []}))


# -- OpenAI Usage API ---------------------------------------------------------------------------------


def test_openai_completions_page_maps_each_result_to_one_event() -> None:
    events, rejections = split(list(read_openai_usage(USAGE_COMPLETIONS)))

    first = events["openai_usage_completions.json:data[0].results[0]"]
    assert first.pop("event_id").startswith("openai-usage-")
    assert first == {
        "timestamp": datetime(2024, 11, 1, tzinfo=UTC),  # bucket start
        "provider": "openai",
        "model": "gpt-4o-2024-08-06",
        "input_tokens": 100000,  # cached tokens included, as OpenAI reports them
        "output_tokens": 20000,
        "cache_read_tokens": 40000,
        "service_tier": "standard",
        "category": "llm_inference",
        "project": "proj_abc123",
        "user": "user-9f8e7d",
        "tags": {"source": "openai_usage_export", "num_model_requests": "120", "api_key_id": "key_7c6b5a"},
    }
    batch = events["openai_usage_completions.json:data[0].results[1]"]
    assert (batch["service_tier"], batch["model"], batch["input_tokens"]) == (
        "batch",
        "gpt-4o-mini-2024-07-18",
        2_000_000,
    )
    assert "user" not in batch

    audio = events["openai_usage_completions.json:data[1].results[0]"]  # an older export: audio beside text
    assert (audio["input_tokens"], audio["input_audio_tokens"]) == (16000, 4000)
    assert (audio["output_tokens"], audio["output_audio_tokens"]) == (4500, 1500)

    # The inconsistent result (cached > input) is left to the ledger's validation; see the ingest test.
    assert "openai_usage_completions.json:data[1].results[1]" not in events
    assert rejections == {
        "openai_usage_completions.json:data[0].results[2]": (
            "model: null; export with group_by=model so each result names the model to price it by"
        ),
        "openai_usage_completions.json:data[1].results[1]": rejections[
            "openai_usage_completions.json:data[1].results[1]"
        ],
        "openai_usage_completions.json:data[1].results[2]": "input_tokens: expected a token count, got 'lots'",
    }
    assert (
        "cache_read_tokens + cache_write_tokens (60000 + 0) exceed input_tokens (30000)"
        in rejections["openai_usage_completions.json:data[1].results[1]"]
    )


def test_openai_newer_export_counts_every_modality_in_the_totals() -> None:
    page = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": 1767225600,
                "end_time": 1767229200,
                "results": [
                    {
                        "object": "organization.usage.completions.result",
                        "input_tokens": 9000,
                        "input_text_tokens": 5000,
                        "input_audio_tokens": 3000,
                        "input_image_tokens": 1000,
                        "input_cached_tokens": 2000,
                        "input_cached_audio_tokens": 500,
                        "input_cache_write_tokens": 1500,
                        "output_tokens": 700,
                        "output_text_tokens": 700,
                        "num_model_requests": 4,
                        "model": "gpt-realtime",
                        "service_tier": "priority",
                    }
                ],
            }
        ],
    }
    [(location, event)] = list(read_openai_usage(page))
    parse_event(event)
    assert location == "data[0].results[0]"
    assert (event["input_tokens"], event["cache_read_tokens"], event["cache_write_tokens"]) == (9000, 2000, 1500)
    assert (event["input_audio_tokens"], event["input_image_tokens"], event["cache_audio_read_tokens"]) == (
        3000,
        1000,
        500,
    )
    assert event["service_tier"] == "priority"
    assert event["timestamp"] == datetime(2026, 1, 1, tzinfo=UTC)


def test_openai_embeddings_pages_and_unsupported_endpoints() -> None:
    events, rejections = split(list(read_openai_usage(USAGE_EMBEDDINGS)))
    assert {location: (e["model"], e["category"], e["input_tokens"]) for location, e in events.items()} == {
        "openai_usage_embeddings.json:[0].data[0].results[0]": ("text-embedding-3-small", "embedding", 1_000_000),
        "openai_usage_embeddings.json:[1].data[0].results[0]": ("text-embedding-3-large", "embedding", 200_000),
    }
    assert rejections == {
        "openai_usage_embeddings.json:[1].data[0].results[1]": (
            "unsupported usage result 'organization.usage.images.result': "
            "only completions and embeddings usage is priced from tokens"
        )
    }


def test_openai_event_ids_are_deterministic_and_distinguish_groups(tmp_path: Path) -> None:
    page = json.loads(USAGE_COMPLETIONS.read_text())
    from_file = [item["event_id"] for _, item in read_openai_usage(USAGE_COMPLETIONS) if isinstance(item, dict)]
    from_dict = [item["event_id"] for _, item in read_openai_usage(page) if isinstance(item, dict)]
    copy = tmp_path / "elsewhere.json"
    shutil.copy(USAGE_COMPLETIONS, copy)
    from_copy = [item["event_id"] for _, item in read_openai_usage(copy) if isinstance(item, dict)]
    assert from_file == from_dict == from_copy
    assert len(set(from_file)) == len(from_file) == 4

    result = page["data"][0]["results"][0]
    base = next(iter(read_openai_usage(page)))[1]["event_id"]
    for change in ({"project_id": "proj_other"}, {"batch": True}, {"api_key_id": None}, {"user_id": "u2"}):
        variant = json.loads(json.dumps(page))
        variant["data"][0]["results"][0] = {**result, **change}
        assert next(iter(read_openai_usage(variant)))[1]["event_id"] != base, change
    grown = json.loads(json.dumps(page))
    grown["data"][0]["results"][0]["input_tokens"] += 1  # same bucket, same group: the same event
    assert next(iter(read_openai_usage(grown)))[1]["event_id"] == base


def test_openai_open_buckets_are_rejected_with_now() -> None:
    now = datetime(2024, 11, 2, 12, 0, tzinfo=UTC)  # the second bucket ends at midnight on Nov 3
    items = list(read_openai_usage(USAGE_COMPLETIONS, now=now))
    events, rejections = split(items)
    assert "openai_usage_completions.json:data[0].results[0]" in events
    assert rejections["openai_usage_completions.json:data[1]"] == (
        "bucket ending 2024-11-03T00:00:00+00:00 is still open; import it after it closes"
    )
    assert not any(location.startswith("openai_usage_completions.json:data[1].") for location in events)
    with pytest.raises(InvalidInput, match="time zone"):
        list(read_openai_usage(USAGE_COMPLETIONS, now=datetime(2024, 11, 2)))


def test_openai_ingest_prices_and_reimport_is_duplicates(ledger: Ledger) -> None:
    first = ledger.ingest(read_openai_usage(USAGE_COMPLETIONS), source="openai-usage")
    assert (first.accepted, first.duplicates, first.rejected) == (3, 0, 3)
    assert [r.location for r in first.rejections] == [
        "openai_usage_completions.json:data[0].results[2]",
        "openai_usage_completions.json:data[1].results[1]",
        "openai_usage_completions.json:data[1].results[2]",
    ]
    gpt4o = next(item for _, item in read_openai_usage(USAGE_COMPLETIONS) if isinstance(item, dict))
    assert cost(ledger, gpt4o["event_id"]) == Decimal("0.40")  # 60000x2.50 + 40000x1.25 + 20000x10 per million
    stored = ledger.event(gpt4o["event_id"])
    assert stored is not None
    assert (stored["project"], stored["user"], stored["tags"]["num_model_requests"]) == (
        "proj_abc123",
        "user-9f8e7d",
        "120",
    )

    embeddings = ledger.ingest(read_openai_usage(USAGE_EMBEDDINGS), source="openai-usage")
    assert (embeddings.accepted, embeddings.rejected) == (2, 1)
    assert embeddings.cost_nanos == 20_000_000 + 26_000_000  # 1M x $0.02 + 200k x $0.13 per million

    again = ledger.ingest(read_openai_usage(USAGE_COMPLETIONS), source="openai-usage")
    assert (again.accepted, again.duplicates, again.cost_nanos) == (0, 3, 0)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"object": "list", "items": []}, "payload: not a Usage API page"),
        ([{"object": "page", "data": []}, {"data": "nope"}], r"\[1\]: not a Usage API page"),
        (42, "expected a Usage API page"),
    ],
)
def test_openai_malformed_payloads_raise_invalid_input(payload: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        list(read_openai_usage(payload))


def test_openai_bad_buckets_are_rejected_where_they_are(tmp_path: Path) -> None:
    page = {
        "object": "page",
        "data": [
            "not a bucket",
            {"object": "bucket", "start_time": "yesterday", "end_time": 1730505600, "results": []},
            {"object": "bucket", "start_time": 1730419200, "end_time": 1730505600},
            {"object": "bucket", "start_time": 1730419200, "end_time": 1730505600, "results": ["x"]},
        ],
    }
    path = tmp_path / "usage.json"
    path.write_text(json.dumps(page))
    assert {location: str(item) for location, item in read_openai_usage(path)} == {
        "usage.json:data[0]": "expected a bucket object, got str",
        "usage.json:data[1]": "bucket start_time: expected Unix seconds, got 'yesterday'",
        "usage.json:data[2]": "bucket has no results list",
        "usage.json:data[3].results[0]": "expected a usage result object, got str",
    }
    path.write_text("{not json")
    with pytest.raises(InvalidInput, match="not a JSON Usage API export"):
        list(read_openai_usage(path))
