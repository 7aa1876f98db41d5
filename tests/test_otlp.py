"""OTLP GenAI spans -> usage events, with spans made by the real OpenTelemetry SDK and encoded
exactly as the OTLP/HTTP exporter encodes them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from fleetledger import Ledger, Settings
from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.usage import parse_event
from fleetledger.ingest.otlp import spans_to_events

START_NS = 1_791_000_000_000_000_000  # 2026-10-03T04:00:00Z
END = datetime(2026, 10, 3, 4, 0, 1, 250_000, tzinfo=UTC)
END_NS = START_NS + 1_250_000_000  # 1.25 s later


def export(
    build: Callable[[TracerProvider], None], resource: dict[str, Any] | None = None
) -> Any:  # ExportTraceServiceRequest
    """Run ``build`` against a real SDK TracerProvider; the finished spans, OTLP-encoded."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def span(
    provider: TracerProvider,
    name: str,
    attributes: dict[str, Any],
    *,
    scope: str = "opentelemetry.instrumentation.openai_v2",
    status: StatusCode | None = None,
    start: int = START_NS,
    end: int = END_NS,
) -> None:
    tracer = provider.get_tracer(scope)
    current = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes, start_time=start)
    if status is not None:
        current.set_status(Status(status))
    current.end(end_time=end)


def otlp_json(request: Any) -> dict[str, Any]:
    """The OTLP JSON form: protobuf JSON mapping, but hex ids and integer enums (OTLP spec)."""
    document = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for item in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in item:
                        item[key] = base64.b64decode(item[key]).hex()
    return document


def only(items: list[tuple[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    location, event = items[0]
    assert not isinstance(event, InvalidEvent), event
    parse_event(event, location=location)  # a valid UsageEvent
    return event


OPENAI_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-AbC123",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 1000,
    "gen_ai.usage.reasoning.output_tokens": 120,
    "gen_ai.conversation.id": "conv_5j66UpCp",
    "gen_ai.agent.name": "triage",
    "openai.response.service_tier": "default",
}


# -- field mapping ------------------------------------------------------------------------------------


def test_openai_chat_span_with_cache_and_reasoning() -> None:
    request = export(lambda p: span(p, "chat gpt-4o", OPENAI_CHAT))
    sdk_span = request.resource_spans[0].scope_spans[0].spans[0]
    trace_id, span_id = sdk_span.trace_id.hex(), sdk_span.span_id.hex()

    event = only(spans_to_events(request.SerializeToString()))

    assert event == {
        "event_id": f"otel-{trace_id}-{span_id}",
        "timestamp": END,
        "provider": "openai",
        "model": "gpt-4o-2024-08-06",
        "input_tokens": 1200,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 0,
        "output_tokens": 300,
        "reasoning_tokens": 120,
        "trace_id": trace_id,
        "span_id": span_id,
        "agent": "triage",
        "operation": "chat",
        "session_id": "conv_5j66UpCp",
        "latency_ms": 1250.0,
        "request_id": "chatcmpl-AbC123",
        "category": "llm_inference",
        "service_tier": "standard",
    }
    assert len(trace_id) == 32 and len(span_id) == 16


def test_otlp_json_hex_ids_give_the_same_events_as_protobuf() -> None:
    request = export(lambda p: span(p, "chat gpt-4o", OPENAI_CHAT))
    from_protobuf = spans_to_events(request.SerializeToString())
    document = otlp_json(request)
    assert len(document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]) == 32  # hex, as OTLP says

    assert spans_to_events(json.dumps(document).encode(), content_type="application/json; charset=utf-8") == (
        from_protobuf
    )
    assert spans_to_events(json.dumps(document)) == from_protobuf
    assert spans_to_events(document) == from_protobuf
    # Some senders use the plain protobuf JSON mapping (base64 ids, enum names): also accepted.
    assert spans_to_events(MessageToDict(request)) == from_protobuf


def test_otlp_json_with_numbers_for_int64_and_legacy_scope_key() -> None:
    request = export(lambda p: span(p, "chat gpt-4o", OPENAI_CHAT))
    document = otlp_json(request)
    resource = document["resourceSpans"][0]
    scope = resource.pop("scopeSpans")[0]
    for attribute in scope["spans"][0]["attributes"]:
        if "intValue" in attribute["value"]:
            attribute["value"]["intValue"] = int(attribute["value"]["intValue"])  # a JSON number
    scope["instrumentationLibrary"] = scope.pop("scope")
    resource["instrumentationLibrarySpans"] = [scope]  # collectors before OTLP 0.19

    assert spans_to_events(document) == spans_to_events(request.SerializeToString())


def test_anthropic_span_input_tokens_include_cache_per_semconv() -> None:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 1000,  # 700 uncached + 200 read + 100 written, as the semconv says
        "gen_ai.usage.cache_read.input_tokens": 200,
        "gen_ai.usage.cache_creation.input_tokens": 100,
        "gen_ai.usage.output_tokens": 100,
    }
    event = only(spans_to_events(export(lambda p: span(p, "chat claude", attributes)).SerializeToString()))
    assert (event["provider"], event["model"]) == ("anthropic", "claude-sonnet-4-5")
    assert (event["input_tokens"], event["cache_read_tokens"], event["cache_write_tokens"]) == (1000, 200, 100)
    assert "tags" not in event


def test_anthropic_raw_exclusive_count_is_detected_and_corrected() -> None:
    attributes = {
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 12,  # Anthropic's raw count: cache excluded
        "gen_ai.usage.cache_read_input_tokens": 3000,  # older underscore spelling
        "gen_ai.usage.cache_creation_input_tokens": 500,
        "gen_ai.usage.output_tokens": 80,
    }
    event = only(spans_to_events(export(lambda p: span(p, "anthropic.chat", attributes)).SerializeToString()))
    assert (event["input_tokens"], event["cache_read_tokens"], event["cache_write_tokens"]) == (3512, 3000, 500)
    assert event["tags"] == {"input_tokens_adjusted": "added_cache"}


def test_legacy_system_and_prompt_completion_token_names() -> None:
    attributes = {
        "gen_ai.system": "gcp.vertex_ai",
        "gen_ai.request.model": "gemini-2.5-flash",
        "gen_ai.usage.prompt_tokens": 640,
        "gen_ai.usage.completion_tokens": 96,
        "gen_ai.usage.reasoning_tokens": 40,
    }
    event = only(spans_to_events(export(lambda p: span(p, "chat", attributes)).SerializeToString()))
    assert event["provider"] == "google"
    assert event["model"] == "gemini-2.5-flash"  # request model when the response model is missing
    assert (event["input_tokens"], event["output_tokens"], event["reasoning_tokens"]) == (640, 96, 40)
    assert "operation" not in event and "request_id" not in event


def test_embeddings_and_tool_spans_get_their_category() -> None:
    def build(provider: TracerProvider) -> None:
        span(
            provider,
            "embeddings text-embedding-3-small",
            {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 5000,
            },
        )
        span(
            provider,
            "execute_tool web_search",
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 50,
                "gen_ai.usage.output_tokens": 5,
            },
        )

    events = [event for _, event in spans_to_events(export(build).SerializeToString())]
    assert [(e["category"], e["operation"], e["output_tokens"]) for e in events] == [
        ("embedding", "embeddings", 0),
        ("tool_use", "execute_tool", 5),
    ]


# -- attribution --------------------------------------------------------------------------------------


def test_resource_attributes_attribute_and_span_attributes_override() -> None:
    resource = {
        "service.name": "billing-agent",
        "service.version": "2.4.1",
        "deployment.environment.name": "prod",
        "fleetledger.department": "finance",
        "fleetledger.cost_center": "CC-1042",
        "fleetledger.team": "payments",
        "fleetledger.tag.region": "eu-west-1",
        "fleetledger.tag.tier": "gold",
    }
    plain = {k: v for k, v in OPENAI_CHAT.items() if k not in ("gen_ai.agent.name", "gen_ai.conversation.id")}

    def build(provider: TracerProvider) -> None:
        span(provider, "chat inherits", plain)
        span(
            provider,
            "chat overrides",
            {
                **plain,
                "fleetledger.team": "fraud",
                "fleetledger.project": "chargebacks",
                "fleetledger.task": "dispute-summary",
                "fleetledger.user": "u-17",
                "fleetledger.operation": "summarize",
                "fleetledger.session_id": "s-9",
                "fleetledger.tag.tier": "platinum",
                "fleetledger.tag.ticket": "T-1",
                "gen_ai.agent.name": "dispute-writer",
            },
        )

    inherited, overridden = (event for _, event in spans_to_events(export(build, resource).SerializeToString()))
    assert {k: inherited.get(k) for k in ("department", "cost_center", "team", "agent", "environment", "version")} == {
        "department": "finance",
        "cost_center": "CC-1042",
        "team": "payments",
        "agent": "billing-agent",  # service.name when no agent is named
        "environment": "prod",
        "version": "2.4.1",
    }
    assert inherited["operation"] == "chat"
    assert inherited["tags"] == {"region": "eu-west-1", "tier": "gold"}
    assert parse_event(inherited).environment == "production"

    assert overridden["department"] == "finance"
    assert (overridden["team"], overridden["project"], overridden["task"], overridden["user"]) == (
        "fraud",
        "chargebacks",
        "dispute-summary",
        "u-17",
    )
    assert overridden["agent"] == "dispute-writer"  # the span's gen_ai.agent.name beats service.name
    assert overridden["operation"] == "summarize"  # explicit fleetledger.* beats gen_ai.operation.name
    assert overridden["session_id"] == "s-9"
    assert overridden["tags"] == {"region": "eu-west-1", "tier": "platinum", "ticket": "T-1"}


def test_attributes_of_earlier_releases_are_still_read_and_the_new_names_win() -> None:
    """Exporters configured for ``tokenledger`` (the first name of the project) keep attributing."""
    resource = {"tokenledger.department": "finance", "tokenledger.tag.region": "eu-west-1"}
    plain = {k: v for k, v in OPENAI_CHAT.items() if k not in ("gen_ai.agent.name", "gen_ai.conversation.id")}

    def build(provider: TracerProvider) -> None:
        span(provider, "old names only", {**plain, "tokenledger.project": "search", "tokenledger.tag.tier": "gold"})
        span(
            provider,
            "both names",
            {
                **plain,
                "tokenledger.project": "old",
                "fleetledger.project": "new",
                "tokenledger.tag.tier": "old",
                "fleetledger.tag.tier": "new",
            },
        )

    old, both = (event for _, event in spans_to_events(export(build, resource).SerializeToString()))
    assert (old["department"], old["project"], old["tags"]) == (
        "finance",
        "search",
        {"region": "eu-west-1", "tier": "gold"},
    )
    assert (both["project"], both["tags"]["tier"]) == ("new", "new")


def test_legacy_deployment_environment_and_unknown_service_default() -> None:
    resource = {"deployment.environment": "staging"}  # no service.name: the SDK sets unknown_service
    event = only(spans_to_events(export(lambda p: span(p, "chat", dict(OPENAI_CHAT)), resource).SerializeToString()))
    assert event["environment"] == "staging"
    assert event["agent"] == "triage"
    plain = {k: v for k, v in OPENAI_CHAT.items() if k != "gen_ai.agent.name"}
    event = only(spans_to_events(export(lambda p: span(p, "chat", plain), resource).SerializeToString()))
    assert "agent" not in event


def test_custom_mapping_has_priority_over_the_defaults() -> None:
    resource = {"service.name": "svc", "app.team": "search", "fleetledger.team": "ignored"}
    attributes = {
        **OPENAI_CHAT,
        "enduser.id": "alice@example.com",
        "app.feature": "autocomplete",
        "fleetledger.user": "ignored-too",
    }
    mapping = {"app.team": "team", "enduser.id": "user", "app.feature": "tag.feature", "app.cc": "cost_center"}
    event = only(
        spans_to_events(export(lambda p: span(p, "chat", attributes), resource).SerializeToString(), mapping=mapping)
    )
    assert event["team"] == "search"  # from the resource, through the mapping
    assert event["user"] == "alice@example.com"
    assert event["tags"] == {"feature": "autocomplete"}
    assert "cost_center" not in event

    with pytest.raises(InvalidInput, match="must be one of"):
        spans_to_events(b"", mapping={"app.team": "teams"})


# -- what is skipped, what is rejected ----------------------------------------------------------------


def test_non_genai_and_agent_rollup_spans_are_skipped() -> None:
    def build(provider: TracerProvider) -> None:
        span(provider, "GET /v1/orders", {"http.request.method": "GET", "http.response.status_code": 200})
        span(
            provider, "chat gpt-4o", {**OPENAI_CHAT, "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10}
        )
        span(
            provider,
            "invoke_agent triage",
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 5000,  # the sum of its chat spans
                "gen_ai.usage.output_tokens": 900,
            },
            scope="openai.agents",
        )

    request = export(build)
    items = spans_to_events(request.SerializeToString())
    assert [event["operation"] for _, event in items] == ["chat"]

    with_agents = spans_to_events(request.SerializeToString(), count_agent_spans=True)
    assert [event["operation"] for _, event in with_agents] == ["chat", "invoke_agent"]
    assert with_agents[1][0] == "resourceSpans[0].scopeSpans[1].spans[0]"


def test_genai_span_without_model_is_rejected_with_its_location() -> None:
    def build(provider: TracerProvider) -> None:
        span(provider, "chat ok", dict(OPENAI_CHAT))
        span(provider, "GET /health", {"http.request.method": "GET"}, scope="httpx")
        span(
            provider,
            "chat ???",
            {"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2},
            scope="httpx",
        )
        span(provider, "chat negative", {**OPENAI_CHAT, "gen_ai.usage.output_tokens": -3}, scope="httpx")

    items = spans_to_events(export(build).SerializeToString())
    assert [location for location, _ in items] == [
        "resourceSpans[0].scopeSpans[0].spans[0]",
        "resourceSpans[0].scopeSpans[1].spans[1]",
        "resourceSpans[0].scopeSpans[1].spans[2]",
    ]
    assert isinstance(items[0][1], dict)
    no_model, negative = items[1][1], items[2][1]
    assert isinstance(no_model, InvalidEvent) and isinstance(negative, InvalidEvent)
    assert no_model.location == "resourceSpans[0].scopeSpans[1].spans[1]"
    assert "model" in no_model.message and "gen_ai.request.model" in no_model.message
    assert negative.message == "gen_ai.usage.output_tokens: must be between 0 and 1000000000000, got -3"


def test_inconsistent_counts_are_rejected_by_validation() -> None:
    attributes = {**OPENAI_CHAT, "gen_ai.usage.reasoning.output_tokens": 999}
    [(location, item)] = spans_to_events(export(lambda p: span(p, "chat", attributes)).SerializeToString())
    assert isinstance(item, InvalidEvent)
    assert item.location == location == "resourceSpans[0].scopeSpans[0].spans[0]"
    assert "reasoning_tokens (999) exceed output_tokens (300)" in item.message


def test_error_status_and_error_type() -> None:
    def build(provider: TracerProvider) -> None:
        span(provider, "chat failed", dict(OPENAI_CHAT), status=StatusCode.ERROR)
        span(provider, "chat timeout", {**OPENAI_CHAT, "error.type": "timeout"})
        span(provider, "chat fine", dict(OPENAI_CHAT), status=StatusCode.OK)

    statuses = [event.get("status", "success") for _, event in spans_to_events(export(build).SerializeToString())]
    assert statuses == ["error", "error", "success"]


@pytest.mark.parametrize(
    ("payload", "content_type", "message"),
    [
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "application/x-protobuf", "cannot be decoded"),
        (b"\x0a\x05\x12\x03\x0a\x01", "application/x-protobuf", "cannot be decoded"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"\xff\xfe", "application/json", "not valid UTF-8"),
        (b"[1, 2]", "application/json", "must be an ExportTraceServiceRequest object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"endTimeUnixNano": "soon"}]}]}]}',
            "application/json",
            "not a",
        ),
        (b'{"resourceSpans": "nope"}', "application/json", "not a valid"),
        (b"", "text/plain", "unsupported content type"),
    ],
)
def test_malformed_payloads_raise_invalid_input(payload: bytes, content_type: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        spans_to_events(payload, content_type=content_type)


def test_genai_span_with_bad_ids_is_rejected() -> None:
    request = export(lambda p: span(p, "chat", dict(OPENAI_CHAT)))
    document = otlp_json(request)
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = ""
    [(location, item)] = spans_to_events(document)
    assert isinstance(item, InvalidEvent)
    assert "8-byte spanId" in item.message


def test_implausible_span_times() -> None:
    two_days = 2 * 86_400 * 10**9
    event = only(
        spans_to_events(
            export(lambda p: span(p, "chat", dict(OPENAI_CHAT), end=START_NS + two_days)).SerializeToString()
        )
    )
    assert "latency_ms" not in event  # a stuck span keeps its cost; its latency is dropped

    document = otlp_json(export(lambda p: span(p, "chat", dict(OPENAI_CHAT))))
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"] = "18446744073709551615"
    [(_, item)] = spans_to_events(document)
    assert isinstance(item, InvalidEvent)
    assert "is outside 2015-01-01 .. 2100-01-01" in item.message  # uint64 max: year 2554


def test_empty_export_has_no_events() -> None:
    assert spans_to_events(b"") == []
    assert spans_to_events({"resourceSpans": []}) == []


# -- through the ledger -------------------------------------------------------------------------------


def test_ingest_prices_spans_and_reexport_is_duplicates_not_charges(tmp_path) -> None:
    def build(provider: TracerProvider) -> None:
        span(provider, "chat gpt-4o", {**OPENAI_CHAT, "gen_ai.response.model": "gpt-4o"})
        span(
            provider,
            "chat claude",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.cache_read.input_tokens": 200,
                "gen_ai.usage.cache_creation.input_tokens": 100,
                "gen_ai.usage.output_tokens": 100,
            },
        )
        span(provider, "chat ???", {"gen_ai.usage.input_tokens": 1})
        span(provider, "SELECT orders", {"db.system.name": "postgresql"})

    request = export(build, {"service.name": "support-bot", "fleetledger.department": "support"})
    body = request.SerializeToString()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'o.db'}", spool_dir=tmp_path / "s")
    with Ledger(settings=settings, background=False) as ledger:
        first = ledger.ingest(spans_to_events(body), source="otlp")
        assert (first.accepted, first.duplicates, first.rejected) == (2, 0, 1)
        assert first.rejections[0].location == "resourceSpans[0].scopeSpans[0].spans[2]"
        # gpt-4o: 200 x $2.50 + 1000 cached x $1.25 + 300 x $10 per million = $0.00475
        # claude-sonnet-4-5: 700 x $3 + 200 x $0.30 + 100 x $3.75 + 100 x $15 per million = $0.004035
        assert first.cost_nanos == 4_750_000 + 4_035_000

        sdk_span = request.resource_spans[0].scope_spans[0].spans[0]
        stored = ledger.event(f"otel-{sdk_span.trace_id.hex()}-{sdk_span.span_id.hex()}")
        assert stored is not None
        assert Decimal(stored["cost_usd"]) == Decimal("0.00475")
        assert (stored["department"], stored["agent"]) == ("support", "triage")

        again = ledger.ingest(spans_to_events(otlp_json(request)), source="otlp")  # re-exported as JSON
        assert (again.accepted, again.duplicates, again.rejected, again.cost_nanos) == (0, 2, 1, 0)
