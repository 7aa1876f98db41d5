"""The real openai and anthropic SDKs against the gateway, upstream the simulator: metering is exact."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from .gateway_support import DIMS, expected_nanos, gateway_events, usd

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Summarize the quarterly report in two lines."}]}


_CLIENTS: list = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def _openai(running, key: str) -> openai.OpenAI:
    client = openai.OpenAI(base_url=running.openai_base_url, api_key=key, max_retries=0)
    _CLIENTS.append(client)
    return client


def _anthropic(running, key: str) -> anthropic.Anthropic:
    client = anthropic.Anthropic(base_url=running.url, api_key=key, max_retries=0)
    _CLIENTS.append(client)
    return client


def test_openai_chat_is_metered_exactly(running, virtual_key, gw_ledger):
    client = _openai(running, virtual_key)
    raw = client.chat.completions.with_raw_response.create(**CHAT, max_tokens=50)
    completion = raw.parse()
    assert completion.choices[0].message.content
    running.settle()
    expected = expected_nanos(gw_ledger, "chat", {**CHAT, "max_tokens": 50}, "openai", "gpt-4o")
    assert expected > 0
    assert raw.headers["x-fleetledger-cost-usd"] == f"{usd(expected):.9f}"
    assert raw.headers["x-request-id"].startswith("req_")
    [event] = gateway_events(gw_ledger)
    assert event["cost_nanos"] == expected
    assert event["input_tokens"] == completion.usage.prompt_tokens
    assert event["output_tokens"] == completion.usage.completion_tokens
    assert {k: event[k] for k in DIMS} == DIMS
    assert event["provider"] == "openai" and event["model"] == "gpt-4o"


def test_openai_chat_stream_hides_the_usage_chunk_it_added(running, virtual_key, gw_ledger, simulator):
    client = _openai(running, virtual_key)
    chunks = list(client.chat.completions.create(**CHAT, stream=True))
    assert chunks and all(chunk.choices for chunk in chunks), "the usage-only chunk leaked to the client"
    assert all(chunk.usage is None for chunk in chunks)
    sent = simulator.requests[-1]["body"]
    assert sent["stream_options"] == {"include_usage": True}
    running.settle()
    [event] = gateway_events(gw_ledger)
    assert event["cost_nanos"] == expected_nanos(gw_ledger, "chat", {**CHAT, "stream": True}, "openai", "gpt-4o")


def test_openai_chat_stream_keeps_the_usage_chunk_when_asked(running, virtual_key, gw_ledger):
    client = _openai(running, virtual_key)
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    chunks = list(client.chat.completions.create(**body))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    running.settle()
    [event] = gateway_events(gw_ledger)
    assert event["input_tokens"] == chunks[-1].usage.prompt_tokens
    assert event["cost_nanos"] == expected_nanos(gw_ledger, "chat", body, "openai", "gpt-4o")


def test_responses_and_embeddings(running, virtual_key, gw_ledger):
    client = _openai(running, virtual_key)
    response = client.responses.create(model="gpt-4.1-mini", input="Name three prime numbers.", max_output_tokens=40)
    assert response.usage.input_tokens > 0
    streamed = list(client.responses.create(model="gpt-4.1-mini", input="And three more.", stream=True))
    assert streamed[-1].type == "response.completed"
    embedding = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta gamma"])
    assert len(embedding.data) == 2
    running.settle()
    events = gateway_events(gw_ledger)
    assert len(events) == 3
    bodies = [
        ("responses", {"model": "gpt-4.1-mini", "input": "Name three prime numbers.", "max_output_tokens": 40}),
        ("responses", {"model": "gpt-4.1-mini", "input": "And three more.", "stream": True}),
        ("embeddings", {"model": "text-embedding-3-small", "input": ["alpha", "beta gamma"]}),
    ]
    expected = sorted(expected_nanos(gw_ledger, e, b, "openai", b["model"]) for e, b in bodies)
    assert sorted(e["cost_nanos"] for e in events) == expected
    assert {e["category"] for e in events} == {"llm_inference", "embedding"}


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_metered_exactly(running, virtual_key, gw_ledger, stream):
    client = _anthropic(running, virtual_key)
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "You are terse. " * 40, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "What is 2+2?"}],
    }
    if stream:
        with client.messages.stream(**body) as events_stream:
            final = events_stream.get_final_message()
    else:
        final = client.messages.create(**body)
    assert final.usage.cache_read_input_tokens > 0
    running.settle()
    [event] = gateway_events(gw_ledger)
    expected = expected_nanos(gw_ledger, "messages", body, "anthropic", "claude-sonnet-4-6")
    assert event["cost_nanos"] == expected
    assert event["cache_read_tokens"] == final.usage.cache_read_input_tokens
    assert event["output_tokens"] == final.usage.output_tokens


def test_models_lists_what_the_upstream_serves(running, virtual_key):
    models = _openai(running, virtual_key).models.list()
    assert "gpt-4o" in {m.id for m in models.data}


def test_wrong_or_missing_key_is_refused_in_each_shape(running):
    with pytest.raises(openai.AuthenticationError) as oa:
        _openai(running, "tlgw_nope_nope").chat.completions.create(**CHAT)
    assert "unknown or revoked virtual key" in str(oa.value)
    with pytest.raises(anthropic.AuthenticationError) as an:
        _anthropic(running, "tlgw_nope_nope").messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert an.value.body["type"] == "error" and an.value.body["error"]["type"] == "authentication_error"
    missing = httpx.post(f"{running.url}/v1/chat/completions", json=CHAT)
    assert missing.status_code == 401 and "virtual key" in missing.json()["error"]["message"]


def test_upstream_never_sees_the_virtual_key(running, virtual_key, simulator):
    _openai(running, virtual_key).chat.completions.create(**CHAT)
    headers = simulator.requests[-1]["headers"]
    assert headers["authorization"] == "Bearer sk-upstream-secret"
    assert virtual_key not in str(headers)


def test_a_stream_ends_with_its_cost_as_an_sse_comment(running, virtual_key, gw_ledger):
    body = {**CHAT, "stream": True}
    headers = {"authorization": f"Bearer {virtual_key}"}
    with httpx.stream("POST", f"{running.openai_base_url}/chat/completions", json=body, headers=headers) as response:
        text = response.read().decode()
    comment = [line for line in text.splitlines() if line.startswith(": x-fleetledger-cost-usd ")]
    running.settle()
    [event] = gateway_events(gw_ledger)
    assert comment == [f": x-fleetledger-cost-usd {usd(event['cost_nanos']):.9f}"]
    assert event["cost_nanos"] == expected_nanos(gw_ledger, "chat", body, "openai", "gpt-4o")
