"""Bad input gets a 4xx in the provider's error shape with a clear message; keys, limits and config."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from typer.testing import CliRunner

from fleetledger.cli import app as cli
from fleetledger.core.errors import InvalidInput
from fleetledger.gateway.config import load_config, parse_config
from fleetledger.gateway.keys import create_key, revoke_key

from .gateway_support import DIMS, config_for, gateway_events, serve_gateway

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}


def _post(running, path: str, key: str, content: bytes, anthropic_client: bool = False) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if anthropic_client:
        headers |= {"x-api-key": key, "anthropic-version": "2023-06-01"}
    else:
        headers["authorization"] = f"Bearer {key}"
    return httpx.post(f"{running.url}{path}", content=content, headers=headers)


def test_malformed_json_and_missing_model(running, virtual_key):
    broken = _post(running, "/v1/chat/completions", virtual_key, b'{"model": "gpt-4o", "messages": [')
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in broken.json()["error"]["message"]
    listed = _post(running, "/v1/messages", virtual_key, b"[1, 2]", anthropic_client=True)
    assert listed.status_code == 400
    assert listed.json()["type"] == "error" and "must be a JSON object" in listed.json()["error"]["message"]
    no_model = _post(running, "/v1/chat/completions", virtual_key, json.dumps({"messages": []}).encode())
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"


def test_unknown_model_is_404_in_each_shape(running, virtual_key):
    with openai.OpenAI(base_url=running.openai_base_url, api_key=virtual_key, max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="gpt-does-not-exist", messages=CHAT["messages"])
    assert "gpt-does-not-exist" in missing.value.message and missing.value.body["code"] == "model_not_found"
    with anthropic.Anthropic(base_url=running.url, api_key=virtual_key, max_retries=0) as client:
        with pytest.raises(anthropic.NotFoundError) as missing_an:
            client.messages.create(model="claude-nope-1", max_tokens=5, messages=CHAT["messages"])
    assert missing_an.value.body["error"]["type"] == "not_found_error"
    wrong_door = _post(running, "/v1/messages", virtual_key, json.dumps({**CHAT, "max_tokens": 5}).encode(), True)
    assert wrong_door.status_code == 404 and "'gpt-4o'" in wrong_door.json()["error"]["message"]


def test_a_key_without_rights_to_the_model_is_403(gw_ledger, running):
    key, _ = create_key(gw_ledger.store, now=gw_ledger.clock(), dims=DIMS, allowed_models=["gpt-4o-mini"])
    with openai.OpenAI(base_url=running.openai_base_url, api_key=key, max_retries=0) as client:
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(**CHAT)
        assert "may not use model 'gpt-4o'" in refused.value.message and "gpt-4o-mini" in refused.value.message
        assert client.chat.completions.create(**{**CHAT, "model": "gpt-4o-mini"}).choices
        assert [m.id for m in client.models.list().data] == ["gpt-4o-mini"]


def test_oversized_body_is_413(gw_ledger, simulator, virtual_key):
    running = serve_gateway(gw_ledger, config_for(simulator, limits={"max_body_bytes": 2048}))
    try:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        response = _post(running, "/v1/chat/completions", virtual_key, json.dumps(big).encode())
        assert response.status_code == 413 and "2048-byte limit" in response.json()["error"]["message"]
        chunked = httpx.post(
            f"{running.url}/v1/chat/completions",
            content=iter([json.dumps(big).encode()]),
            headers={"authorization": f"Bearer {virtual_key}"},
        )
        assert chunked.status_code == 413
        assert simulator.requests == []
    finally:
        running.stop()


def test_rate_limit_and_revocation(gw_ledger, running):
    key, record = create_key(gw_ledger.store, now=gw_ledger.clock(), dims=DIMS, rate_limit_rpm=2)
    with openai.OpenAI(base_url=running.openai_base_url, api_key=key, max_retries=0) as client:
        client.chat.completions.create(**CHAT)
        client.chat.completions.create(**CHAT)
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(**CHAT)
        assert "2 requests per minute" in limited.value.message
        assert int(limited.value.response.headers["retry-after"]) >= 1
        revoke_key(gw_ledger.store, record.key_id, now=gw_ledger.clock())
        running.refresh()
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(**CHAT)
    running.settle()
    assert len(gateway_events(gw_ledger)) == 2


def test_unknown_routes_and_methods(running, virtual_key):
    assert httpx.get(f"{running.url}/healthz").json() == {"status": "ok"}
    unknown = httpx.post(f"{running.url}/v1/fine_tuning/jobs", headers={"authorization": f"Bearer {virtual_key}"})
    assert unknown.status_code == 404 and "no route" in unknown.json()["error"]["message"]
    assert httpx.get(f"{running.url}/v1/chat/completions").status_code == 405


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(InvalidInput, match=r"upstreams.openai.base_url: .*http://"):
        parse_config({"upstreams": {"openai": {"kind": "openai", "base_url": "api.openai.com"}}})
    with pytest.raises(InvalidInput, match=r"routes.0.upstream: unknown upstream 'azure'"):
        parse_config({"routes": [{"model": "gpt-4o", "upstream": "azure"}]})
    with pytest.raises(InvalidInput, match=r"limits.max_body_bytes"):
        parse_config({"limits": {"max_body_bytes": 1}})
    with pytest.raises(InvalidInput, match=r"upstreams.x.kind"):
        parse_config({"upstreams": {"x": {"kind": "gemini", "base_url": "http://h"}}})
    bad = tmp_path / "gateway.yaml"
    bad.write_text("upstreams: [unclosed")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "ok.yaml"
    good.write_text("upstreams:\n  openai: {kind: openai, base_url: 'https://api.openai.com/v1'}\n")
    config = load_config(good)
    assert config.upstreams["openai"].base_url == "https://api.openai.com"
    assert config.upstreams["openai"].provider == "openai"


def test_keys_cli_create_list_revoke(db_url, tmp_path):
    runner = CliRunner()
    made = runner.invoke(
        cli,
        [
            "--db",
            db_url,
            "gateway",
            "keys",
            "create",
            "--name",
            "bot",
            "--dim",
            "department=research",
            "--dim",
            "agent=bot",
            "--model",
            "gpt-4o-mini",
            "--cache",
            "exact",
            "--format",
            "json",
        ],
    )
    assert made.exit_code == 0, made.output
    record = json.loads(made.stdout)
    assert record["key"].startswith(f"tlgw_{record['key_id']}_")
    assert record["dims"] == {"department": "research", "agent": "bot"}
    listed = runner.invoke(cli, ["--db", db_url, "gateway", "keys", "list", "--format", "json"])
    [row] = json.loads(listed.stdout)
    assert record["key"] not in listed.stdout and row["allowed_models"] == ["gpt-4o-mini"]
    assert runner.invoke(cli, ["--db", db_url, "gateway", "keys", "revoke", record["key_id"]]).exit_code == 0
    assert json.loads(runner.invoke(cli, ["--db", db_url, "gateway", "keys", "list", "--format", "json"]).stdout)[0][
        "revoked"
    ]
    bad = runner.invoke(cli, ["--db", db_url, "gateway", "keys", "create", "--dim", "planet=mars"])
    assert bad.exit_code != 0 and "unknown dimension 'planet'" in bad.output
    missing = runner.invoke(cli, ["--db", db_url, "gateway", "keys", "revoke", "nope"])
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_key_defaults_from_the_config_fill_what_a_key_leaves_unset(gw_ledger, simulator):
    key, _ = create_key(gw_ledger.store, now=gw_ledger.clock(), dims={"agent": "bot", "environment": "staging"})
    config = config_for(simulator, keys={"dims": {"environment": "production", "team": "core"}, "rate_limit_rpm": 1})
    running = serve_gateway(gw_ledger, config)
    try:
        with openai.OpenAI(base_url=running.openai_base_url, api_key=key, max_retries=0) as client:
            client.chat.completions.create(**CHAT)
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(**CHAT)
        running.settle()
        [event] = gateway_events(gw_ledger)
        assert (event["agent"], event["environment"], event["team"]) == ("bot", "staging", "core")
    finally:
        running.stop()
