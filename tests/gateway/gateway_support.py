"""Running gateways for the tests: the real ASGI app under uvicorn on a free port, pointed at the
upstream simulator (the one fake the project allows), with a real ledger on SQLite or PostgreSQL."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import uvicorn

from fleetledger import Ledger, Settings
from fleetledger.core.usage import parse_event
from fleetledger.gateway.config import GatewayConfig, parse_config
from fleetledger.gateway.keys import create_key
from fleetledger.gateway.proxy import Gateway
from fleetledger.testing.simulator import RunningSimulator, normalized_usage, run_simulator_in_thread

DIMS = {"department": "research", "project": "search", "agent": "summarizer", "environment": "production"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningGateway:
    url: str
    gateway: Gateway
    ledger: Ledger
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until commits that run after responses are done and the writer has flushed."""
        deadline = time.monotonic() + timeout
        while (self.gateway._tasks or self.gateway.in_flight) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not self.gateway._tasks and not self.gateway.in_flight, "gateway work did not finish"
        assert self.ledger.flush(timeout)

    def refresh(self) -> None:
        self.gateway.refresh()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_gateway(ledger: Ledger, config: GatewayConfig, **options: Any) -> RunningGateway:
    port = free_port()
    gateway = Gateway(ledger, config, **options)
    server = uvicorn.Server(
        uvicorn.Config(gateway, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.01)
    return RunningGateway(f"http://127.0.0.1:{port}", gateway, ledger, server, thread)


def config_for(simulator: RunningSimulator, **extra: Any) -> GatewayConfig:
    data: dict[str, Any] = {
        "upstreams": {
            "openai": {"kind": "openai", "base_url": simulator.url, "api_key_env": "TL_TEST_OPENAI_KEY"},
            "anthropic": {"kind": "anthropic", "base_url": simulator.url, "api_key_env": "TL_TEST_ANTHROPIC_KEY"},
        },
        "refresh_interval_s": 0.2,
        "forward_headers": ["x-simulator-fail", "x-simulator-chunk-delay-ms"],
    }
    data.update(extra)
    return parse_config(data)


def expected_nanos(ledger: Ledger, endpoint: str, body: dict[str, Any], provider: str, model: str) -> int:
    """What the pricing engine says the simulator's reported usage costs."""
    units = normalized_usage(endpoint, body)
    event = parse_event({"timestamp": ledger.clock(), "provider": provider, "model": model, **units})
    return ledger.pricer.price(event).total_nanos


def gateway_events(ledger: Ledger) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from fleetledger.storage.schema import events

    ledger.flush()
    with ledger.store.read() as conn:
        rows = conn.execute(select(events).where(events.c.source == "gateway").order_by(events.c.ts_us)).all()
    return [dict(row._mapping) for row in rows]


def usd(nanos: int) -> Decimal:
    return Decimal(nanos) / 1_000_000_000


@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    sim = run_simulator_in_thread(api_key="sk-upstream-secret")
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def gw_ledger(db_url: str, tmp_path, monkeypatch) -> Iterator[Ledger]:
    monkeypatch.setenv("TL_TEST_OPENAI_KEY", "sk-upstream-secret")
    monkeypatch.setenv("TL_TEST_ANTHROPIC_KEY", "sk-upstream-secret")
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool", flush_interval_s=0.05)
    ledger = Ledger(settings=settings, background=True)
    try:
        yield ledger
    finally:
        ledger.close()


@pytest.fixture
def virtual_key(gw_ledger: Ledger) -> str:
    key, _ = create_key(gw_ledger.store, now=gw_ledger.clock(), name="tests", dims=DIMS)
    return key


@pytest.fixture
def running(gw_ledger: Ledger, simulator: RunningSimulator, tmp_path) -> Iterator[RunningGateway]:
    config = config_for(
        simulator,
        cache={"exact": {"path": str(tmp_path / "cache.db")}},
        routes=[
            {"model": "sim-fail-*", "upstream": "openai"},
            {"model": "gpt-4.1", "upstream": "openai", "fallbacks": [{"model": "gpt-4.1-mini"}]},
        ],
    )
    gateway = serve_gateway(gw_ledger, config)
    try:
        yield gateway
    finally:
        gateway.stop()
