"""Anomalies: a clear spike is found with its cause, rescans are idempotent, the lifecycle holds.

The accuracy target on the demo's injected spikes (precision and recall >= 0.9) is not met yet;
see the issue notes. These tests cover what the detector does today.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tokenledger.errors import InvalidInput
from tokenledger.insights import anomalies


@pytest.fixture
def spiky(ledger, clock):
    """35 quiet days of two agents, then 2 days where one agent's requests jump tenfold."""
    rng = random.Random(4)
    items = []
    for day in range(35, 0, -1):
        for agent in ("planner", "writer"):
            calls = 40 if not (agent == "planner" and day in (3, 2)) else 400
            for n in range(calls):
                items.append((f"{day}-{agent}-{n}", {
                    "timestamp": (clock.now - timedelta(days=day, minutes=n)).isoformat(),
                    "provider": "openai", "model": "gpt-4o-mini", "agent": agent, "department": "research",
                    "operation": "plan" if agent == "planner" else "draft",
                    "input_tokens": 2_000 + rng.randint(0, 200), "output_tokens": 300 + rng.randint(0, 50),
                }))  # fmt: skip
    ledger.ingest(items)
    return ledger


def test_a_clear_spike_is_found_with_its_cause_and_rescans_are_idempotent(spiky, clock):
    found = anomalies.scan(spiky, levels=("agent",), since="35d", now=clock.now)
    planner = [a for a in found if a.scope.get("agent") == "planner"]
    assert planner, [a.to_dict() for a in found]
    spike = planner[0]
    assert spike.actual_usd > spike.expected_usd * 3
    assert spike.causes and spike.causes[0]["cause"] == "request_surge"
    assert not [a for a in found if a.scope.get("agent") == "writer"]
    again = anomalies.scan(spiky, levels=("agent",), since="35d", now=clock.now)
    assert sorted(a.id for a in again) == sorted(a.id for a in found)


def test_lifecycle_and_expected_suppression(spiky, clock):
    [spike] = [a for a in anomalies.scan(spiky, levels=("agent",), since="35d", now=clock.now)
               if a.scope.get("agent") == "planner"][:1]  # fmt: skip
    with pytest.raises(InvalidInput, match="status"):
        anomalies.set_status(spiky.store, spike.id, "solved", now=clock.now)
    marked = anomalies.set_status(spiky.store, spike.id, "expected", note="quarter-end batch", now=clock.now)
    assert marked.status == "expected"
    listed = anomalies.list_anomalies(spiky.store, status="expected")
    assert [a.id for a in listed] == [spike.id]
    rescanned = anomalies.scan(spiky, levels=("agent",), since="35d", now=clock.now)
    assert all(a.status == "expected" for a in rescanned if a.scope.get("agent") == "planner")


def test_cli_and_api(spiky, clock, tmp_path):
    import asyncio

    import httpx

    from tokenledger.access import create_key
    from tokenledger.server import create_app

    key, _ = create_key(spiky.store, role="finops", now=clock.now)
    app = create_app(spiky, local_only=False)

    async def calls():
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers) as c:
            scanned = (await c.post("/api/anomalies/scan", params={"since": "35d"})).json()
            assert scanned["found"] >= 1
            first = scanned["anomalies"][0]["id"]
            bad = await c.patch(f"/api/anomalies/{first}", json={"status": "solved"})
            assert bad.status_code == 400 and "status" in bad.json()["error"]["message"]
            ok = await c.patch(f"/api/anomalies/{first}", json={"status": "investigating", "note": "looking"})
            assert ok.json()["status"] == "investigating"
            listed = (await c.get("/api/anomalies", params={"status": "investigating"})).json()
            assert [a["id"] for a in listed] == [first]

    asyncio.run(calls())
