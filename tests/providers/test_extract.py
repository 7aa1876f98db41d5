"""Usage extraction from recorded provider responses, read through the real SDK types where one exists."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic.types
import openai.types
import openai.types.chat
import openai.types.responses
import pytest

from fleetledger.core.errors import InvalidInput
from fleetledger.core.usage import UsageEvent
from fleetledger.ingest.responses import ExtractedUsage, extract_usage

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 10, 14, 9, 30, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def tokens(input: int, cache_read: int, cache_write: int, output: int, reasoning: int, **extra: int):
    return {
        "input_tokens": input,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": output,
        "reasoning_tokens": reasoning,
        **extra,
    }


def as_event(extracted: ExtractedUsage) -> UsageEvent:
    return UsageEvent(timestamp=NOW, **extracted.as_event_fields())


# -- OpenAI ----------------------------------------------------------------------------------------


def test_openai_chat_cached_and_reasoning_from_sdk_object():
    payload = load("openai_chat_o4_mini_cached_reasoning.json")
    got = extract_usage(openai.types.chat.ChatCompletion.model_validate(payload))
    assert got == ExtractedUsage(
        provider="openai",
        model="o4-mini-2025-04-16",
        units=tokens(2150, 1920, 0, 912, 640),
        service_tier="standard",
        request_id="chatcmpl-BqT4x9GZpQ8vK2mN7sLdE3aYfWc1R",
        category="llm_inference",
    )
    event = as_event(got)
    assert (event.input_tokens, event.cache_read_tokens, event.reasoning_tokens) == (2150, 1920, 640)
    assert event.service_tier == "standard"
    assert event.extra_units() == {}


def test_openai_chat_audio_tokens_and_priority_tier():
    completion = openai.types.chat.ChatCompletion.model_validate(load("openai_chat_audio_cached.json"))
    got = extract_usage(completion)
    assert got.units == tokens(1284, 1024, 0, 368, 0, input_audio_tokens=210, output_audio_tokens=301)
    assert got.service_tier == "priority"
    event = as_event(got)
    assert event.extra_units() == {"input_audio_tokens": 210, "output_audio_tokens": 301}


def test_openai_chat_raw_dict_and_json_string_match_sdk_object():
    payload = load("openai_chat_audio_cached.json")
    from_sdk = extract_usage(openai.types.chat.ChatCompletion.model_validate(payload))
    assert extract_usage(payload) == from_sdk
    assert extract_usage(json.dumps(payload)) == from_sdk
    assert extract_usage(json.dumps(payload).encode()) == from_sdk


def test_openai_stream_final_chunk_carries_usage():
    chunk = openai.types.chat.ChatCompletionChunk.model_validate(load("openai_chat_stream_final_chunk.json"))
    got = extract_usage(chunk)
    assert got.provider == "openai"
    assert got.model == "gpt-4.1-mini-2025-04-14"
    assert got.units == tokens(1533, 1408, 0, 87, 0)
    assert got.service_tier == "flex"
    assert got.request_id == "chatcmpl-BqW2nHs8Kd3vQpLx6tRzA0eFgUy7C"
    assert as_event(got).service_tier == "flex"


def test_openai_stream_content_chunk_has_no_usage():
    payload = load("openai_chat_stream_content_chunk.json")
    chunk = openai.types.chat.ChatCompletionChunk.model_validate(payload)
    with pytest.raises(InvalidInput, match=r"^openai chat completion: usage missing$"):
        extract_usage(chunk)


def test_openai_responses_cached_reasoning_and_web_searches():
    response = openai.types.responses.Response.model_validate(load("openai_responses_web_search.json"))
    got = extract_usage(response)
    # two search actions; the open_page action is not a billable search
    assert got.units == tokens(18342, 9216, 0, 1457, 1088, web_searches=2)
    assert got.model == "gpt-5-2025-08-07"
    assert got.request_id == "resp_68a1f0c2d4e88193b5e6f0a1c2d3e4f5061728394a5b6c7d"
    assert got.service_tier == "standard"
    assert as_event(got).web_searches == 2


def test_openai_responses_tool_usage_count_wins_over_output_items():
    payload = load("openai_responses_web_search.json")
    payload["tool_usage"] = {
        "image_gen": {
            "input_tokens": 0,
            "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
            "output_tokens": 0,
            "total_tokens": 0,
        },
        "web_search": {"num_requests": 3},
    }
    got = extract_usage(openai.types.responses.Response.model_validate(payload))
    assert got.units["web_searches"] == 3


def test_openai_responses_stream_completed_event():
    event = {"type": "response.completed", "sequence_number": 41, "response": load("openai_responses_web_search.json")}
    assert extract_usage(event).units == tokens(18342, 9216, 0, 1457, 1088, web_searches=2)


def test_openai_embeddings():
    response = openai.types.CreateEmbeddingResponse.model_validate(load("openai_embeddings.json"))
    got = extract_usage(response)
    assert got == ExtractedUsage(
        provider="openai", model="text-embedding-3-small", units=tokens(17, 0, 0, 0, 0), category="embedding"
    )
    event = as_event(got)
    assert event.category == "embedding"
    assert event.request_id is None


def test_openai_batch_output_line_is_batch_tier():
    got = extract_usage(load("openai_batch_output_line.json"))
    assert got.units == tokens(356, 0, 0, 4, 0)
    assert got.service_tier == "batch"
    assert got.request_id == "chatcmpl-Bqb1cD2eF3gH4iJ5kL6mN7oP8qR9s"
    assert as_event(got).service_tier == "batch"


# -- Anthropic -------------------------------------------------------------------------------------


def test_anthropic_cache_read_5m_and_1h_writes_and_web_search():
    message = anthropic.types.Message.model_validate(load("anthropic_cache_web_search.json"))
    got = extract_usage(message)
    # input_tokens 1843 excludes cache: 1843 + 24576 read + 5120 written (2048 for 5m, 3072 for 1h)
    assert got == ExtractedUsage(
        provider="anthropic",
        model="claude-sonnet-4-5-20250929",
        units=tokens(31539, 24576, 5120, 612, 0, cache_write_1h_tokens=3072, web_searches=2),
        service_tier="standard",
        request_id="msg_01XFDUDYJgAACzvnptvVoYEL",
    )
    event = as_event(got)
    assert event.input_tokens - event.cache_read_tokens - event.cache_write_tokens == 1843
    assert event.extra_units() == {"cache_write_1h_tokens": 3072, "web_searches": 2}


def test_anthropic_thinking_tokens_are_reasoning():
    payload = load("anthropic_cache_web_search.json")
    payload["usage"]["output_tokens_details"] = {"thinking_tokens": 400}
    got = extract_usage(anthropic.types.Message.model_validate(payload))
    assert (got.units["output_tokens"], got.units["reasoning_tokens"]) == (612, 400)
    as_event(got)


def test_anthropic_batch_result_line():
    got = extract_usage(load("anthropic_batch_result.json"))
    assert got.units == tokens(4210, 0, 0, 96, 0)
    assert got.service_tier == "batch"
    assert got.model == "claude-haiku-4-5-20251001"
    as_event(got)


def test_anthropic_cache_creation_without_total_sums_the_ttls():
    payload = load("anthropic_cache_web_search.json")
    del payload["usage"]["cache_creation_input_tokens"]
    got = extract_usage(payload)
    assert got.units["cache_write_tokens"] == 5120
    assert got.units["input_tokens"] == 31539


def test_anthropic_shape_served_by_bedrock_keeps_given_provider():
    got = extract_usage(load("anthropic_batch_result.json")["result"]["message"], provider="bedrock")
    assert got.provider == "aws"
    assert got.units["input_tokens"] == 4210


# -- Google, AWS, Mistral, OpenAI-compatible -------------------------------------------------------------


def test_gemini_cached_content_and_thoughts():
    got = extract_usage(load("gemini_cached_thoughts.json"))
    # candidatesTokenCount (412) excludes thoughts (1272); promptTokenCount includes the cache
    assert got == ExtractedUsage(
        provider="google",
        model="gemini-2.5-pro",
        units=tokens(14328, 12288, 0, 1684, 1272, input_image_tokens=1288),
        request_id="x5BcaPKrJ7Kz1dkP_8SjwQk",
    )
    as_event(got)


def test_gemini_sdk_dump_audio_and_tool_use_prompt():
    got = extract_usage(load("gemini_sdk_dump_audio_grounding.json"), provider="vertex_ai")
    # toolUsePromptTokenCount (1530) is outside promptTokenCount (1012): totalTokenCount 2944
    assert got.provider == "google"
    assert got.model == "gemini-2.5-flash"
    assert got.units == tokens(2542, 0, 0, 402, 344, input_audio_tokens=800, input_tool_tokens=1530)
    assert got.units["input_tokens"] + got.units["output_tokens"] == 2944
    as_event(got)


def test_bedrock_converse_cache_read_and_write():
    model_id = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # the modelId of the request
    got = extract_usage(load("bedrock_converse_cache.json"), model=model_id)
    # inputTokens (512) excludes cache: totalTokens 8990 = 512 + 6144 + 2048 + 286
    assert got == ExtractedUsage(
        provider="aws",
        model=model_id,
        units=tokens(8704, 6144, 2048, 286, 0, cache_write_1h_tokens=2048),
        request_id="5e3b8f0a-9c1d-4e2f-8a7b-6c5d4e3f2a1b",
    )
    as_event(got)


def test_bedrock_converse_without_model_needs_one():
    with pytest.raises(InvalidInput, match=r"^aws converse response: model missing .*pass model="):
        extract_usage(load("bedrock_converse_cache.json"))


def test_mistral_chat_detected_by_model_name():
    payload = load("mistral_chat.json")
    got = extract_usage(openai.types.chat.ChatCompletion.model_validate(payload))
    assert got == ExtractedUsage(
        provider="mistral",
        model="mistral-medium-2508",
        units=tokens(3104, 2048, 0, 287, 0),
        request_id="7f3d1a9c2b8e4f60a5d3c1b2e4f6a8d0",
    )
    assert extract_usage(payload) == got
    as_event(got)


def test_vllm_openai_compatible_named_by_provider():
    completion = openai.types.chat.ChatCompletion.model_validate(load("vllm_chat.json"))
    got = extract_usage(completion, provider="vllm")
    assert got == ExtractedUsage(
        provider="vllm",
        model="meta-llama/Llama-3.1-8B-Instruct",
        units=tokens(412, 0, 0, 191, 0),
        request_id="chatcmpl-3c1f8e5a2d7b4a06b9e1f0d2c4a6b8e0",
    )
    assert as_event(got).provider == "vllm"
    assert extract_usage(completion).provider == "openai"  # without a name, the shape's default


def test_as_event_fields_only_sets_what_is_known():
    got = extract_usage(load("vllm_chat.json"), provider="vllm")
    assert got.as_event_fields() == {
        "provider": "vllm",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "request_id": "chatcmpl-3c1f8e5a2d7b4a06b9e1f0d2c4a6b8e0",
        "category": "llm_inference",
        **tokens(412, 0, 0, 191, 0),
    }


# -- unhappy paths ---------------------------------------------------------------------------------


def test_no_usage_block():
    payload = load("openai_chat_o4_mini_cached_reasoning.json")
    del payload["usage"]
    with pytest.raises(InvalidInput, match=r"^openai chat completion: usage missing$"):
        extract_usage(payload)


def test_missing_required_count_names_the_path():
    payload = load("anthropic_cache_web_search.json")
    del payload["usage"]["input_tokens"]
    with pytest.raises(InvalidInput, match=r"^anthropic message: usage\.input_tokens missing$"):
        extract_usage(payload)


@pytest.mark.parametrize(
    ("fixture", "path", "value"),
    [
        ("anthropic_cache_web_search.json", ("usage", "input_tokens"), "1843"),
        ("mistral_chat.json", ("usage", "prompt_tokens_details", "cached_tokens"), "2048"),
        ("openai_chat_o4_mini_cached_reasoning.json", ("usage", "completion_tokens"), 912.5),
        ("bedrock_converse_cache.json", ("usage", "cacheReadInputTokens"), True),
    ],
)
def test_non_integer_counts(fixture, path, value):
    payload = load(fixture)
    node = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(InvalidInput, match=rf"{'.'.join(path)} must be an integer, got {value!r}"):
        extract_usage(payload, model="some-model")


@pytest.mark.parametrize(
    ("fixture", "path"),
    [
        ("gemini_cached_thoughts.json", ("usageMetadata", "candidatesTokenCount")),
        ("openai_responses_web_search.json", ("usage", "output_tokens")),
        ("bedrock_converse_cache.json", ("usage", "inputTokens")),
    ],
)
def test_negative_counts(fixture, path):
    payload = load(fixture)
    node = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = -5
    with pytest.raises(InvalidInput, match=rf"{'.'.join(path)} must be between 0 and .*, got -5"):
        extract_usage(payload, model="some-model")


def test_gemini_modality_count_must_be_an_integer():
    payload = load("gemini_cached_thoughts.json")
    payload["usageMetadata"]["promptTokensDetails"][1]["tokenCount"] = "1288"
    with pytest.raises(InvalidInput, match=r"promptTokensDetails: tokenCount must be an integer"):
        extract_usage(payload)


def test_usage_of_the_wrong_type():
    payload = load("openai_embeddings.json")
    payload["usage"] = [17, 17]
    expected = r"^openai embeddings response: usage must be an object, got list$"
    with pytest.raises(InvalidInput, match=expected):
        extract_usage(payload)


def test_cached_tokens_exceeding_prompt_tokens():
    payload = load("mistral_chat.json")
    payload["usage"]["prompt_tokens_details"]["cached_tokens"] = 5000
    with pytest.raises(InvalidInput, match=r"^mistral chat completion: cache tokens exceed input tokens"):
        extract_usage(payload)


@pytest.mark.parametrize(
    "response",
    [{"foo": 1, "bar": {"baz": 2}}, {"usage": {"prompt_tokens": 3}}, {}],
)
def test_unknown_shape(response):
    with pytest.raises(InvalidInput, match=r"^unknown response shape"):
        extract_usage(response)


def test_ambiguous_shape():
    payload = load("openai_chat_o4_mini_cached_reasoning.json")
    payload["usageMetadata"] = load("gemini_cached_thoughts.json")["usageMetadata"]
    with pytest.raises(InvalidInput, match=r"^ambiguous response shape: looks like gemini and chat"):
        extract_usage(payload)


@pytest.mark.parametrize("response", [None, 42, [1, 2], "[1, 2]"])
def test_not_a_response_object(response):
    with pytest.raises(InvalidInput, match=r"^expected a provider response"):
        extract_usage(response)


def test_invalid_json_string():
    with pytest.raises(InvalidInput, match=r"^response is not valid JSON"):
        extract_usage('{"usage": ')


def test_failed_batch_line():
    line = {"custom_id": "req-7", "result": {"type": "errored", "error": {"type": "invalid_request_error"}}}
    with pytest.raises(InvalidInput, match=r"^batch result line: no successful response body"):
        extract_usage(line)


@pytest.mark.parametrize(
    ("fixture", "sdk_type"),
    [
        ("openai_chat_o4_mini_cached_reasoning.json", openai.types.chat.ChatCompletion),
        ("openai_chat_stream_final_chunk.json", openai.types.chat.ChatCompletionChunk),
        ("openai_responses_web_search.json", openai.types.responses.Response),
        ("openai_embeddings.json", openai.types.CreateEmbeddingResponse),
        ("anthropic_cache_web_search.json", anthropic.types.Message),
        ("vllm_chat.json", openai.types.chat.ChatCompletion),
    ],
)
def test_sdk_object_and_raw_json_read_the_same(fixture, sdk_type):
    payload = load(fixture)
    assert extract_usage(sdk_type.model_validate(payload)) == extract_usage(payload)
