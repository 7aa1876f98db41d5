"""The usage event: the one input format every part of fleetledger accepts.

JSONL files, CSV files, the SDK, the HTTP API, the OpenTelemetry receiver and the gateway all turn
what they receive into a :class:`UsageEvent` and hand it to the ledger.

Token convention (one for every provider, the genai-prices convention):

* ``input_tokens`` counts **every** input token, cache reads and cache writes included.
  Anthropic reports ``input_tokens`` *without* cache; the Anthropic extractor adds them back.
* ``cache_read_tokens`` and ``cache_write_tokens`` are the parts of ``input_tokens`` read from or
  written to the provider's prompt cache; ``cache_write_1h_tokens`` is the part of the writes made
  with a one-hour TTL (Anthropic), the rest being five-minute writes.
* ``output_tokens`` counts every output token, reasoning included; ``reasoning_tokens`` is the part
  of ``output_tokens`` spent thinking (OpenAI ``reasoning_tokens``, Gemini ``thoughtsTokenCount``).
* Audio, image and tool units follow the genai-prices usage keys (``input_audio_tokens``,
  ``web_searches``...); audio/image tokens are parts of ``input_tokens``/``output_tokens`` too.

So the uncached, plain-text input billed at the base rate is
``input_tokens - cache_read_tokens - cache_write_tokens`` (and minus audio/image parts).

``event_id`` is the idempotency key. When it is absent, :meth:`UsageEvent.content_id` derives one
from the event's content, so ingesting the same file twice changes nothing; the SDK instead
generates a random id for each call (two identical calls are two charges).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleetledger.core.errors import InvalidEvent

__all__ = [
    "UsageEvent",
    "Category",
    "Status",
    "ServiceTier",
    "DIMENSIONS",
    "TOKEN_FIELDS",
    "EXTRA_UNIT_FIELDS",
    "parse_event",
    "normalize_provider",
]

#: Largest count accepted for any unit in one event. Daily aggregates from provider exports can be
#: large, but a trillion tokens in one line is a bug upstream, not usage.
MAX_UNITS = 10**12
#: Largest ``cost_usd`` accepted for one line item.
MAX_COST_USD = Decimal(10**9)
_EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class Category(StrEnum):
    llm_inference = "llm_inference"
    embedding = "embedding"
    tool_use = "tool_use"
    infrastructure = "infrastructure"
    storage = "storage"
    other = "other"


class Status(StrEnum):
    success = "success"
    error = "error"


class ServiceTier(StrEnum):
    standard = "standard"
    batch = "batch"
    flex = "flex"
    priority = "priority"


#: Attribution dimensions: what cost can be grouped and filtered by.
DIMENSIONS = (
    "provider",
    "model",
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
    "service_tier",
    "category",
    "status",
)
#: The token counts every event carries (0 when not reported).
TOKEN_FIELDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
#: Further priced units (genai-prices usage keys), kept when reported.
EXTRA_UNIT_FIELDS = (
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "cache_audio_read_tokens",
    "input_image_tokens",
    "output_image_tokens",
    "input_tool_tokens",
    "web_searches",
    "code_executions",
    "rerank_searches",
    "input_characters",
    "audio_seconds",
    "input_document_pages",
)

PROVIDER_ALIASES = {
    "gemini": "google",
    "google-gla": "google",
    "google-vertex": "google",
    "vertex": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "bedrock": "aws",
    "aws-bedrock": "aws",
    "aws_bedrock": "aws",
    "aws.bedrock": "aws",
    "azure-openai": "azure",
    "azure_openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.openai": "azure",
    "xai": "x-ai",
    "grok": "x-ai",
    "mistralai": "mistral",
    "mistral_ai": "mistral",
    "claude": "anthropic",
    "open-ai": "openai",
    "hosted_vllm": "vllm",
    "hosted-vllm": "vllm",
}
_ENVIRONMENT_ALIASES = {
    "prod": "production",
    "prd": "production",
    "live": "production",
    "stage": "staging",
    "stg": "staging",
    "preprod": "staging",
    "dev": "development",
    "develop": "development",
    "local": "development",
}

_Count = Annotated[int, Field(ge=0, le=MAX_UNITS, strict=False)]
_Dim = Annotated[str | None, Field(default=None, max_length=256)]
_STRING_FIELDS = frozenset(
    {
        "event_id",
        "provider",
        "model",
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
    }
)


def normalize_provider(provider: str) -> str:
    key = provider.strip().lower()
    return PROVIDER_ALIASES.get(key, key)


class UsageEvent(BaseModel):
    """One metered LLM call (or one non-token line item when ``cost_usd`` is set)."""

    model_config = ConfigDict(extra="forbid", frozen=False, str_strip_whitespace=True, use_enum_values=True)

    event_id: Annotated[str | None, Field(default=None, min_length=1, max_length=128)]
    timestamp: datetime
    provider: _Dim
    model: _Dim

    input_tokens: _Count = 0
    cache_read_tokens: _Count = 0
    cache_write_tokens: _Count = 0
    output_tokens: _Count = 0
    reasoning_tokens: _Count = 0

    cache_write_1h_tokens: _Count | None = None
    input_audio_tokens: _Count | None = None
    output_audio_tokens: _Count | None = None
    cache_audio_read_tokens: _Count | None = None
    input_image_tokens: _Count | None = None
    output_image_tokens: _Count | None = None
    input_tool_tokens: _Count | None = None
    web_searches: _Count | None = None
    code_executions: _Count | None = None
    rerank_searches: _Count | None = None
    input_characters: _Count | None = None
    audio_seconds: _Count | None = None
    input_document_pages: _Count | None = None

    department: _Dim
    cost_center: _Dim
    project: _Dim
    team: _Dim
    user: _Dim
    agent: _Dim
    task: _Dim
    environment: _Dim
    version: _Dim
    operation: _Dim
    session_id: _Dim
    service_tier: ServiceTier = "standard"  # type: ignore[assignment]  # stored as the plain value
    tags: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=512)]],
        Field(default_factory=dict, max_length=64),
    ]

    latency_ms: Annotated[float | None, Field(default=None, ge=0, le=86_400_000, allow_inf_nan=False)]
    status: Status = "success"  # type: ignore[assignment]
    request_id: _Dim
    trace_id: _Dim
    span_id: _Dim
    prompt_hash: _Dim
    category: Category = "llm_inference"  # type: ignore[assignment]
    cost_usd: Annotated[Decimal | None, Field(default=None, ge=0, le=MAX_COST_USD, allow_inf_nan=False)]

    @field_validator("timestamp")
    @classmethod
    def _utc_timestamp(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp needs a time zone, e.g. 2026-01-31T12:00:00Z or +02:00")
        value = value.astimezone(UTC)
        if not _EARLIEST <= value < _LATEST:
            raise ValueError(f"timestamp {value.isoformat()} is outside 2015-01-01 .. 2100-01-01")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> UsageEvent:
        # One Python validator per event, not one per field: validation is on the ingest hot path.
        # Blank strings are absent attribution, not a department called "".
        for name in _STRING_FIELDS:
            value = getattr(self, name)
            if value is not None and not value:
                object.__setattr__(self, name, None)
        if self.provider:
            object.__setattr__(self, "provider", normalize_provider(self.provider))
        if self.environment:
            lowered = self.environment.lower()
            object.__setattr__(self, "environment", _ENVIRONMENT_ALIASES.get(lowered, lowered))
        problems = []
        if self.cost_usd is None:
            if not self.model:
                problems.append("model: required (the model that served the call)")
        else:
            if self.category in ("llm_inference", "embedding"):
                problems.append(
                    "cost_usd: only for line items not priced from tokens; set category to "
                    "infrastructure, storage, tool_use or other, or send token counts instead"
                )
            if self.input_tokens or self.output_tokens:
                problems.append("cost_usd: a line item with cost_usd cannot also carry token counts")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            problems.append(
                f"cache_read_tokens + cache_write_tokens ({self.cache_read_tokens} + "
                f"{self.cache_write_tokens}) exceed input_tokens ({self.input_tokens}); input_tokens "
                "counts every input token, cached ones included"
            )
        if self.reasoning_tokens > self.output_tokens:
            problems.append(
                f"reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens ({self.output_tokens}); "
                "output_tokens counts reasoning tokens too"
            )
        if self.cache_write_1h_tokens is not None and self.cache_write_1h_tokens > self.cache_write_tokens:
            problems.append("cache_write_1h_tokens: cannot exceed cache_write_tokens")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived values -------------------------------------------------------------------

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def extra_units(self) -> dict[str, int]:
        """The reported priced units beyond the five token counts."""
        return {name: value for name in EXTRA_UNIT_FIELDS if (value := getattr(self, name)) is not None}

    def canonical_dict(self) -> dict[str, Any]:
        """Every set field in JSON types, for hashing, storage and output."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)

    def content_id(self) -> str:
        """A stable id derived from the content: identical events share it."""
        data = self.canonical_dict()
        data.pop("event_id", None)
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return "c-" + digest[:40]


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        message = "unknown field (see docs/concepts.md for the event fields)"
    elif error.get("type") == "json_invalid":
        return "broken JSON: " + message.removeprefix("Invalid JSON: ")
    elif error.get("type") == "model_type":
        return f"expected a JSON object, got {type(error.get('input')).__name__}"
    message = message.removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_event(data: Any, *, location: str | None = None) -> UsageEvent:
    """Validate one event from a mapping or a JSON document (bytes/str).

    Raises :class:`InvalidEvent` naming every bad field. JSON is parsed and validated in one pass
    by pydantic-core, which is faster than ``json.loads`` followed by validation.
    """
    try:
        if isinstance(data, bytes | str):
            return UsageEvent.model_validate_json(data)
        if not isinstance(data, dict):
            raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}", location=location)
        return UsageEvent.model_validate(data)
    except ValidationError as exc:
        errors = [_describe(e) for e in exc.errors(include_url=False)]  # type: ignore[arg-type]
        raise InvalidEvent("; ".join(errors), errors=errors, location=location) from None
