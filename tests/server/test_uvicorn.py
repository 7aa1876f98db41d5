"""One real server (uvicorn on loopback): health, ingest, query, and the live stream."""

from __future__ import annotations

import json
import threading

import httpx

from fleetledger import Ledger, Settings
from fleetledger.access.keys import create_key
from fleetledger.server import create_app
from support import running


def test_real_server_ingest_query_and_live_stream(db_url, tmp_path):
    with Ledger(settings=Settings(database_url=db_url, spool_dir=tmp_path / "s"), background=False) as ledger:
        key, _ = create_key(ledger.store, role="finops", now=ledger.clock())
        headers = {"Authorization": f"Bearer {key}"}
        ledger.budgets.create(name="lab", scope={"department": "lab"}, amount="1.00", action="notify")
        with running(create_app(ledger, local_only=True)) as base, httpx.Client(base_url=base, headers=headers) as http:
            assert http.get("/healthz").json()["status"] == "ok"
            assert http.get("/openapi.json").json()["info"]["title"] == "fleetledger"
            frames: list[tuple[str, dict]] = []
            subscribed = threading.Event()

            def listen() -> None:
                with httpx.stream("GET", f"{base}/api/stream", params={"timeout_s": 60}, headers=headers) as stream:
                    topic = None
                    for line in stream.iter_lines():
                        if line == ": connected":  # sent once the stream has subscribed to the bus
                            subscribed.set()
                        elif line.startswith("event: "):
                            topic = line[7:]
                        elif line.startswith("data: ") and topic:
                            frames.append((topic, json.loads(line[6:])))
                            if topic == "budget.warning":
                                return

            listener = threading.Thread(target=listen)
            listener.start()
            assert subscribed.wait(30), "the live stream did not connect"
            event = {
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 340_000,
                "department": "lab",
                "timestamp": ledger.clock().isoformat(),
            }
            result = http.post("/api/v1/events", json=[event]).json()
            assert result["accepted"] == 1 and result["items"][0]["cost_usd"] == "0.850000000"
            listener.join(60)
            assert not listener.is_alive(), "no budget.warning frame arrived"
            assert ("budget.warning", frames[-1][1]) == frames[-1] and frames[-1][1]["percent_used"] == "85.00"
            rows = http.get("/api/costs", params={"by": "department", "since": "1d"}).json()["rows"]
            assert rows[0]["department"] == "lab" and rows[0]["cost_usd"] == "0.850000000"
