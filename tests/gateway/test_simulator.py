"""The upstream simulator speaks the real wire formats: the real SDKs parse exactly `simulated_usage`."""

from __future__ import annotations

import asyncio
import importlib
import json
import time

import anthropic
import httpx
import openai
import pytest

from fleetledger.ingest.responses import extract_usage
from fleetledger.testing.simulator import (
    SimulatorInputError,
    create_simulator_app,
    normalized_usage,
    run_simulator_in_thread,
    simulated_usage,
)

CHAT = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Summarise the quarterly spend of the research department, please."},
    ],
}
CHAT_CACHED_REASONING = {
    "model": "o4-mini",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "[cache] a long shared prefix " * 20}]}],
    "reasoning_effort": "medium",
}
RESPONSES = {"model": "gpt-4.1", "instructions": "Answer briefly.", "input": "What is a token?"}
RESPONSES_ITEMS = {
    "model": "o4-mini",
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "Explain prompt caching. " * 9}]}],
    "prompt_cache_key": "tenant-a",
    "reasoning": {"effort": "low"},
}
MESSAGES = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 400,
    "system": [{"type": "text", "text": "Policy manual. " * 40, "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": "What does section 2 say?"}],
}


def _strip_none(value):
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    return value


@pytest.fixture(scope="module")
def sim():
    running = run_simulator_in_thread(seed=3)
    yield running
    running.stop()


@pytest.fixture
def oai(sim):
    with openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(sim):
    with anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


def _units(response, endpoint, body):
    """extract_usage (the project's own reader) agrees with normalized_usage."""
    units = extract_usage(response).units
    expected = normalized_usage(endpoint, body)
    assert {k: units.get(k, 0) for k in expected} == expected
    return units


# -- the pure usage function --------------------------------------------------------------------------


def test_simulated_usage_is_deterministic_and_follows_the_documented_rules():
    usage = simulated_usage("chat", CHAT)
    # 3 per request + 4 per message + ceil(chars / 4)
    text_tokens = sum((len(m["content"]) + 3) // 4 for m in CHAT["messages"])
    assert usage["prompt_tokens"] == 3 + 4 * 2 + text_tokens
    assert usage["completion_tokens"] == 16 + (usage["prompt_tokens"] * 37) % 97
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert simulated_usage("/v1/chat/completions", {**CHAT, "stream": True}) == usage

    cached = simulated_usage("chat", CHAT_CACHED_REASONING)
    assert cached["prompt_tokens_details"]["cached_tokens"] == cached["prompt_tokens"] // 2 > 0
    assert cached["completion_tokens_details"]["reasoning_tokens"] == cached["completion_tokens"] // 2 > 0

    capped = simulated_usage("chat", {**CHAT, "max_completion_tokens": 5})
    assert capped["completion_tokens"] == 5
    assert simulated_usage("chat", {**CHAT, "max_tokens": 7})["completion_tokens"] == 7


def test_anthropic_cache_rules():
    read = simulated_usage("messages", MESSAGES)
    prefix = 3 + (len("Policy manual. " * 40) + 3) // 4
    assert read["cache_read_input_tokens"] == prefix
    assert read["cache_creation_input_tokens"] == 0
    assert read["input_tokens"] == 4 + (len("What does section 2 say?") + 3) // 4
    miss = {**MESSAGES, "messages": [{"role": "user", "content": "[cache-miss] What does section 2 say?"}]}
    written = simulated_usage("messages", miss)
    assert written["cache_creation_input_tokens"] == prefix and written["cache_read_input_tokens"] == 0
    assert written["cache_creation"] == {"ephemeral_5m_input_tokens": prefix, "ephemeral_1h_input_tokens": 0}
    hour = {**miss, "system": [{**MESSAGES["system"][0], "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    assert simulated_usage("messages", hour)["cache_creation"]["ephemeral_1h_input_tokens"] == prefix
    plain = {**MESSAGES, "system": "Policy manual. " * 40}
    assert simulated_usage("messages", plain)["cache_read_input_tokens"] == 0
    units = normalized_usage("messages", MESSAGES)
    assert units["input_tokens"] == read["input_tokens"] + prefix
    assert units["cache_read_tokens"] == prefix


def test_simulated_usage_rejects_bad_bodies_naming_the_field():
    with pytest.raises(SimulatorInputError) as err:
        simulated_usage("chat", {"model": "gpt-4o", "messages": []})
    assert err.value.param == "messages"
    with pytest.raises(SimulatorInputError) as err:
        simulated_usage("messages", {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]})
    assert err.value.param == "max_tokens"
    with pytest.raises(SimulatorInputError) as err:
        simulated_usage("responses", {"input": "x"})
    assert err.value.param == "model"
    with pytest.raises(SimulatorInputError) as err:
        simulated_usage("chat", {**CHAT, "max_tokens": 0})
    assert err.value.param == "max_tokens"
    with pytest.raises(ValueError, match="unknown endpoint"):
        simulated_usage("/v1/completions", CHAT)


# -- OpenAI chat completions ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [CHAT, CHAT_CACHED_REASONING, {**CHAT, "max_tokens": 5}])
def test_chat_completion_usage_parsed_by_the_openai_sdk(oai, body):
    response = oai.chat.completions.create(**body)
    assert _strip_none(response.usage.model_dump()) == simulated_usage("chat", body)
    assert response.object == "chat.completion" and response.id.startswith("chatcmpl-")
    assert response.model == body["model"]
    assert isinstance(response.created, int)
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == ("length" if body.get("max_tokens") == 5 else "stop")
    _units(response, "chat", body)


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk(oai):
    body = CHAT_CACHED_REASONING
    chunks = list(oai.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert _strip_none(chunks[-1].usage.model_dump()) == simulated_usage("chat", body)
    assert chunks[-2].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == oai.chat.completions.create(**body).choices[0].message.content
    assert len(chunks) > 4  # several content deltas, not one blob
    _units(chunks[-1], "chat", body)


def test_chat_stream_without_include_usage_has_no_usage(sim, oai):
    chunks = list(oai.chat.completions.create(**CHAT, stream=True))
    assert chunks and all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    raw = httpx.post(f"{sim.openai_base_url}/chat/completions", json={**CHAT, "stream": True}).text
    assert raw.endswith("data: [DONE]\n\n")
    assert '"usage"' not in raw


def test_chat_async_stream_and_not(sim):
    async def main():
        async with openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0) as client:
            plain = await client.chat.completions.create(**CHAT)
            stream = await client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
            chunks = [c async for c in stream]
            return plain, chunks

    plain, chunks = asyncio.run(main())
    expected = simulated_usage("chat", CHAT)
    assert _strip_none(plain.usage.model_dump()) == expected
    assert _strip_none(chunks[-1].usage.model_dump()) == expected


# -- OpenAI Responses API ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [RESPONSES, RESPONSES_ITEMS])
def test_responses_usage_parsed_by_the_openai_sdk(oai, body):
    response = oai.responses.create(**body)
    assert _strip_none(response.usage.model_dump()) == simulated_usage("responses", body)
    assert response.status == "completed" and response.object == "response"
    assert response.output_text
    _units(response, "responses", body)


def test_responses_stream_events(oai):
    body = RESPONSES_ITEMS
    events = list(oai.responses.create(**body, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") > 2
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert _strip_none(final.usage.model_dump()) == simulated_usage("responses", body)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text
    _units(final, "responses", body)


def test_responses_stream_helpers_sync_and_async(sim, oai):
    with oai.responses.stream(**RESPONSES) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text
    assert _strip_none(final.usage.model_dump()) == simulated_usage("responses", RESPONSES)

    async def main():
        async with openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0) as client:
            async with client.responses.stream(**RESPONSES) as s:
                async for _ in s:
                    pass
                return await s.get_final_response()

    assert asyncio.run(main()).usage == final.usage


def test_responses_capped_output_is_incomplete(oai):
    response = oai.responses.create(**RESPONSES, max_output_tokens=3)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 3


# -- embeddings and models ----------------------------------------------------------------------------


def test_embeddings_float_and_base64(oai):
    body = {"model": "text-embedding-3-small", "input": ["first text", "second, longer text"], "dimensions": 12}
    default = oai.embeddings.create(**body)  # the SDK asks for base64 and decodes it
    floats = oai.embeddings.create(**body, encoding_format="float")
    assert _strip_none(default.usage.model_dump()) == simulated_usage("embeddings", body)
    assert [len(d.embedding) for d in default.data] == [12, 12]
    for a, b in zip(default.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
        assert sum(v * v for v in b.embedding) == pytest.approx(1.0)
    assert default.data[0].embedding != default.data[1].embedding
    _units(floats, "embeddings", body)


def test_models_in_each_provider_shape(oai, claude):
    assert "gpt-4o" in [m.id for m in oai.models.list()]
    assert oai.models.retrieve("gpt-4o-mini").owned_by == "fleetledger-simulator"
    assert "claude-haiku-4-5" in [m.id for m in claude.models.list()]
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


# -- Anthropic messages -------------------------------------------------------------------------------

MISS_1H = {
    **MESSAGES,
    "system": [{"type": "text", "text": "Rules. " * 30, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "[cache-miss] first question"}]},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second question"},
    ],
}


@pytest.mark.parametrize("body", [MESSAGES, MISS_1H, {**MESSAGES, "max_tokens": 4}])
def test_messages_usage_parsed_by_the_anthropic_sdk(claude, body):
    message = claude.messages.create(**body)
    assert _strip_none(message.usage.model_dump()) == simulated_usage("messages", body)
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.stop_reason == ("max_tokens" if body["max_tokens"] == 4 else "end_turn")
    assert message.content[0].type == "text" and message.content[0].text
    _units(message, "messages", body)


def test_messages_stream_events_and_accumulated_usage(claude):
    body = MISS_1H
    expected = simulated_usage("messages", body)
    events = list(claude.messages.create(**body, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start_usage = events[0].message.usage
    assert start_usage.input_tokens == expected["input_tokens"]
    assert start_usage.cache_creation_input_tokens == expected["cache_creation_input_tokens"] > 0
    assert start_usage.cache_read_input_tokens == 0
    assert events[-2].usage.output_tokens == expected["output_tokens"]

    with claude.messages.stream(**body) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text
    assert _strip_none(final.usage.model_dump()) == expected
    _units(final, "messages", body)


def test_messages_async_stream_and_not(sim):
    async def main():
        async with anthropic.AsyncAnthropic(base_url=sim.anthropic_base_url, api_key="k", max_retries=0) as client:
            plain = await client.messages.create(**MESSAGES)
            async with client.messages.stream(**MESSAGES) as stream:
                final = await stream.get_final_message()
            return plain, final

    plain, final = asyncio.run(main())
    expected = simulated_usage("messages", MESSAGES)
    assert _strip_none(plain.usage.model_dump()) == expected
    assert _strip_none(final.usage.model_dump()) == expected


def test_count_tokens(claude):
    counted = claude.messages.count_tokens(
        model=MESSAGES["model"], system=MESSAGES["system"], messages=MESSAGES["messages"]
    )
    usage = normalized_usage("messages", MESSAGES)
    assert counted.input_tokens == usage["input_tokens"]


# -- failures and errors ------------------------------------------------------------------------------


def test_injected_failures_raise_the_openai_sdk_errors(oai):
    with pytest.raises(openai.InternalServerError) as err:
        oai.chat.completions.create(**{**CHAT, "model": "sim-fail-500"})
    assert err.value.status_code == 500 and err.value.type == "server_error"
    with pytest.raises(openai.RateLimitError) as err:
        oai.chat.completions.create(**CHAT, extra_headers={"x-simulator-fail": "429"})
    assert err.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(**RESPONSES, stream=True, extra_headers={"x-simulator-fail": "503"})
    with pytest.raises(openai.NotFoundError) as err:
        oai.chat.completions.create(**{**CHAT, "model": "sim-unknown-model"})
    assert err.value.code == "model_not_found" and err.value.param == "model"
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="gpt-4o", messages=[])
    assert err.value.param == "messages"


def test_injected_failures_raise_the_anthropic_sdk_errors(claude):
    with pytest.raises(anthropic.InternalServerError) as err:
        claude.messages.create(**{**MESSAGES, "model": "sim-fail-500"})
    assert err.value.status_code == 500
    assert err.value.body["error"]["type"] == "api_error"
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(**MESSAGES, extra_headers={"x-simulator-fail": "429"})
    with pytest.raises(anthropic.APIStatusError) as err:
        claude.messages.create(**MESSAGES, extra_headers={"x-simulator-fail": "529"})
    assert err.value.status_code == 529
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "x"}], max_tokens=0)
    assert "max_tokens" in str(err.value)


def test_error_json_is_in_each_provider_shape(sim):
    openai_error = httpx.post(f"{sim.openai_base_url}/chat/completions", content=b"{not json")
    assert openai_error.status_code == 400
    assert set(openai_error.json()["error"]) == {"message", "type", "param", "code"}
    assert openai_error.headers["x-request-id"]
    anthropic_error = httpx.post(f"{sim.url}/v1/messages", json=MESSAGES, headers={"x-simulator-fail": "500"})
    body = anthropic_error.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["request_id"] == anthropic_error.headers["request-id"]
    unknown = httpx.post(f"{sim.url}/v1/nope", json={})
    assert unknown.status_code == 404 and "error" in unknown.json()
    wrong_method = httpx.get(f"{sim.openai_base_url}/chat/completions")
    assert wrong_method.status_code == 405


def test_timeout_failure_hangs_until_the_client_gives_up(sim):
    with openai.OpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(**CHAT, extra_headers={"x-simulator-fail": "timeout"})
        assert time.monotonic() - started >= 0.3


def test_timeout_failure_answers_504_after_hang_s():
    with run_simulator_in_thread(hang_s=0.2) as sim:
        response = httpx.post(f"{sim.url}/v1/messages", json={**MESSAGES, "model": "sim-fail-timeout"}, timeout=5)
    assert response.status_code == 504 and response.json()["error"]["type"] == "timeout_error"


def _dropped(sdk):
    """What an SDK raises when the upstream drops a stream: its connection error before the first
    event is handed over, the transport's protocol error while iterating."""
    errors = [sdk.APIConnectionError, httpx.RemoteProtocolError]
    try:
        errors.append(importlib.import_module("httpx2").RemoteProtocolError)
    except ImportError:
        pass
    return tuple(errors)


def test_disconnect_drops_the_stream_mid_way(sim, oai, claude):
    fail = {"x-simulator-fail": "disconnect"}
    seen = []
    with pytest.raises(_dropped(openai)):
        for chunk in oai.chat.completions.create(**CHAT, stream=True, extra_headers=fail):
            seen.append(chunk)
    assert len(seen) <= 2
    events = []
    with pytest.raises(_dropped(anthropic)):
        for event in claude.messages.create(**{**MESSAGES, "model": "sim-fail-disconnect"}, stream=True):
            events.append(event.type)
    assert events == ["message_start", "content_block_start"][: len(events)]
    assert [r["failure"] for r in sim.requests[-2:]] == ["disconnect", "disconnect"]
    # on the wire: exactly `disconnect_after` events, then the connection is closed mid-body
    lines = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream(
            "POST", f"{sim.openai_base_url}/chat/completions", json={**CHAT, "stream": True}, headers=fail
        ) as r:
            lines.extend(line for line in r.iter_lines() if line)
    assert len(lines) == 2 and all(line.startswith("data: {") for line in lines)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{sim.openai_base_url}/chat/completions", json=CHAT, headers=fail)


# -- recording, options -------------------------------------------------------------------------------


def test_requests_are_recorded_and_bounded():
    with run_simulator_in_thread(max_recorded=3) as sim:
        with openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-abc", max_retries=0) as client:
            for i in range(5):
                client.chat.completions.create(**CHAT, user=f"u{i}")
        assert [r["body"]["user"] for r in sim.requests] == ["u2", "u3", "u4"]
        last = sim.requests[-1]
        assert last["path"] == "/v1/chat/completions" and last["method"] == "POST"
        assert last["headers"]["authorization"] == "Bearer sk-abc"
        assert last["failure"] is None


def test_api_key_is_enforced_when_configured():
    with run_simulator_in_thread(api_key="upstream-secret") as sim:
        with openai.OpenAI(base_url=sim.openai_base_url, api_key="wrong", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(**CHAT)
        with openai.OpenAI(base_url=sim.openai_base_url, api_key="upstream-secret", max_retries=0) as client:
            assert client.chat.completions.create(**CHAT).usage.prompt_tokens > 0
        with anthropic.Anthropic(base_url=sim.url, api_key="upstream-secret", max_retries=0) as client:
            assert client.messages.create(**MESSAGES).usage.output_tokens > 0
        with anthropic.Anthropic(base_url=sim.url, api_key="wrong", max_retries=0) as client:
            with pytest.raises(anthropic.AuthenticationError):
                client.messages.create(**MESSAGES)


def test_latency_and_chunk_delay(sim):
    started = time.monotonic()
    httpx.post(f"{sim.openai_base_url}/chat/completions", json=CHAT, headers={"x-simulator-latency-ms": "150"})
    assert time.monotonic() - started >= 0.15
    with httpx.stream(
        "POST",
        f"{sim.openai_base_url}/chat/completions",
        json={**CHAT, "stream": True},
        headers={"x-simulator-chunk-delay-ms": "20"},
    ) as response:
        started = time.monotonic()
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
        elapsed = time.monotonic() - started
    assert elapsed >= 0.02 * (len(events) - 2)
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_app_options_are_validated():
    with pytest.raises(ValueError):
        create_simulator_app(latency_ms=-1)
    with pytest.raises(ValueError):
        create_simulator_app(chunk_tokens=0)


def test_the_cli_serves_the_simulator(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = Path(sys.executable).parent / "fleetledger"
    env = {**os.environ, "SIM_TEST_KEY": "sk-cli"}
    argv = [str(cli), "simulator", "--port", str(port), "--api-key-env", "SIM_TEST_KEY", "--chunk-tokens", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        with openai.OpenAI(base_url=f"{base}/v1", api_key="sk-cli", max_retries=0) as client:
            chunks = list(client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True}))
            assert _strip_none(chunks[-1].usage.model_dump()) == simulated_usage("chat", CHAT)
            content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
            assert len(content_chunks) == -(-chunks[-1].usage.completion_tokens // 2)  # --chunk-tokens 2
        with openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
