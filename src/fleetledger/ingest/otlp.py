"""OpenTelemetry GenAI spans -> usage events.

:func:`spans_to_events` reads one OTLP/HTTP trace export (``ExportTraceServiceRequest``), as
protobuf or as OTLP JSON, and turns every GenAI span that reports token usage into an event
mapping for :meth:`fleetledger.Ledger.ingest`. Spans without token usage (HTTP, database, tool
spans...) are skipped silently: a trace is mostly not about money.

Which spans count
    A span is a GenAI usage span when it carries ``gen_ai.usage.input_tokens`` or
    ``gen_ai.usage.output_tokens`` (or the pre-1.27 ``gen_ai.usage.prompt_tokens`` /
    ``gen_ai.usage.completion_tokens``). Agent-level spans (``gen_ai.operation.name`` of
    ``invoke_agent``, ``create_agent`` or ``invoke_workflow``) are skipped by default even when they
    carry usage: frameworks that emit them (OpenAI Agents SDK, Koog, Strands, Sentry...) put the
    *sum* of the inference calls beneath them there, and those calls have their own ``chat`` spans,
    so counting both would charge twice. Parent and children usually arrive in different export
    batches, so this cannot be decided by looking for the children. Pass
    ``count_agent_spans=True`` when your agents run remotely (Bedrock Agents, Azure AI Agents...)
    and the agent span is the only record of the usage.

Token convention
    The GenAI semantic conventions say ``gen_ai.usage.input_tokens`` includes cached tokens, for
    every provider. For Anthropic, whose API reports ``input_tokens`` *without* cache reads and
    writes, the Anthropic semconv page says the instrumentation MUST add
    ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` to it (OpenLLMetry does). So
    ``input_tokens`` is taken as the total, as fleetledger's own convention, for every provider,
    Anthropic included: we follow the specification rather than guess per instrumentation.
    One safety net: when the cache parts *exceed* ``input_tokens`` the span cannot follow the
    convention, and the only consistent reading is Anthropic's raw count (an instrumentation that
    did not add the cache back). Then the cache parts are added to ``input_tokens`` and the event
    is tagged ``input_tokens_adjusted=added_cache`` so the correction stays visible. Below that
    threshold an exclusive count cannot be told apart from an inclusive one; such an
    instrumentation undercharges the uncached part and should be fixed (or upgraded).
    ``gen_ai.usage.output_tokens`` includes reasoning tokens (as OpenAI reports them).

    Spellings accepted, current semconv first: ``gen_ai.usage.cache_read.input_tokens`` /
    ``gen_ai.usage.cache_read_input_tokens`` / ``gen_ai.usage.input_tokens.cached``;
    ``gen_ai.usage.cache_creation.input_tokens`` / ``gen_ai.usage.cache_creation_input_tokens`` /
    ``gen_ai.usage.input_tokens.cache_write``; ``gen_ai.usage.reasoning.output_tokens`` /
    ``gen_ai.usage.reasoning_tokens`` / ``gen_ai.usage.output_tokens.reasoning``.

Attribution, highest priority first
    1. the caller's ``mapping`` {OTel attribute -> event field}, looked up on the span, then the
       resource (e.g. ``{"app.team": "team", "enduser.id": "user"}``; a target ``tag.<name>``
       sets a tag);
    2. ``fleetledger.<field>`` on the span, then on the resource (``fleetledger.department``,
       ``fleetledger.cost_center``, ``fleetledger.project``, ``fleetledger.team``,
       ``fleetledger.user``, ``fleetledger.agent``, ``fleetledger.task``,
       ``fleetledger.environment``, ``fleetledger.version``, ``fleetledger.operation``,
       ``fleetledger.session_id``); ``fleetledger.tag.<name>`` sets tag ``<name>`` (span wins);
       the ``tokenledger.*`` names of earlier releases are still read, after the new ones;
    3. the semantic conventions on the span: ``gen_ai.agent.name`` -> agent,
       ``gen_ai.conversation.id`` / ``session.id`` -> session_id, ``gen_ai.operation.name`` ->
       operation, ``user.id`` / ``enduser.id`` -> user;
    4. the resource: ``service.name`` -> agent (not the SDK's ``unknown_service`` default),
       ``deployment.environment.name`` / ``deployment.environment`` -> environment,
       ``service.version`` -> version.

    Explicit ``fleetledger.*`` attributes beat the conventions at any level, because a generic
    ``gen_ai.operation.name`` of ``chat`` must not hide an operation set for the whole service.

Other fields
    provider from ``gen_ai.provider.name`` or the older ``gen_ai.system`` (normalised:
    ``gcp.vertex_ai`` -> google, ``aws.bedrock`` -> aws...); model from ``gen_ai.response.model``,
    else ``gen_ai.request.model``; ``request_id`` from ``gen_ai.response.id``; ``trace_id`` and
    ``span_id`` in hex; ``timestamp`` is the span's end (UTC) and ``latency_ms`` its duration;
    ``status`` is error when the span status is ERROR or ``error.type`` is set; ``service_tier``
    from ``openai.response.service_tier`` (``default`` -> standard, ``flex``, ``priority``...);
    category ``embedding`` for ``embeddings`` spans and ``tool_use`` for ``execute_tool`` spans.

Idempotency
    ``event_id`` is ``otel-<trace id>-<span id>``: a span exported twice (collector retries,
    replays) is a duplicate, never a second charge.

Wire formats
    Protobuf bodies are parsed with ``opentelemetry-proto``. OTLP JSON follows the protobuf JSON
    mapping except that ``traceId``/``spanId``/``parentSpanId`` are hex, not base64 (OTLP spec);
    both are accepted (told apart by length). 64-bit integers may be JSON strings or numbers.
    A payload that is neither raises :class:`~fleetledger.core.errors.InvalidInput`; a GenAI span that
    cannot become a valid event (no model, negative tokens...) becomes an
    :class:`~fleetledger.core.errors.InvalidEvent` whose location is e.g.
    ``resourceSpans[0].scopeSpans[1].spans[3]``, and the other spans are kept.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.usage import DIMENSIONS, MAX_UNITS, normalize_provider, parse_event

__all__ = ["spans_to_events", "ATTRIBUTION_FIELDS"]

#: Event fields a ``mapping`` (and ``fleetledger.<field>`` attributes) may set.
ATTRIBUTION_FIELDS = tuple(
    d for d in DIMENSIONS if d not in ("provider", "model", "service_tier", "category", "status")
)

_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens.cached",
)
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.input_tokens.cache_write",
)
_REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.output_tokens.reasoning",
)
_USAGE_KEYS = frozenset((*_INPUT, *_OUTPUT))
_MAX_LATENCY_MS = 86_400_000  # UsageEvent's bound
_AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent", "invoke_workflow"})
_CATEGORIES = {"embeddings": "embedding", "execute_tool": "tool_use"}
_TIERS = {"default": "standard", "standard": "standard", "batch": "batch", "flex": "flex", "priority": "priority"}

#: Semantic-convention fallbacks: (span attributes, resource attributes) per field.
_SEMCONV: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "agent": (("gen_ai.agent.name",), ("service.name",)),
    "session_id": (("gen_ai.conversation.id", "session.id"), ()),
    "operation": (("gen_ai.operation.name",), ()),
    "user": (("user.id", "enduser.id"), ()),
    "environment": ((), ("deployment.environment.name", "deployment.environment")),
    "version": ((), ("service.version",)),
}
_PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
_JSON_TYPES = frozenset({"application/json"})


class _Reject(Exception):
    """A GenAI span that cannot become an event; the message says why."""


# -- parsing the payload ----------------------------------------------------------------------------


def _parse(payload: bytes | bytearray | str | Mapping[str, Any], content_type: str) -> ExportTraceServiceRequest:
    if isinstance(payload, Mapping):
        return _parse_json(payload)
    media_type = content_type.split(";", 1)[0].strip().lower()
    if isinstance(payload, str) or media_type in _JSON_TYPES:
        if isinstance(payload, bytes | bytearray):
            try:
                payload = bytes(payload).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"OTLP JSON payload is not valid UTF-8 (byte {exc.start})") from None
        try:
            document = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"OTLP JSON payload is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise InvalidInput(
                f"OTLP JSON payload must be an ExportTraceServiceRequest object, got {type(document).__name__}"
            )
        return _parse_json(document)
    if media_type not in _PROTOBUF_TYPES:
        raise InvalidInput(
            f"unsupported content type {content_type!r}: send OTLP traces as application/x-protobuf or application/json"
        )
    if not isinstance(payload, bytes | bytearray):
        raise InvalidInput(f"OTLP protobuf payload must be bytes, got {type(payload).__name__}")
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(bytes(payload))
    except DecodeError as exc:
        raise InvalidInput(
            f"OTLP protobuf payload cannot be decoded as an ExportTraceServiceRequest ({exc}); "
            "send the body the OTLP/HTTP exporter produces, or OTLP JSON with Content-Type application/json"
        ) from None
    return request


def _id_to_base64(value: Any, size: int) -> Any:
    """OTLP JSON ids are hex; the protobuf JSON mapping (and ParseDict) expects base64."""
    if isinstance(value, str) and len(value) == 2 * size:
        try:
            return base64.b64encode(bytes.fromhex(value)).decode("ascii")
        except ValueError:
            pass  # not hex: leave it for ParseDict to read as base64 (or reject)
    return value


def _fix_span(span: Any) -> Any:
    if not isinstance(span, dict):
        return span
    span = dict(span)
    for key, size in (("traceId", 16), ("trace_id", 16), ("spanId", 8), ("span_id", 8)):
        if key in span:
            span[key] = _id_to_base64(span[key], size)
    for key in ("parentSpanId", "parent_span_id"):
        if key in span:
            span[key] = _id_to_base64(span[key], 8)
    links = span.get("links")
    if isinstance(links, list):
        span["links"] = [_fix_span(link) for link in links]
    return span


def _json_to_proto_mapping(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an OTLP JSON request with hex ids turned into base64, the caller's dict untouched."""
    out = dict(document)
    resource_spans = out.get("resourceSpans", out.get("resource_spans"))
    if not isinstance(resource_spans, list):
        return out
    fixed_resources = []
    for resource in resource_spans:
        if not isinstance(resource, dict):
            fixed_resources.append(resource)
            continue
        resource = dict(resource)
        # Collectors before OTLP 0.19 sent "instrumentationLibrarySpans"; the proto field is gone.
        if "scopeSpans" not in resource and "instrumentationLibrarySpans" in resource:
            legacy = resource.pop("instrumentationLibrarySpans")
            renamed = []
            for scope in legacy if isinstance(legacy, list) else []:
                if isinstance(scope, dict):
                    scope = dict(scope)
                    scope["scope"] = scope.pop("instrumentationLibrary", {})
                renamed.append(scope)
            resource["scopeSpans"] = renamed
        for scopes_key in ("scopeSpans", "scope_spans"):
            scopes = resource.get(scopes_key)
            if isinstance(scopes, list):
                resource[scopes_key] = [
                    {**scope, "spans": [_fix_span(s) for s in scope["spans"]]}
                    if isinstance(scope, dict) and isinstance(scope.get("spans"), list)
                    else scope
                    for scope in scopes
                ]
        fixed_resources.append(resource)
    out["resourceSpans" if "resourceSpans" in out else "resource_spans"] = fixed_resources
    return out


def _parse_json(document: Mapping[str, Any]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        # OTLP receivers must ignore unknown fields (forward compatibility), so we do too.
        ParseDict(_json_to_proto_mapping(document), request, ignore_unknown_fields=True)
    except (ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise InvalidInput(f"OTLP JSON payload is not a valid ExportTraceServiceRequest: {exc}") from None
    return request


# -- reading attributes -----------------------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    return getattr(value, kind)


def _attributes(attributes: Sequence[KeyValue]) -> dict[str, Any]:
    # Duplicate keys are invalid OTLP; the last one wins, as in most backends.
    return {item.key: _value(item.value) for item in attributes}


def _text(value: Any) -> str | None:
    """An attribute as attribution text: scalars as strings, lists joined with commas."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        parts = [text for item in value if (text := _text(item))]
        return ",".join(parts) or None
    if isinstance(value, bytes | dict):
        return None
    text = str(value).strip()
    return text or None


def _first_text(attributes: Mapping[str, Any], names: Sequence[str]) -> str | None:
    for name in names:
        if (text := _text(attributes.get(name))) is not None:
            return text
    return None


def _count(attributes: Mapping[str, Any], names: Sequence[str]) -> int | None:
    """A token count from the first attribute present; int, integral double or digit string."""
    for name in names:
        if name not in attributes:
            continue
        value = attributes[name]
        if isinstance(value, bool):
            raise _Reject(f"{name}: expected a token count, got a boolean")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                pass
        if not isinstance(value, int):
            raise _Reject(f"{name}: expected a token count, got {value!r}")
        if not 0 <= value <= MAX_UNITS:
            raise _Reject(f"{name}: must be between 0 and {MAX_UNITS}, got {value}")
        return value
    return None


def _check_mapping(mapping: Mapping[str, str] | None) -> dict[str, str]:
    if not mapping:
        return {}
    checked: dict[str, str] = {}
    for attribute, target in mapping.items():
        field = str(target).strip()
        if field.startswith("tags."):
            field = "tag." + field[5:]
        if field not in ATTRIBUTION_FIELDS and not (field.startswith("tag.") and len(field) > 4):
            raise InvalidInput(
                f"mapping: {attribute!r} -> {target!r}: the target must be one of "
                f"{', '.join(ATTRIBUTION_FIELDS)} or tag.<name>"
            )
        checked[str(attribute)] = field
    return checked


# -- one span -------------------------------------------------------------------------------------


def _nanos_to_datetime(nanos: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanos // 1000)


def _attribution(
    span_attrs: Mapping[str, Any], resource_attrs: Mapping[str, Any], mapping: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    fields: dict[str, str] = {}
    tags: dict[str, str] = {}
    for attrs in (resource_attrs, span_attrs):  # span tags override resource tags
        for key, value in attrs.items():
            # ``tokenledger.*`` is the prefix of earlier releases, still read; the new one wins.
            for prefix in ("tokenledger.tag.", "fleetledger.tag."):
                if key.startswith(prefix) and len(key) > len(prefix) and (text := _text(value)) is not None:
                    if prefix == "fleetledger.tag." or key[len(prefix) :] not in tags:
                        tags[key[len(prefix) :]] = text
    for attribute, target in mapping.items():
        text = _text(span_attrs.get(attribute))
        if text is None:
            text = _text(resource_attrs.get(attribute))
        if text is None:
            continue
        if target.startswith("tag."):
            tags[target[4:]] = text
        else:
            fields.setdefault(target, text)  # the first mapping naming a field wins
    for field in ATTRIBUTION_FIELDS:
        if field in fields:
            continue
        span_names, resource_names = _SEMCONV.get(field, ((), ()))
        text = (
            _text(span_attrs.get(f"fleetledger.{field}"))
            or _text(resource_attrs.get(f"fleetledger.{field}"))
            or _text(span_attrs.get(f"tokenledger.{field}"))
            or _text(resource_attrs.get(f"tokenledger.{field}"))
            or _first_text(span_attrs, span_names)
        )
        if text is None:
            text = _first_text(resource_attrs, resource_names)
            if field == "agent" and text is not None and text.startswith("unknown_service"):
                text = None  # the SDK's default when OTEL_SERVICE_NAME is unset: not an agent name
        if text is not None:
            fields[field] = text
    return fields, tags


def _span_event(
    span: Span, attrs: Mapping[str, Any], resource_attrs: Mapping[str, Any], mapping: Mapping[str, str]
) -> dict[str, Any]:
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        raise _Reject(
            f"span ids must be a 16-byte traceId and an 8-byte spanId (got {trace_id!r}, {span_id!r}); "
            "without them the span cannot be deduplicated"
        )
    end_ns = span.end_time_unix_nano or span.start_time_unix_nano
    if not end_ns:
        raise _Reject("span has no end or start time")

    input_tokens = _count(attrs, _INPUT) or 0
    output_tokens = _count(attrs, _OUTPUT) or 0
    cache_read = _count(attrs, _CACHE_READ) or 0
    cache_write = _count(attrs, _CACHE_WRITE) or 0
    reasoning = _count(attrs, _REASONING) or 0

    provider = _first_text(attrs, ("gen_ai.provider.name", "gen_ai.system"))
    fields, tags = _attribution(attrs, resource_attrs, mapping)
    if cache_read + cache_write > input_tokens:
        # Impossible under the semconv (input includes cache): Anthropic's raw, cache-exclusive count.
        input_tokens += cache_read + cache_write
        tags.setdefault("input_tokens_adjusted", "added_cache")

    event: dict[str, Any] = {
        "event_id": f"otel-{trace_id}-{span_id}",
        "timestamp": _nanos_to_datetime(end_ns),
        "provider": normalize_provider(provider) if provider else None,
        "model": _first_text(attrs, ("gen_ai.response.model", "gen_ai.request.model")),
        "input_tokens": input_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": output_tokens,
        "reasoning_tokens": reasoning,
        "trace_id": trace_id,
        "span_id": span_id,
        **fields,
    }
    if span.start_time_unix_nano and span.end_time_unix_nano >= span.start_time_unix_nano:
        latency_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1_000_000
        if latency_ms <= _MAX_LATENCY_MS:  # a day-long span keeps its cost, not its (implausible) latency
            event["latency_ms"] = latency_ms
    if (request_id := _text(attrs.get("gen_ai.response.id"))) is not None:
        event["request_id"] = request_id
    operation_name = _text(attrs.get("gen_ai.operation.name"))
    event["category"] = _CATEGORIES.get(operation_name or "", "llm_inference")
    if span.status.code == Status.STATUS_CODE_ERROR or _text(attrs.get("error.type")) is not None:
        event["status"] = "error"
    tier = _first_text(attrs, ("openai.response.service_tier", "gen_ai.openai.response.service_tier"))
    if tier is not None and tier.lower() in _TIERS:
        event["service_tier"] = _TIERS[tier.lower()]
    if tags:
        event["tags"] = tags
    if event["model"] is None:
        raise _Reject("model: the span has neither gen_ai.response.model nor gen_ai.request.model")
    return {key: value for key, value in event.items() if value is not None}


# -- public ----------------------------------------------------------------------------------------


def spans_to_events(
    payload: bytes | str | Mapping[str, Any],
    *,
    content_type: str = "application/x-protobuf",
    mapping: Mapping[str, str] | None = None,
    count_agent_spans: bool = False,
) -> list[tuple[str, dict[str, Any] | InvalidEvent]]:
    """Usage events from one OTLP trace export, as ``(location, event mapping | InvalidEvent)`` pairs.

    ``payload`` is the request body (protobuf bytes, or OTLP JSON as bytes/str/dict);
    ``content_type`` is the request's Content-Type (a dict or str is always JSON). ``mapping``
    maps further OTel attributes to event fields, with priority over the defaults. Only GenAI
    spans with token usage yield an item; see the module docstring for every rule.
    Raises :class:`~fleetledger.core.errors.InvalidInput` when the payload cannot be parsed at all.
    """
    checked_mapping = _check_mapping(mapping)
    request = _parse(payload, content_type)
    items: list[tuple[str, dict[str, Any] | InvalidEvent]] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource_attrs: dict[str, Any] | None = None
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for n, span in enumerate(scope_spans.spans):
                attrs = _attributes(span.attributes)
                if _USAGE_KEYS.isdisjoint(attrs):
                    continue
                if not count_agent_spans and _text(attrs.get("gen_ai.operation.name")) in _AGENT_OPERATIONS:
                    continue
                if resource_attrs is None:
                    resource_attrs = _attributes(resource_spans.resource.attributes)
                location = f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                try:
                    event = _span_event(span, attrs, resource_attrs, checked_mapping)
                    parse_event(event, location=location)  # reject here, with the span's location
                except _Reject as exc:
                    items.append((location, InvalidEvent(str(exc), location=location)))
                except InvalidEvent as exc:
                    items.append((location, exc))
                else:
                    items.append((location, event))
    return items
