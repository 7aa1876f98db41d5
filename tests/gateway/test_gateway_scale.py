"""Two gateway processes (``fleetledger gateway``) against one database never overspend a block budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import select

from fleetledger import Ledger, Settings
from fleetledger.budgets.tables import reservations
from fleetledger.gateway.keys import create_key

from .gateway_support import DIMS, expected_nanos, free_port, gateway_events

REQUESTS = 64


def _start(db_url: str, config: Path, port: int, spool: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLEETLEDGER_SPOOL_DIR": str(spool), "TL_TEST_OPENAI_KEY": "sk-upstream-secret"}
    executable = Path(sys.executable).with_name("fleetledger")  # the installed console script
    command = [str(executable), "gateway", "--config", str(config), "--port", str(port)]
    return subprocess.Popen([*command, "--db", db_url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "gateway exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "gateway process did not start"
        time.sleep(0.1)


def test_two_processes_never_overspend_a_block_budget(db_url, tmp_path, simulator):
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool-test")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Classify this ticket."}], "max_tokens": 40}
    with Ledger(settings=settings, background=False) as ledger:
        per_request = expected_nanos(ledger, "chat", body, "openai", "gpt-4o")
        # Room for about a third of the requests, and not a whole number of them.
        limit = per_request * REQUESTS // 3 + per_request // 2
        ledger.budgets.create(
            name="research-hard-cap",
            amount=f"{limit / 1_000_000_000:.9f}",
            scope={"department": "research"},
            action="block",
        )
        key, _ = create_key(ledger.store, now=ledger.clock(), dims=DIMS)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "upstreams:\n"
        f"  openai: {{kind: openai, base_url: '{simulator.url}', api_key_env: TL_TEST_OPENAI_KEY}}\n"
        "limits: {reservation_ttl_s: 600}\n"
    )
    ports = [free_port(), free_port()]
    processes = [_start(db_url, config, port, tmp_path / f"spool-{port}") for port in ports]
    try:
        for port, process in zip(ports, processes, strict=True):
            _wait_ready(port, process)

        def call(i: int) -> int:
            port = ports[i % 2]
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {key}"},
                timeout=60,
            )
            if response.status_code == 429:
                assert "research-hard-cap" in response.json()["error"]["message"]
            return response.status_code

        with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
            statuses = list(pool.map(call, range(REQUESTS)))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    assert set(statuses) <= {200, 429}, statuses
    granted = statuses.count(200)
    assert 0 < granted < REQUESTS
    with Ledger(settings=settings, background=False) as ledger:
        events = gateway_events(ledger)
        with ledger.store.read() as conn:
            budget = ledger.budgets.get("research-hard-cap", conn)
            spent, reserved, _ = ledger.enforcer.usage(conn, budget, ledger.clock())
            states = [r.status for r in conn.execute(select(reservations.c.status))]
    assert spent <= limit, f"overspent: {spent} > {limit}"
    assert len(events) == granted and spent == granted * per_request == sum(e["cost_nanos"] for e in events)
    assert reserved == 0 and states.count("committed") == granted and "active" not in states
