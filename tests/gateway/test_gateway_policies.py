"""Policies: the core module, the REST routes on the main server, and a running gateway applying them."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from fleetledger.core.errors import InvalidInput, NotFound
from fleetledger.gateway.policies import PolicyBook, create_policy, delete_policy, list_policies

from .gateway_support import config_for, expected_nanos, gateway_events, serve_gateway


def test_params_and_scope_are_validated_naming_the_field(ledger):
    with pytest.raises(InvalidInput, match="kind: 'turbo' must be one of"):
        create_policy(ledger.store, kind="turbo", now=ledger.clock())
    with pytest.raises(InvalidInput, match="params.to_model"):
        create_policy(ledger.store, kind="model_downgrade", params={"from_model": "gpt-4o"}, now=ledger.clock())
    with pytest.raises(InvalidInput, match="params.max_output_tokens"):
        create_policy(ledger.store, kind="max_output_tokens", params={"max_output_tokens": 0}, now=ledger.clock())
    with pytest.raises(InvalidInput, match="scope: unknown dimension 'planet'"):
        create_policy(ledger.store, kind="cache", scope={"planet": "mars"}, now=ledger.clock())
    with pytest.raises(NotFound):
        delete_policy(ledger.store, 999)
    assert list_policies(ledger.store) == []


def test_most_specific_scope_wins_and_switch_follows_the_downgrade(ledger):
    now = ledger.clock()
    fleet = create_policy(ledger.store, kind="max_output_tokens", params={"max_output_tokens": 800}, now=now)
    agent = create_policy(
        ledger.store, kind="max_output_tokens", scope={"agent": "a1"}, params={"max_output_tokens": 100}, now=now
    )
    create_policy(
        ledger.store,
        kind="model_downgrade",
        scope={"department": "research"},
        params={"from_model": "gpt-4o", "to_model": "gpt-4o-mini"},
        now=now,
    )
    create_policy(
        ledger.store,
        kind="provider_switch",
        params={"model": "gpt-4o-mini", "from_provider": "openai", "to_provider": "azure"},
        now=now,
    )
    book = PolicyBook(ledger.store)
    assert book.refresh() and not book.refresh()  # reloads only when the version moved

    def route(model: str) -> str:
        return "openai"

    applied = book.apply({"department": "research", "agent": "a1"}, "gpt-4o", route)
    assert (applied.model, applied.downgraded_from, applied.upstream) == ("gpt-4o-mini", "gpt-4o", "azure")
    assert applied.max_output_tokens == 100 and agent.id in applied.policy_ids
    other = book.apply({"department": "sales"}, "gpt-4o", route)
    assert (other.model, other.upstream, other.max_output_tokens) == ("gpt-4o", "openai", 800)
    assert other.policy_ids == [fleet.id]
    delete_policy(ledger.store, fleet.id)
    assert book.refresh()
    assert book.apply({"department": "sales"}, "gpt-4o", route).max_output_tokens is None


@pytest.mark.anyio
async def test_rest_routes_follow_the_contract(ledger):
    from fleetledger.server import create_app

    app = create_app(ledger, local_only=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api:
        made = await api.post(
            "/api/gateway/policies",
            json={
                "kind": "cache",
                "scope": {"agent": "x"},
                "params": {"mode": "semantic", "ttl_s": 600, "threshold": 0.9},
                "recommendation_id": 12,
                "note": "A3.5",
            },
        )
        assert made.status_code == 201, made.text
        policy = made.json()
        assert set(policy) == {
            "id",
            "kind",
            "scope",
            "params",
            "enabled",
            "recommendation_id",
            "note",
            "created_at",
            "created_by",
        }
        assert policy["params"] == {"mode": "semantic", "ttl_s": 600, "threshold": 0.9} and policy["enabled"]
        listed = (await api.get("/api/gateway/policies")).json()
        assert [p["id"] for p in listed["policies"]] == [policy["id"]]
        bad = await api.post("/api/gateway/policies", json={"kind": "cache", "params": {"mode": "fuzzy"}})
        assert bad.status_code == 400 and "params.mode" in bad.json()["error"]["message"]
        assert (await api.delete(f"/api/gateway/policies/{policy['id']}")).status_code == 204
        assert (await api.delete(f"/api/gateway/policies/{policy['id']}")).status_code == 404
        assert (await api.get("/api/gateway/policies")).json() == {"policies": []}


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_running_gateway_applies_policies_without_restart(gw_ledger, simulator, virtual_key, tmp_path):
    config = config_for(
        simulator,
        upstreams={
            "openai": {"kind": "openai", "base_url": simulator.url, "api_key_env": "TL_TEST_OPENAI_KEY"},
            "azure": {"kind": "openai", "base_url": simulator.url, "api_key_env": "TL_TEST_OPENAI_KEY"},
        },
    )
    running = serve_gateway(gw_ledger, config)
    client = openai.OpenAI(base_url=running.openai_base_url, api_key=virtual_key, max_retries=0)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Draft a reply to the customer."}]}
    try:
        first = client.chat.completions.with_raw_response.create(**body)
        assert "x-fleetledger-downgraded-from" not in first.headers
        now = gw_ledger.clock()
        create_policy(
            gw_ledger.store,
            kind="model_downgrade",
            scope={"department": "research"},
            params={"from_model": "gpt-4o", "to_model": "gpt-4o-mini"},
            now=now,
        )
        create_policy(gw_ledger.store, kind="max_output_tokens", params={"max_output_tokens": 7}, now=now)
        create_policy(
            gw_ledger.store,
            kind="provider_switch",
            params={"model": "gpt-4o-mini", "from_provider": "openai", "to_provider": "azure"},
            now=now,
        )
        _wait_for(lambda: len(running.gateway.policies.policies) == 3)
        second = client.chat.completions.with_raw_response.create(**body)
        assert second.headers["x-fleetledger-downgraded-from"] == "gpt-4o"
        sent = simulator.requests[-1]["body"]
        assert sent["model"] == "gpt-4o-mini" and sent["max_completion_tokens"] == 7
        assert second.parse().usage.completion_tokens <= 7
        running.settle()
        events = gateway_events(gw_ledger)
        assert [(e["provider"], e["model"]) for e in events] == [("openai", "gpt-4o"), ("azure", "gpt-4o-mini")]
        capped = {**body, "model": "gpt-4o-mini", "max_completion_tokens": 7}
        assert 0 < events[1]["cost_nanos"] == expected_nanos(gw_ledger, "chat", capped, "azure", "gpt-4o-mini")
    finally:
        client.close()
        running.stop()
