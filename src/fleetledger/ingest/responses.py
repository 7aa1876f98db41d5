"""Usage extraction: turn a provider's response into fleetledger units.

Every provider counts tokens its own way; this module is the one place that knows the quirks and
normalises them to the fleetledger convention (see :mod:`fleetledger.core.usage`): ``input_tokens``
counts every input token, cache reads and writes included; ``output_tokens`` counts every output
token, reasoning included; the other counts are parts of those two.

One code path serves SDK objects and raw JSON: pydantic SDK objects (``openai``, ``anthropic``) are
dumped with ``model_dump()`` and read as the dict the API sent. The shape is recognised from the
structure, never from the ``provider`` argument, which only names who served the call (so a vLLM
or Groq server answering in the OpenAI chat shape is read as OpenAI chat and recorded as ``vllm``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetledger.core.errors import InvalidInput
from fleetledger.core.usage import MAX_UNITS, TOKEN_FIELDS, normalize_provider

__all__ = ["ExtractedUsage", "extract_usage"]


@dataclass(slots=True)
class ExtractedUsage:
    """The billable usage read from one response, in fleetledger units."""

    provider: str
    model: str | None
    units: dict[str, int] = field(default_factory=dict)
    service_tier: str | None = None
    request_id: str | None = None
    category: str = "llm_inference"

    def as_event_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``UsageEvent(**fields, timestamp=...)``."""
        fields: dict[str, Any] = {"provider": self.provider, "model": self.model, **self.units}
        if self.service_tier is not None:
            fields["service_tier"] = self.service_tier
        if self.request_id is not None:
            fields["request_id"] = self.request_id
        fields["category"] = self.category
        return fields


# -- reading helpers -------------------------------------------------------------------------------


class _Reader:
    """Reads dotted paths from a response, raising errors that name the shape and the path."""

    def __init__(self, shape: str, data: dict[str, Any]) -> None:
        self.shape = shape
        self.data = data

    def fail(self, problem: str) -> InvalidInput:
        return InvalidInput(f"{self.shape}: {problem}")

    def get(self, path: str) -> Any:
        node: Any = self.data
        walked: list[str] = []
        for key in path.split("."):
            if node is None:
                return None
            if not isinstance(node, dict):
                raise self.fail(f"{'.'.join(walked)} must be an object, got {type(node).__name__}")
            node = node.get(key)
            walked.append(key)
        return node

    def count(self, path: str, *, required: bool = False) -> int:
        """A token count; absent or null is 0 unless ``required``."""
        value = self.get(path)
        if value is None:
            if required:
                raise self.fail(f"{path} missing")
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{path} must be an integer, got {value!r} ({type(value).__name__})")
        if not 0 <= value <= MAX_UNITS:
            raise self.fail(f"{path} must be between 0 and {MAX_UNITS}, got {value}")
        return value

    def block(self, path: str) -> dict[str, Any]:
        """A required object, e.g. the usage block."""
        value = self.get(path)
        if value is None:
            raise self.fail(f"{path} missing")
        if not isinstance(value, dict):
            raise self.fail(f"{path} must be an object, got {type(value).__name__}")
        return value

    def items(self, path: str) -> list[dict[str, Any]]:
        """A list of objects (absent is empty); non-object entries are skipped."""
        value = self.get(path)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"{path} must be a list, got {type(value).__name__}")
        return [item for item in value if isinstance(item, dict)]

    def text(self, path: str) -> str | None:
        value = self.get(path)
        return value if isinstance(value, str) and value.strip() else None


@dataclass(slots=True)
class _Parsed:
    units: dict[str, int]
    model: str | None
    request_id: str | None
    service_tier: str | None = None


# -- OpenAI and OpenAI-compatible ----------------------------------------------------------------

#: OpenAI ``service_tier`` as served -> fleetledger tier. "auto" is a request value, and "scale"
#: (prepaid reserved capacity) and unknown values are not a price tier we can name: None.
_OPENAI_TIERS = {"default": "standard", "flex": "flex", "priority": "priority", "fast": "priority"}


def _openai_tier(value: Any) -> str | None:
    return _OPENAI_TIERS.get(value) if isinstance(value, str) else None


def _openai_chat(r: _Reader) -> _Parsed:
    """OpenAI chat completions (and the final streaming chunk, and every OpenAI-compatible server).

    ``prompt_tokens`` already includes ``prompt_tokens_details.cached_tokens`` (and audio/image
    tokens), and ``completion_tokens`` already includes ``reasoning_tokens``: nothing to add.
    DeepSeek reports cache hits as ``usage.prompt_cache_hit_tokens``, also part of prompt_tokens.
    """
    r.block("usage")
    cached = r.count("usage.prompt_tokens_details.cached_tokens") or r.count("usage.prompt_cache_hit_tokens")
    units = {
        "input_tokens": r.count("usage.prompt_tokens", required=True),
        "cache_read_tokens": cached,
        "cache_write_tokens": r.count("usage.prompt_tokens_details.cache_write_tokens"),
        "output_tokens": r.count("usage.completion_tokens", required=True),
        "reasoning_tokens": r.count("usage.completion_tokens_details.reasoning_tokens"),
        "input_audio_tokens": r.count("usage.prompt_tokens_details.audio_tokens"),
        "input_image_tokens": r.count("usage.prompt_tokens_details.image_tokens"),
        "output_audio_tokens": r.count("usage.completion_tokens_details.audio_tokens"),
    }
    return _Parsed(units, r.text("model"), r.text("id"), _openai_tier(r.get("service_tier")))


def _search_action(action: Any) -> bool:
    """A web_search_call without an action (older responses) was a search."""
    return not isinstance(action, dict) or action.get("type", "search") == "search"


def _openai_responses(r: _Reader) -> _Parsed:
    """OpenAI Responses API: ``input_tokens`` includes cached tokens, ``output_tokens`` reasoning.

    Web searches are billed per search: ``tool_usage.web_search.num_requests`` is the billable count
    when present (it excludes open_page/find_in_page actions); otherwise the ``web_search_call``
    output items whose action is a search are counted.
    """
    r.block("usage")
    searches = r.get("tool_usage.web_search.num_requests")
    if searches is not None:
        web_searches = r.count("tool_usage.web_search.num_requests")
    else:
        web_searches = sum(
            1
            for item in r.items("output")
            if item.get("type") == "web_search_call" and _search_action(item.get("action"))
        )
    units = {
        "input_tokens": r.count("usage.input_tokens", required=True),
        "cache_read_tokens": r.count("usage.input_tokens_details.cached_tokens"),
        "cache_write_tokens": r.count("usage.input_tokens_details.cache_write_tokens"),
        "output_tokens": r.count("usage.output_tokens", required=True),
        "reasoning_tokens": r.count("usage.output_tokens_details.reasoning_tokens"),
        "web_searches": web_searches,
    }
    return _Parsed(units, r.text("model"), r.text("id"), _openai_tier(r.get("service_tier")))


def _openai_embeddings(r: _Reader) -> _Parsed:
    """Embeddings: only input is billed (``usage.prompt_tokens``); there is no response id."""
    r.block("usage")
    units = {"input_tokens": r.count("usage.prompt_tokens", required=True)}
    return _Parsed(units, r.text("model"), r.text("id"))


# -- Anthropic ---------------------------------------------------------------------------------------


def _anthropic(r: _Reader) -> _Parsed:
    """Anthropic Messages: ``usage.input_tokens`` EXCLUDES cache reads and writes, so they are added.

    ``cache_creation`` splits the writes by TTL; the 1-hour part is priced at twice the base input
    rate (5-minute writes at 1.25x), so it is kept as ``cache_write_1h_tokens``. Older responses
    have only ``cache_creation_input_tokens``; all of it is then 5-minute writes.
    """
    r.block("usage")
    cache_read = r.count("usage.cache_read_input_tokens")
    cache_1h = r.count("usage.cache_creation.ephemeral_1h_input_tokens")
    if r.get("usage.cache_creation_input_tokens") is not None:
        cache_write = r.count("usage.cache_creation_input_tokens")
    else:
        cache_write = r.count("usage.cache_creation.ephemeral_5m_input_tokens") + cache_1h
    units = {
        "input_tokens": r.count("usage.input_tokens", required=True) + cache_read + cache_write,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": r.count("usage.output_tokens", required=True),
        "reasoning_tokens": r.count("usage.output_tokens_details.thinking_tokens"),
        "cache_write_1h_tokens": cache_1h,
        "web_searches": r.count("usage.server_tool_use.web_search_requests"),
    }
    tier = r.get("usage.service_tier")
    tier = tier if tier in ("standard", "priority", "batch") else None
    return _Parsed(units, r.text("model"), r.text("id"), tier)


# -- Google Gemini ----------------------------------------------------------------------------------

#: Gemini modality -> (input unit, cache-read unit, output unit). DOCUMENT (PDF pages) is billed
#: like images, as genai-prices does; TEXT and VIDEO stay in the plain token counts.
_GEMINI_MODALITIES = {
    "AUDIO": ("input_audio_tokens", "cache_audio_read_tokens", "output_audio_tokens"),
    "IMAGE": ("input_image_tokens", None, "output_image_tokens"),
    "DOCUMENT": ("input_image_tokens", None, "output_image_tokens"),
}


def _gemini(r: _Reader) -> _Parsed:
    """Gemini generateContent (AI Studio and Vertex), camelCase REST or snake_case SDK dumps.

    ``promptTokenCount`` INCLUDES ``cachedContentTokenCount`` but EXCLUDES
    ``toolUsePromptTokenCount`` (tool results fed back to the model), which is added.
    ``candidatesTokenCount`` EXCLUDES ``thoughtsTokenCount``: output = candidates + thoughts.
    Zero counts are omitted from the JSON (proto3), so only ``promptTokenCount`` is required.
    """
    r.block("usageMetadata")
    tool = r.count("usageMetadata.toolUsePromptTokenCount")
    thoughts = r.count("usageMetadata.thoughtsTokenCount")
    units = {
        "input_tokens": r.count("usageMetadata.promptTokenCount", required=True) + tool,
        "cache_read_tokens": r.count("usageMetadata.cachedContentTokenCount"),
        "cache_write_tokens": 0,
        "output_tokens": r.count("usageMetadata.candidatesTokenCount") + thoughts,
        "reasoning_tokens": thoughts,
        "input_tool_tokens": tool,
    }
    for path, slot in (
        ("promptTokensDetails", 0),
        ("toolUsePromptTokensDetails", 0),
        ("cacheTokensDetails", 1),
        ("candidatesTokensDetails", 2),
    ):
        for item in r.items(f"usageMetadata.{path}"):
            unit = _GEMINI_MODALITIES.get(str(item.get("modality", "")).upper(), (None,) * 3)[slot]
            if unit:
                units[unit] = units.get(unit, 0) + _Reader(f"{r.shape} {path}", item).count("tokenCount")
    return _Parsed(units, r.text("modelVersion"), r.text("responseId"))


# -- AWS Bedrock ---------------------------------------------------------------------------------


def _bedrock(r: _Reader) -> _Parsed:
    """Bedrock Converse: ``inputTokens`` EXCLUDES cache reads and writes, so they are added.

    ``cacheDetails`` lists the writes per TTL ("5m"/"1h"). The Converse response carries no model
    id (it is in the request URL), except for prompt routers (``trace.promptRouter``); pass
    ``model=`` otherwise. boto3 adds ``ResponseMetadata.RequestId``.
    """
    r.block("usage")
    cache_read = r.count("usage.cacheReadInputTokens")
    cache_write = r.count("usage.cacheWriteInputTokens")
    cache_1h = 0
    for item in r.items("usage.cacheDetails"):
        if item.get("ttl") == "1h":
            cache_1h += _Reader(r.shape, item).count("inputTokens")
    units = {
        "input_tokens": r.count("usage.inputTokens", required=True) + cache_read + cache_write,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": r.count("usage.outputTokens", required=True),
        "reasoning_tokens": 0,
        "cache_write_1h_tokens": cache_1h,
    }
    model = r.text("modelId") or r.text("model") or r.text("trace.promptRouter.invokedModelId")
    return _Parsed(units, model, r.text("ResponseMetadata.RequestId"))


# -- detection ------------------------------------------------------------------------------------

_Parser = Callable[[_Reader], _Parsed]
#: shape -> (label used in errors, default provider, parser, category)
_SHAPES: dict[str, tuple[str, str, _Parser, str]] = {
    "chat": ("chat completion", "openai", _openai_chat, "llm_inference"),
    "responses": ("response", "openai", _openai_responses, "llm_inference"),
    "embeddings": ("embeddings response", "openai", _openai_embeddings, "embedding"),
    "anthropic": ("message", "anthropic", _anthropic, "llm_inference"),
    "gemini": ("generateContent response", "google", _gemini, "llm_inference"),
    "bedrock": ("converse response", "aws", _bedrock, "llm_inference"),
}
#: Mistral's API answers in the OpenAI chat/embeddings shape; its model names say who served it.
_MISTRAL_MODEL = re.compile(
    r"^(mistral|open-mi[sx]tral|codestral|pixtral|ministral|magistral|devstral|voxtral)[-_]", re.I
)


def _detect(data: dict[str, Any]) -> str:
    raw_usage = data.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    rows = data.get("data")
    candidates = {
        "anthropic": data.get("type") == "message",
        "gemini": "usageMetadata" in data,
        "responses": data.get("object") == "response"
        or ("input_tokens" in usage and isinstance(data.get("output"), list) and "type" not in data),
        "embeddings": data.get("object") == "list"
        and isinstance(rows, list)
        and all(isinstance(row, dict) and "embedding" in row for row in rows),
        "chat": isinstance(data.get("choices"), list) or str(data.get("object", "")).startswith("chat.completion"),
        "bedrock": "inputTokens" in usage or (isinstance(data.get("output"), dict) and "stopReason" in data),
    }
    found = [shape for shape, hit in candidates.items() if hit]
    if len(found) == 1:
        return found[0]
    if found:
        raise InvalidInput(f"ambiguous response shape: looks like {' and '.join(found)} at once")
    keys = ", ".join(sorted(map(str, data))[:12]) or "none"
    raise InvalidInput(
        "unknown response shape: expected an OpenAI chat/responses/embeddings, Anthropic message, "
        f"Gemini generateContent or Bedrock Converse response (top-level keys: {keys})"
    )


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _camelize(value: Any) -> Any:
    """google-genai SDK dumps are snake_case; the REST API (and this module) use camelCase."""
    if isinstance(value, dict):
        return {_camel(str(k)): _camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camelize(v) for v in value]
    return value


def _to_dict(response: Any) -> dict[str, Any]:
    if isinstance(response, (str, bytes, bytearray)):
        try:
            response = json.loads(response)
        except ValueError as exc:
            raise InvalidInput(f"response is not valid JSON: {exc}") from None
    elif hasattr(response, "model_dump") and callable(response.model_dump):
        try:
            response = response.model_dump(mode="json", by_alias=True, warnings=False)
        except TypeError:  # a pydantic-like object without those options
            response = response.model_dump()
    if not isinstance(response, dict):
        raise InvalidInput(
            f"expected a provider response (SDK object, dict or JSON object), got {type(response).__name__}"
        )
    return response


def _unwrap(data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Unwrap envelopes around a response; returns (response, service tier implied by the envelope)."""
    inner = data.get("response")
    if isinstance(inner, dict) and str(data.get("type", "")).startswith("response."):
        return inner, None  # Responses API stream event (response.completed, ...)
    if "custom_id" in data:
        if isinstance(inner, dict) and isinstance(inner.get("body"), dict):
            return inner["body"], "batch"  # OpenAI Batch API output line
        result = data.get("result")
        if isinstance(result, dict) and isinstance(result.get("message"), dict):
            return result["message"], "batch"  # Anthropic Message Batches result line
        raise InvalidInput("batch result line: no successful response body (the request failed?)")
    if "usage_metadata" in data:
        return _camelize(data), None
    return data, None


def extract_usage(response: Any, *, provider: str | None = None, model: str | None = None) -> ExtractedUsage:
    """Read the billable usage of one provider response.

    ``response`` is an ``openai``/``anthropic`` SDK object, a dict or a JSON string. ``provider``
    names who served it (e.g. ``"vllm"`` for an OpenAI-compatible server); by default it follows
    from the shape. ``model`` is used when the response names none (Bedrock Converse).
    Raises :class:`~fleetledger.core.errors.InvalidInput` when the usage cannot be read.
    """
    data, envelope_tier = _unwrap(_to_dict(response))
    shape = _detect(data)
    label, default_provider, parser, category = _SHAPES[shape]
    found_model = data.get("model") if isinstance(data.get("model"), str) else None
    if provider is not None and provider.strip():
        name = normalize_provider(provider)
    elif shape in ("chat", "embeddings") and found_model and _MISTRAL_MODEL.match(found_model):
        name = "mistral"
    else:
        name = default_provider
    reader = _Reader(f"{name} {label}", data)
    parsed = parser(reader)

    units = {key: parsed.units.get(key, 0) for key in TOKEN_FIELDS}
    units.update({k: v for k, v in parsed.units.items() if k not in TOKEN_FIELDS and v > 0})
    if units["cache_read_tokens"] + units["cache_write_tokens"] > units["input_tokens"]:
        raise reader.fail(f"cache tokens exceed input tokens ({units})")
    if units["reasoning_tokens"] > units["output_tokens"]:
        raise reader.fail(f"reasoning tokens exceed output tokens ({units})")

    final_model = parsed.model or (model.strip() if model and model.strip() else None)
    if final_model is None:
        raise reader.fail("model missing from the response; pass model=")
    return ExtractedUsage(
        provider=name,
        model=final_model,
        units=units,
        service_tier=envelope_tier or parsed.service_tier,
        request_id=parsed.request_id,
        category=category,
    )
