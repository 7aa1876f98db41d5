"""The one ``key=value`` filter grammar (fleetledger.core.filters), and every route that takes it."""

from __future__ import annotations

import pytest

from fleetledger.cli.costs import parse_where as cli_parse_where
from fleetledger.core.errors import InvalidInput
from fleetledger.core.filters import FILTER_KEYS, check_key, parse_item, parse_where
from fleetledger.core.usage import DIMENSIONS

from .conftest import auth
from .test_api import EVENTS


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], {}),
        (["environment=production"], {"environment": ["production"]}),
        (["provider=openai,anthropic"], {"provider": ["openai", "anthropic"]}),
        (["provider=openai", "provider=anthropic"], {"provider": ["openai", "anthropic"]}),
        (["department="], {"department": [None]}),
        (["department=research,"], {"department": ["research", None]}),
        ([" model = gpt-4o , claude "], {"model": ["gpt-4o", "claude"]}),
        (["tag.feature=search"], {"tag.feature": ["search"]}),
        (["tag.q=a=b"], {"tag.q": ["a=b"]}),
        (["agent=planner", "department=sales"], {"agent": ["planner"], "department": ["sales"]}),
    ],
)
def test_good_filters(items, expected):
    assert parse_where(items) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("department", "where 'department': use key=value, e.g. environment=production"),
        ("", "where '': use key=value"),
        ("=research", "where '=research': the key before '=' is empty"),
        (" =x", "where ' =x': the key before '=' is empty"),
        ("departmnet=x", "where 'departmnet=x': unknown key 'departmnet'; use one of provider, model,"),
        ("tag.=x", "where 'tag.=x': 'tag.' names no tag; use tag.<name>=value"),
        ("day=2026-10-15", "where 'day=2026-10-15': 'day' groups by time but does not filter"),
        ("hour=3", "'hour' groups by time"),
        ("Department=x", "unknown key 'Department'"),
    ],
)
def test_bad_filters_name_the_bad_part(item, message):
    with pytest.raises(InvalidInput) as raised:
        parse_where(["environment=production", item])
    assert message in raised.value.message
    assert "or tag.<name>" in raised.value.message or "unknown key" not in message


def test_every_dimension_is_a_filter_key_and_nothing_else():
    assert FILTER_KEYS == DIMENSIONS
    for key in DIMENSIONS:
        assert check_key(f" {key} ") == key
    assert check_key("tag.agent_status") == "tag.agent_status"
    assert parse_item("status=error,") == ("status", ["error", None])


def test_the_cli_names_its_option():
    assert cli_parse_where(["provider=openai"]) == {"provider": ["openai"]}
    with pytest.raises(InvalidInput, match=r"^--where 'provider': use key=value"):
        cli_parse_where(["provider"])
    with pytest.raises(InvalidInput, match=r"^--where 'vendor=x': unknown key 'vendor'"):
        cli_parse_where(["vendor=x"])


# -- the API: every route with a where= parameter parses it with the grammar ------------------------

#: Values for the other required parameters of routes that take where=.
FILL = {"day": "2026-10-15", "chart": "trend", "to_provider": "anthropic"}


async def _where_routes(api, key) -> list[tuple[str, dict[str, str]]]:
    spec = (await api.get("/openapi.json", headers=auth(key))).json()
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            if method != "get" or not any(p["name"] == "where" and p["in"] == "query" for p in parameters):
                continue
            url, params = path, {}
            for parameter in parameters:
                if parameter["in"] == "path":
                    url = url.replace("{" + parameter["name"] + "}", FILL[parameter["name"]])
                elif parameter.get("required"):
                    params[parameter["name"]] = FILL[parameter["name"]]
            found.append((url, params))
    return found


@pytest.mark.anyio
async def test_every_where_route_uses_the_grammar(api, keys):
    admin = auth(keys["admin"])
    await api.post("/api/v1/events", json=EVENTS, headers=auth(keys["ingest"]))
    routes = await _where_routes(api, keys["admin"])
    assert {url for url, _ in routes} >= {
        "/api/costs",
        "/api/costs/daily/2026-10-15",
        "/api/charts/trend",
        "/api/matrix/models",
        "/api/matrix/providers",
        "/api/whatif/provider-shift",
        "/api/requests",
    }
    for url, params in routes:
        base = {**params, "since": "2026-10-01", "until": "2026-11-01"} if "daily" not in url else params
        good = await api.get(url, params={**base, "where": ["department=research,", "tag.x="]}, headers=admin)
        assert good.status_code == 200, f"{url}: {good.status_code} {good.text}"
        for bad, part in (
            ("departmnet=x", "unknown key 'departmnet'"),
            ("department", "use key=value"),
            ("tag.=x", "names no tag"),
            ("day=2026-10-15", "groups by time"),
        ):
            response = await api.get(url, params={**base, "where": ["provider=openai", bad]}, headers=admin)
            assert response.status_code == 400, f"{url} {bad}: {response.status_code} {response.text}"
            message = response.json()["error"]["message"]
            assert message.startswith(f"where {bad!r}: ") and part in message, f"{url}: {message}"


@pytest.mark.anyio
async def test_filters_select_and_scope(api, keys):
    unattributed = {"timestamp": "2026-10-15T12:00:00Z", "provider": "openai", "model": "gpt-4o", "input_tokens": 10}
    await api.post("/api/v1/events", json=[*EVENTS, unattributed], headers=auth(keys["ingest"]))
    params = {"by": "department", "since": "2026-10-01", "until": "2026-11-01"}

    async def departments(where, key="finops"):
        response = await api.get("/api/costs", params={**params, "where": where}, headers=auth(keys[key]))
        assert response.status_code == 200, response.text
        return {r["department"] for r in response.json()["rows"]}

    assert await departments([]) == {"research", "sales", None}
    assert await departments(["department=research,sales"]) == {"research", "sales"}
    assert await departments(["department=research", "department=sales"]) == {"research", "sales"}
    assert await departments(["department="]) == {None}
    assert await departments(["provider=anthropic"]) == {"sales"}
    assert await departments(["provider=anthropic", "department=research"]) == set()
    assert await departments([], key="viewer") == {"research"}
    denied = await api.get(
        "/api/costs", params={**params, "where": "department=research,sales"}, headers=auth(keys["viewer"])
    )
    assert denied.status_code == 403 and "not sales" in denied.json()["error"]["message"]
