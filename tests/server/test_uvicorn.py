"""One real server (uvicorn on loopback): health, ingest, query, and the live stream."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import uvicorn

from tokenledger import Ledger, Settings
from tokenledger.access import create_key
from tokenledger.server import create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(app):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_real_server_ingest_query_and_live_stream(db_url, tmp_path):
    with Ledger(settings=Settings(database_url=db_url, spool_dir=tmp_path / "s"), background=False) as ledger:
        key, _ = create_key(ledger.store, role="finops", now=ledger.clock())
        headers = {"Authorization": f"Bearer {key}"}
        ledger.budgets.create(name="lab", scope={"department": "lab"}, amount="1.00", action="notify")
        with running(create_app(ledger, local_only=True)) as base, httpx.Client(base_url=base, headers=headers) as http:
            assert http.get("/healthz").json()["status"] == "ok"
            assert http.get("/openapi.json").json()["info"]["title"] == "tokenledger"
            frames: list[tuple[str, dict]] = []

            def listen() -> None:
                with httpx.stream("GET", f"{base}/api/stream", params={"timeout_s": 5}, headers=headers) as stream:
                    topic = None
                    for line in stream.iter_lines():
                        if line.startswith("event: "):
                            topic = line[7:]
                        elif line.startswith("data: ") and topic:
                            frames.append((topic, json.loads(line[6:])))
                            if topic == "budget.warning":
                                return

            listener = threading.Thread(target=listen)
            listener.start()
            time.sleep(0.5)
            event = {
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 340_000,
                "department": "lab",
                "timestamp": ledger.clock().isoformat(),
            }
            result = http.post("/api/v1/events", json=[event]).json()
            assert result["accepted"] == 1 and result["items"][0]["cost_usd"] == "0.850000000"
            listener.join(10)
            assert ("budget.warning", frames[-1][1]) == frames[-1] and frames[-1][1]["percent_used"] == "85.00"
            rows = http.get("/api/costs", params={"by": "department", "since": "1d"}).json()["rows"]
            assert rows[0]["department"] == "lab" and rows[0]["cost_usd"] == "0.850000000"
