"""The response cache in the gateway: a hit is served without the upstream and recorded with its saving."""

from __future__ import annotations

import json

import openai
import pytest

from fleetledger.gateway.keys import create_key
from fleetledger.gateway.policies import create_policy
from fleetledger.gateway.savings import cache_savings

from .gateway_support import DIMS, config_for, gateway_events, serve_gateway, usd

CHAT = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 20,
}


def _client(running, key):
    return openai.OpenAI(base_url=running.openai_base_url, api_key=key, max_retries=0)


def test_exact_hit_is_served_and_recorded_with_its_saving(gw_ledger, running, simulator):
    key, _ = create_key(gw_ledger.store, now=gw_ledger.clock(), dims=DIMS, cache="exact")
    other, _ = create_key(gw_ledger.store, now=gw_ledger.clock(), dims=DIMS, cache="exact")
    with _client(running, key) as client, _client(running, other) as stranger:
        first = client.chat.completions.with_raw_response.create(**CHAT)
        running.settle()  # the cache write happens after the response
        second = client.chat.completions.with_raw_response.create(**CHAT)
        assert second.headers["x-fleetledger-cache"] == "exact"
        assert second.headers["x-fleetledger-cost-usd"] == "0.000000000"
        assert second.headers["x-fleetledger-saved-usd"] == first.headers["x-fleetledger-cost-usd"]
        assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
        assert len(simulator.requests) == 1
        # Another key's cache partition is its own: no answer crosses keys.
        third = stranger.chat.completions.with_raw_response.create(**CHAT)
        assert "x-fleetledger-cache" not in third.headers
        assert len(simulator.requests) == 2
    running.settle()
    events = gateway_events(gw_ledger)
    assert len(events) == 3
    original, hit = events[0], events[1]
    assert hit["cost_nanos"] == 0 and hit["input_tokens"] == 0 and hit["output_tokens"] == 0
    tags = hit["tags"] if isinstance(hit["tags"], dict) else json.loads(hit["tags"])
    assert tags["gateway.cache"] == "exact"
    assert tags["gateway.saved_usd"] == f"{usd(original['cost_nanos']):.9f}"
    assert hit["prompt_hash"] == original["prompt_hash"] and hit["prompt_hash"]
    assert hit["model"] == "gpt-4o" and hit["department"] == DIMS["department"]
    savings = cache_savings(gw_ledger, since="1d")
    assert savings["hits"] == 1 and savings["saved_usd"] == f"{usd(original['cost_nanos']):.9f}"


def test_a_cache_policy_switches_caching_on_for_its_scope(gw_ledger, running, simulator, virtual_key):
    create_policy(
        gw_ledger.store, kind="cache", scope={"department": "research"}, params={"mode": "exact"}, now=gw_ledger.clock()
    )
    running.refresh()
    with _client(running, virtual_key) as client:
        client.chat.completions.create(**CHAT)
        running.settle()
        again = client.chat.completions.with_raw_response.create(**CHAT)
        assert again.headers["x-fleetledger-cache"] == "exact"
        # A streaming client gets the cached answer replayed as events, usage chunk only if asked.
        chunks = list(client.chat.completions.create(**CHAT, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == again.parse().choices[0].message.content
        assert all(c.usage is None for c in chunks)
        with_usage = list(client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True}))
        assert with_usage[-1].usage.completion_tokens == again.parse().usage.completion_tokens
    assert len(simulator.requests) == 1
    running.settle()
    assert cache_savings(gw_ledger, since="1d")["hits"] == 3


def test_anthropic_stream_replayed_from_the_cache(gw_ledger, running, simulator):
    import anthropic

    key, _ = create_key(gw_ledger.store, now=gw_ledger.clock(), dims=DIMS, cache="exact")
    body = {"model": "claude-haiku-4-5", "max_tokens": 30, "messages": [{"role": "user", "content": "Name a color."}]}
    with anthropic.Anthropic(base_url=running.url, api_key=key, max_retries=0) as client:
        original = client.messages.create(**body)
        running.settle()
        with client.messages.stream(**body) as stream:
            replayed = stream.get_final_message()
    assert replayed.content[0].text == original.content[0].text
    assert replayed.usage.output_tokens == original.usage.output_tokens
    assert replayed.usage.input_tokens == original.usage.input_tokens
    assert len(simulator.requests) == 1


def test_semantic_hit_for_a_similar_question(gw_ledger, running, simulator):
    key, _ = create_key(gw_ledger.store, now=gw_ledger.clock(), dims=DIMS, cache="semantic")
    with _client(running, key) as client:
        client.chat.completions.create(**CHAT, temperature=0)
        running.settle()
        similar = {**CHAT, "messages": [{"role": "user", "content": "What is the capital of France ?"}]}
        hit = client.chat.completions.with_raw_response.create(**similar, temperature=0)
        assert hit.headers["x-fleetledger-cache"] == "semantic"
        unrelated = {**CHAT, "messages": [{"role": "user", "content": "How do I bake sourdough bread at home?"}]}
        miss = client.chat.completions.with_raw_response.create(**unrelated, temperature=0)
        assert "x-fleetledger-cache" not in miss.headers
    assert len(simulator.requests) == 2
    running.settle()
    assert cache_savings(gw_ledger, since="1d")["by_kind"]["semantic"]["hits"] == 1


def test_two_gateways_share_the_exact_cache_through_redis(gw_ledger, simulator):
    import uuid

    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    # A database number of its own would collide with other tests; a fresh key prefix is the namespace.
    url = "redis://127.0.0.1:6379/0"
    namespace = uuid.uuid4().hex
    key, _ = create_key(gw_ledger.store, now=gw_ledger.clock(), dims={**DIMS, "project": namespace}, cache="exact")
    config = config_for(simulator, cache={"exact": {"url": url, "ttl_s": 60}})
    first, second = serve_gateway(gw_ledger, config), serve_gateway(gw_ledger, config)
    try:
        with _client(first, key) as one, _client(second, key) as two:
            body = {**CHAT, "messages": [{"role": "user", "content": f"Shared question {namespace}"}]}
            one.chat.completions.create(**body)
            first.settle()
            hit = two.chat.completions.with_raw_response.create(**body)
            assert hit.headers["x-fleetledger-cache"] == "exact"
        assert len(simulator.requests) == 1
    finally:
        first.stop()
        second.stop()
