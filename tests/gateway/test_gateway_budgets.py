"""Budgets in line: block, downgrade, commit exactly once; upstream failures charge nothing."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import select

from fleetledger.budgets.tables import reservations

from .gateway_support import config_for, expected_nanos, gateway_events, serve_gateway, usd

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Write a haiku about invoices."}]}


@pytest.fixture
def clients(running, virtual_key):
    oa = openai.OpenAI(base_url=running.openai_base_url, api_key=virtual_key, max_retries=0)
    an = anthropic.Anthropic(base_url=running.url, api_key=virtual_key, max_retries=0)
    yield oa, an
    oa.close()
    an.close()


def _budget(ledger, running, **options):
    budget = ledger.budgets.create(scope={"department": "research"}, **options)
    running.refresh()
    return budget


def _spent(ledger, name: str) -> tuple[int, int]:
    ledger.flush()
    with ledger.store.read() as conn:
        budget = ledger.budgets.get(name, conn)
        spent, reserved, _ = ledger.enforcer.usage(conn, budget, ledger.clock())
    return spent, reserved


def _reservation_states(ledger) -> list[str]:
    with ledger.store.read() as conn:
        return [r.status for r in conn.execute(select(reservations.c.status).order_by(reservations.c.created_us))]


def test_a_block_budget_refuses_with_the_budget_named(gw_ledger, running, clients):
    oa, an = clients
    _budget(gw_ledger, running, name="research-cap", amount="0.000001", action="block")
    with pytest.raises(openai.RateLimitError) as refused:
        oa.chat.completions.create(**CHAT)
    error = refused.value.body
    assert "research-cap" in error["message"] and error["code"] == "budget_exceeded"
    assert error["fleetledger"]["budget"] == "research-cap"
    assert error["fleetledger"]["remaining_usd"] == "0.000001000"
    assert error["fleetledger"]["resets_at"]
    with pytest.raises(anthropic.RateLimitError) as refused_an:
        an.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert refused_an.value.body["error"]["type"] == "rate_limit_error"
    assert "research-cap" in refused_an.value.body["error"]["message"]
    running.settle()
    assert gateway_events(gw_ledger) == []
    assert _spent(gw_ledger, "research-cap") == (0, 0)


def test_the_actual_cost_is_committed_once_and_the_hold_released(gw_ledger, running, clients, simulator):
    oa, _ = clients
    _budget(gw_ledger, running, name="research", amount="100", action="block")
    raw = oa.chat.completions.with_raw_response.create(**CHAT, max_tokens=30)
    running.settle()
    cost = expected_nanos(gw_ledger, "chat", {**CHAT, "max_tokens": 30}, "openai", "gpt-4o")
    assert raw.headers["x-fleetledger-cost-usd"] == f"{usd(cost):.9f}"
    assert raw.headers["x-fleetledger-budget-remaining-usd"] == f"{usd(100_000_000_000 - cost):.9f}"
    assert _spent(gw_ledger, "research") == (cost, 0)
    assert _reservation_states(gw_ledger) == ["committed"]
    with oa.chat.completions.create(**CHAT, stream=True) as stream:
        list(stream)
    running.settle()
    streamed = expected_nanos(gw_ledger, "chat", {**CHAT, "stream": True}, "openai", "gpt-4o")
    assert _spent(gw_ledger, "research") == (cost + streamed, 0)
    assert _reservation_states(gw_ledger) == ["committed", "committed"]
    assert sum(e["cost_nanos"] for e in gateway_events(gw_ledger)) == cost + streamed


def test_a_downgrade_budget_rewrites_the_model_and_says_so(gw_ledger, running, clients, simulator):
    oa, _ = clients
    _budget(gw_ledger, running, name="research", amount="0.000001", action="downgrade", downgrade_model="gpt-4o-mini")
    raw = oa.chat.completions.with_raw_response.create(**CHAT)
    assert raw.headers["x-fleetledger-downgraded-from"] == "gpt-4o"
    assert raw.parse().model == "gpt-4o-mini"
    assert simulator.requests[-1]["body"]["model"] == "gpt-4o-mini"
    running.settle()
    [event] = gateway_events(gw_ledger)
    assert event["model"] == "gpt-4o-mini"
    assert event["cost_nanos"] == expected_nanos(
        gw_ledger, "chat", {**CHAT, "model": "gpt-4o-mini"}, "openai", "gpt-4o-mini"
    )


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_failure_charges_nothing(gw_ledger, running, clients, stream):
    oa, an = clients
    _budget(gw_ledger, running, name="research", amount="100", action="block")
    with pytest.raises(openai.InternalServerError):
        if stream:
            list(oa.chat.completions.create(model="sim-fail-500", messages=CHAT["messages"], stream=True))
        else:
            oa.chat.completions.create(model="sim-fail-500", messages=CHAT["messages"])
    with pytest.raises(anthropic.RateLimitError):
        an.messages.create(
            model="claude-haiku-4-5",
            max_tokens=20,
            stream=stream,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-simulator-fail": "429"},
        )
    running.settle()
    assert gateway_events(gw_ledger) == []
    assert _spent(gw_ledger, "research") == (0, 0)
    assert _reservation_states(gw_ledger) == ["released", "released"]


def test_a_stream_cut_midway_charges_only_what_was_reported(gw_ledger, running, clients):
    oa, an = clients
    _budget(gw_ledger, running, name="research", amount="100", action="block")
    # The SDKs surface a cut stream as their HTTP library's protocol error (not an API error).
    cut = "peer closed connection|incomplete|Connection error"
    with pytest.raises(Exception, match=cut):
        list(oa.chat.completions.create(model="sim-fail-disconnect", messages=CHAT["messages"], stream=True))
    body = {"model": "claude-sonnet-4-6", "max_tokens": 50, "messages": [{"role": "user", "content": "Tell me more."}]}
    with pytest.raises(Exception, match=cut):
        with an.messages.stream(**body, extra_headers={"x-simulator-fail": "disconnect"}) as stream:
            list(stream)
    running.settle()
    # OpenAI reports usage only in the last chunk: nothing to charge. Anthropic reported the input
    # (and the first output token) in message_start: exactly that is charged, as an error.
    [event] = gateway_events(gw_ledger)
    assert event["provider"] == "anthropic" and event["status"] == "error"
    assert event["output_tokens"] <= 1 and event["input_tokens"] > 0
    assert _spent(gw_ledger, "research") == (event["cost_nanos"], 0)
    assert sorted(_reservation_states(gw_ledger)) == ["committed", "released"]


def test_fallback_on_upstream_error_and_timeout(gw_ledger, simulator, virtual_key, tmp_path):
    config = config_for(
        simulator,
        upstreams={
            "openai": {
                "kind": "openai",
                "base_url": simulator.url,
                "api_key_env": "TL_TEST_OPENAI_KEY",
                "timeout_s": 0.5,
            },
        },
        routes=[
            {"model": "sim-fail-500*", "upstream": "openai", "fallbacks": [{"model": "gpt-4o-mini"}]},
            {"model": "sim-fail-timeout", "upstream": "openai"},
        ],
    )
    running = serve_gateway(gw_ledger, config)
    client = openai.OpenAI(base_url=running.openai_base_url, api_key=virtual_key, max_retries=0)
    try:
        _budget(gw_ledger, running, name="research", amount="100", action="block")
        answer = client.chat.completions.create(model="sim-fail-500-primary", messages=CHAT["messages"])
        assert answer.model == "gpt-4o-mini"
        with pytest.raises(openai.APIStatusError) as timed_out:
            client.chat.completions.create(model="sim-fail-timeout", messages=CHAT["messages"])
        assert timed_out.value.status_code == 504 and "did not answer in time" in timed_out.value.message
        running.settle()
        [event] = gateway_events(gw_ledger)
        assert event["model"] == "gpt-4o-mini"
        mini = {"model": "gpt-4o-mini", "messages": CHAT["messages"]}
        assert event["cost_nanos"] == expected_nanos(gw_ledger, "chat", mini, "openai", "gpt-4o-mini")
        assert _spent(gw_ledger, "research") == (event["cost_nanos"], 0)
        assert sorted(_reservation_states(gw_ledger)) == ["committed", "released"]
    finally:
        client.close()
        running.stop()


def test_a_client_that_hangs_up_mid_stream_is_charged_what_was_reported(gw_ledger, running, virtual_key):
    _budget(gw_ledger, running, name="research", amount="100", action="block")
    slow = {"x-simulator-chunk-delay-ms": "100"}
    anthropic_body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 200,
        "stream": True,
        "messages": [{"role": "user", "content": "Write a long story about ledgers."}],
    }
    headers = {"x-api-key": virtual_key, "anthropic-version": "2023-06-01", **slow}
    with httpx.stream("POST", f"{running.url}/v1/messages", json=anthropic_body, headers=headers) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:") and "content_block_delta" in line:
                break  # hang up after the first words
    openai_body = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 200, "messages": anthropic_body["messages"]}
    headers = {"authorization": f"Bearer {virtual_key}", **slow}
    with httpx.stream("POST", f"{running.url}/v1/chat/completions", json=openai_body, headers=headers) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                break
    running.settle()
    [event] = gateway_events(gw_ledger)  # OpenAI had reported nothing yet: released, not charged
    assert event["provider"] == "anthropic" and event["status"] == "error"
    tags = event["tags"] if isinstance(event["tags"], dict) else json.loads(event["tags"])
    assert tags["gateway.outcome"] == "client_disconnected"
    assert event["output_tokens"] == 1 and event["input_tokens"] > 0
    assert _spent(gw_ledger, "research") == (event["cost_nanos"], 0)
    assert sorted(_reservation_states(gw_ledger)) == ["committed", "released"]


def test_an_unreachable_upstream_is_502_and_charges_nothing(gw_ledger, simulator, virtual_key):
    from .gateway_support import free_port

    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = config_for(
        simulator,
        upstreams={"openai": {"kind": "openai", "base_url": down, "api_key_env": "TL_TEST_OPENAI_KEY"}},
    )
    running = serve_gateway(gw_ledger, config)
    try:
        _budget(gw_ledger, running, name="research", amount="100", action="block")
        with openai.OpenAI(base_url=running.openai_base_url, api_key=virtual_key, max_retries=0) as client:
            with pytest.raises(openai.APIStatusError) as failed:
                client.chat.completions.create(**CHAT)
        assert failed.value.status_code == 502 and "upstream 'openai'" in failed.value.message
        running.settle()
        assert gateway_events(gw_ledger) == []
        assert _spent(gw_ledger, "research") == (0, 0)
        assert _reservation_states(gw_ledger) == ["released"]
    finally:
        running.stop()
