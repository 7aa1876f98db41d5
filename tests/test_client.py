"""The SDK's HTTP mode against a real server: spooling, replay, crashes, restarts, bad keys.

"Events recorded while the server is down are kept on disk and sent when it is back, exactly once."
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import update

from fleetledger import InvalidEvent, InvalidInput, Ledger, Settings, connect
from fleetledger.access.keys import api_keys, create_key, revoke_key
from fleetledger.core.money import format_usd
from fleetledger.core.usage import parse_event
from fleetledger.sdk.http import HttpLedger, default_spool_dir
from fleetledger.server import create_app

FIXTURES = Path(__file__).parent / "providers" / "fixtures"
EVENT = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 100}


class LiveServer:
    """uvicorn on loopback, in a thread, on a port this object holds from creation to close().

    Until start() the port is bound but not listening, so connections are refused (the server is
    "down") and no other process can take it; stop() and start() again restart on the same port.
    """

    def __init__(self, ledger: Ledger | None) -> None:
        self.ledger = ledger
        self._sock: socket.socket | None = self._bind(0)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket()
        # So that a restart can bind the port while connections of the previous run close.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        return sock

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> LiveServer:
        assert self.ledger is not None and self._server is None
        if self._sock is None:
            self._sock = self._bind(self.port)
        config = uvicorn.Config(create_app(self.ledger, local_only=True), log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                if self._server.started and httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self._thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            assert not self._thread.is_alive(), "uvicorn did not stop"
        self._server = self._thread = None
        if self._sock is not None:  # uvicorn closed it; a restart binds the port again
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self.stop()


class Recording(httpx.HTTPTransport):
    """A real transport that keeps every ingest answer; ``lose`` drops that many answers after the
    server has committed them (the client sees a broken connection and must resend).

    With ``held=True`` no request leaves until ``release()``: a test can read what a new client
    loaded from its spool before the sender could have delivered any of it."""

    def __init__(self, lose: int = 0, *, held: bool = False) -> None:
        super().__init__()
        self.answers: list[dict] = []
        self.lose = lose
        self._gate = threading.Event()
        if not held:
            self._gate.set()

    def release(self) -> None:
        self._gate.set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert self._gate.wait(60), "the test never released the transport"
        response = super().handle_request(request)
        response.read()
        if response.status_code == 200:
            self.answers.append(response.json())
        if self.lose:
            self.lose -= 1
            response.close()
            raise httpx.ReadError("connection lost before the answer arrived", request=request)
        return response

    def total(self, status: str) -> int:
        return sum(1 for answer in self.answers for item in answer["items"] if item["status"] == status)


@pytest.fixture
def server_ledger(db_url, tmp_path, clock):
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "server-spool")
    with Ledger(settings=settings, background=False, clock=clock) as ledger:
        yield ledger


def unit_cost(ledger: Ledger, clock) -> int:
    return ledger.pricer.price(parse_event({**EVENT, "timestamp": clock()})).total_nanos


SINCE, UNTIL = "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"


def totals(ledger: Ledger) -> dict:
    return ledger.costs(since=SINCE, until=UNTIL).total


def journals(spool: Path) -> list[Path]:
    return sorted(spool.glob("journal-*.jsonl"))


def wait_until(condition, what: str, timeout: float = 30) -> None:
    """Wait for a condition the background sender makes true (a generous deadline, never a retry)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_500_events_reach_a_real_server_with_their_costs(server_ledger, clock, tmp_path):
    spool = tmp_path / "spool"
    with LiveServer(server_ledger) as server:
        server.start()
        client = HttpLedger(server.url, spool_dir=spool, clock=clock)
        try:
            with client.attribute(department="research", tags={"exp": "7"}):
                recorded = [
                    client.record(
                        provider="openai",
                        model="gpt-4o-mini",
                        input_tokens=1000 + i,
                        output_tokens=i % 300,
                        agent=f"a{i % 5}",
                    )
                    for i in range(499)
                ]
                completion = json.loads((FIXTURES / "openai_chat_o4_mini_cached_reasoning.json").read_text())
                recorded.append(client.record_response(completion, operation="plan"))
            assert len({r.event_id for r in recorded}) == 500
            assert client.flush(60), client.last_error
            assert client.pending == 0 and client.rejected == 0
        finally:
            client.close()
    expected = sum(server_ledger.pricer.price(r.event).total_nanos for r in recorded)
    total = totals(server_ledger)
    assert total["requests"] == 500 and total["cost_nanos"] == expected > 0
    assert server_ledger.costs(by=["department"], since=SINCE, until=UNTIL).rows()[0]["department"] == "research"
    planned = server_ledger.event(recorded[-1].event_id)
    assert planned["model"].startswith("o4-mini") and planned["operation"] == "plan" and planned["tags"] == {"exp": "7"}
    assert planned["cost_usd"] == format_usd(server_ledger.pricer.price(recorded[-1].event).total_nanos)
    assert journals(spool) == []


def test_recorded_while_down_is_spooled_and_replayed_exactly_once(server_ledger, clock, tmp_path):
    with LiveServer(server_ledger) as server:
        _spool_then_replay(server, server_ledger, clock, tmp_path / "spool")
    total = totals(server_ledger)
    assert total["requests"] == 300 and total["cost_nanos"] == 300 * unit_cost(server_ledger, clock)


def _spool_then_replay(server: LiveServer, server_ledger: Ledger, clock, spool: Path) -> None:
    url = server.url  # nothing listens there yet
    client = HttpLedger(url, spool_dir=spool, clock=clock, max_backoff_s=0.2)
    try:
        started = time.monotonic()
        recorded = [client.record(**EVENT) for _ in range(300)]
        # The unreachable server never blocks record(): waiting out the sender's backoff (>= 0.1 s
        # per retry) would take 30 s or more for 300 events; a generous bound for a busy machine.
        assert time.monotonic() - started < 15
        # Nothing listens on the port, so nothing can be answered, however long we wait.
        assert not client.flush(0.3) and client.pending == 300
        wait_until(lambda: client.last_error is not None, "a failed delivery attempt")
        assert "cannot reach" in client.last_error
    finally:
        client.close(timeout=0.2)
    (journal,) = journals(spool)
    assert [json.loads(line)["event"]["event_id"] for line in journal.read_text().splitlines()] == [
        r.event_id for r in recorded
    ]
    backup = journal.read_text()

    server.start()
    transport = Recording(held=True)  # so the sender cannot deliver before we count what was loaded
    with HttpLedger(url, spool_dir=spool, clock=clock, transport=transport) as replayer:
        assert replayer.pending == 300
        transport.release()
        assert replayer.flush(60), replayer.last_error
        assert replayer.pending == 0
    assert transport.total("accepted") == 300
    assert server_ledger.store.count_events() == 300
    assert journals(spool) == []

    server.stop()
    server.start()
    # The same journal again, as if a process died after delivering it: 300 duplicates.
    (spool / "journal-1-deadbeef.jsonl").write_text(backup)
    transport = Recording(held=True)
    with HttpLedger(url, spool_dir=spool, clock=clock, transport=transport) as again:
        assert again.pending == 300
        transport.release()
        assert again.flush(60), again.last_error
    assert transport.total("duplicate") == 300 and transport.total("accepted") == 0
    assert server_ledger.store.count_events() == 300
    assert journals(spool) == []


CHILD = textwrap.dedent("""
    import sys
    from fleetledger.sdk.http import HttpLedger
    client = HttpLedger(sys.argv[1], spool_dir=sys.argv[2], max_backoff_s=0.2)
    for i in range(200):
        client.record(event_id=f"kill-{i}", timestamp=sys.argv[3], provider="openai", model="gpt-4o-mini",
                      input_tokens=1000, output_tokens=100)
    print("recorded", flush=True)
    sys.stdin.read()  # wait to be killed, the server still down
""")


def test_kill_9_while_the_server_is_down_loses_nothing_and_charges_once(server_ledger, clock, tmp_path):
    with LiveServer(server_ledger) as server:
        _killed_then_replayed(server, clock, tmp_path / "spool")
    total = totals(server_ledger)
    assert total["requests"] == 200 and total["cost_nanos"] == 200 * unit_cost(server_ledger, clock)
    assert server_ledger.event("kill-199") is not None


def _killed_then_replayed(server: LiveServer, clock, spool: Path) -> None:
    url = server.url  # nothing listens there yet
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(spool), clock().isoformat()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "recorded"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()
    assert len(journals(spool)) == 1
    server.start()
    transport = Recording(held=True)  # so the sender cannot deliver before we count what was loaded
    with HttpLedger(url, spool_dir=spool, clock=clock, transport=transport) as replayer:
        assert replayer.pending == 200
        transport.release()
        assert replayer.flush(60), replayer.last_error
    assert transport.total("accepted") == 200
    with HttpLedger(url, spool_dir=spool, clock=clock) as again:  # nothing left to replay
        assert again.pending == 0
    assert journals(spool) == []


def test_server_restarts_and_lost_answers_mid_stream_charge_each_event_once(server_ledger, clock, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="fleetledger.sdk.http")
    spool = tmp_path / "spool"
    with LiveServer(server_ledger) as server:
        recorded, transport = _record_through_restarts(server.start(), clock, spool)
    assert transport.total("duplicate") >= 2  # the lost answers were resent and not charged again
    assert recorded == 750
    assert any("cannot reach" in r.getMessage() for r in caplog.records)  # the restarts were felt
    total = totals(server_ledger)
    assert total["requests"] == recorded and total["cost_nanos"] == recorded * unit_cost(server_ledger, clock)
    assert journals(spool) == []


def _record_through_restarts(server: LiveServer, clock, spool: Path) -> tuple[int, Recording]:
    transport = Recording(lose=2)  # two answers lost after the server committed the batch
    client = HttpLedger(
        server.url,
        spool_dir=spool,
        clock=clock,
        transport=transport,
        batch_size=50,
        flush_interval_s=0.02,
        max_backoff_s=0.2,
    )
    recorded = 0
    try:
        for _ in range(3):
            for i in range(150):
                client.record(**EVENT)
                recorded += 1
                if i % 25 == 0:
                    time.sleep(0.01)  # let batches go out between records
            server.stop()
            for _ in range(100):
                client.record(**EVENT)
                recorded += 1
            # The sender must feel the outage (a batch of 50 is due at once) before the server is back.
            wait_until(lambda: "cannot reach" in (client.last_error or ""), "a delivery attempt while down")
            server.start()
        assert client.flush(60), client.last_error
        assert client.pending == 0
    finally:
        client.close()
    return recorded, transport


def test_refused_key_keeps_events_until_it_is_fixed(server_ledger, clock, tmp_path, caplog):
    spool = tmp_path / "spool"
    revoked, record = create_key(server_ledger.store, role="ingest", now=clock())
    revoke_key(server_ledger.store, record["key_id"])
    with LiveServer(server_ledger) as server:
        server.start()
        bad = HttpLedger(server.url, api_key="tl_nope_nope", spool_dir=spool, clock=clock, refused_retry_s=0.1)
        try:
            with caplog.at_level(logging.ERROR, logger="fleetledger.sdk.http"):
                for _ in range(20):
                    bad.record(**EVENT)
                assert not bad.flush(0.5)
                wait_until(
                    lambda: any("check the API key" in r.getMessage() for r in caplog.records), "the server's refusal"
                )
            assert bad.pending == 20 and "401" in bad.last_error
            assert any("check the API key" in r.getMessage() for r in caplog.records)
        finally:
            bad.close(timeout=0.1)
        assert server_ledger.store.count_events() == 0
        assert sum(len(p.read_text().splitlines()) for p in journals(spool)) == 20  # retained, not dropped

        # A new client with a revoked key replays the spool and keeps retrying until an operator
        # restores the key; then everything arrives.
        client = HttpLedger(server.url, api_key=revoked, spool_dir=spool, clock=clock, refused_retry_s=0.1)
        try:
            for _ in range(10):
                client.record(**EVENT)
            assert not client.flush(0.4) and client.pending == 30
            wait_until(lambda: "401" in (client.last_error or ""), "the server's refusal of the revoked key")
            assert client.pending == 30
            with server_ledger.store.write() as conn:
                conn.execute(update(api_keys).where(api_keys.c.key_id == record["key_id"]).values(revoked=False))
            assert client.flush(60), client.last_error
            assert client.rejected == 0
        finally:
            client.close()
    assert server_ledger.store.count_events() == 30
    assert journals(spool) == []


def test_items_the_server_rejects_go_to_rejected_jsonl(server_ledger, clock, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    good = {**EVENT, "event_id": "ok-1", "timestamp": clock().isoformat()}
    newer_sdk = {**EVENT, "event_id": "new-1", "timestamp": clock().isoformat(), "new_field": 1}
    negative = {**EVENT, "event_id": "neg-1", "timestamp": clock().isoformat(), "input_tokens": -5}
    lines = [json.dumps({"event": e}) for e in (good, newer_sdk, negative)] + ['"not a record"']
    (spool / "journal-2-cafe0001.jsonl").write_text("\n".join(lines) + "\n")
    with LiveServer(server_ledger) as server, HttpLedger(server.start().url, spool_dir=spool, clock=clock) as client:
        assert client.flush(60), client.last_error
        assert client.rejected == 2
    rejected = [json.loads(line) for line in (spool / "rejected.jsonl").read_text().splitlines()]
    reasons = {r["event"]["event_id"] if isinstance(r["event"], dict) else r["event"]: r["reason"] for r in rejected}
    assert "unknown field" in reasons["new-1"] and "input_tokens" in reasons["neg-1"]
    assert "not a journal record" in reasons["not a record"]
    assert server_ledger.store.count_events() == 1 and server_ledger.event("ok-1") is not None
    assert journals(spool) == []


def test_retry_after_too_large_and_partial_rejection_with_a_scripted_server(tmp_path, clock):
    calls: list[tuple[float, list[dict]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append((time.monotonic(), body))
        assert request.headers["authorization"] == "Bearer tl_k_s"
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "0.4"}, json={"error": {"message": "slow down"}})
        if len(calls) == 2:
            return httpx.Response(503, json={"error": {"message": "database unavailable"}})
        if len(body) > 10:
            return httpx.Response(413, json={"error": {"message": "too large"}})
        items = [
            {"index": i, "status": "rejected", "reason": "model: not served here"}
            if e["agent"] == "bad"
            else {"index": i, "status": "accepted", "event_id": e["event_id"]}
            for i, e in enumerate(body)
        ]
        return httpx.Response(200, json={"items": items})

    client = HttpLedger(
        "http://ledger.test/",
        api_key="tl_k_s",
        spool_dir=tmp_path / "spool",
        clock=clock,
        transport=httpx.MockTransport(handler),
        batch_size=40,
        max_backoff_s=0.1,
    )
    try:
        with client.attribute(department="ops"):
            for i in range(40):
                client.record(**EVENT, agent="bad" if i == 7 else "good")
        assert client.flush(60) and client.pending == 0
    finally:
        client.close()
    assert calls[1][0] - calls[0][0] >= 0.35  # Retry-After honoured
    assert [len(body) for _, body in calls] == [40, 40, 40, 20, 10, 10, 10, 10]  # halved after each 413
    delivered = [e for _, body in calls[4:] for e in body]
    assert len(delivered) == 40 and {e["department"] for e in delivered} == {"ops"}
    assert client.rejected == 1
    (line,) = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert json.loads(line)["reason"] == "model: not served here"


def test_bad_input_raises_at_once_and_writes_nothing(tmp_path, clock):
    spool = tmp_path / "spool"
    with LiveServer(None) as down:
        _bad_input(HttpLedger(down.url, spool_dir=spool, clock=clock), spool)


def _bad_input(client: HttpLedger, spool: Path) -> None:
    try:
        with pytest.raises(InvalidEvent, match="model"):
            client.record(provider="openai", input_tokens=5)
        with pytest.raises(InvalidEvent, match="input_tokens"):
            client.record(provider="openai", model="gpt-4o", input_tokens=-1)
        with pytest.raises(InvalidEvent, match="unknown field"):
            client.record(provider="openai", model="gpt-4o", colour="blue")
        with pytest.raises(InvalidEvent, match="unknown dimension"), client.attribute(colour="blue"):
            pass
        assert client.pending == 0
        assert [p.stat().st_size for p in journals(spool)] == [0]
    finally:
        client.close(timeout=0.1)
    assert journals(spool) == [] and not (spool / "rejected.jsonl").exists()
    with pytest.raises(RuntimeError, match="closed"):
        client.record(**EVENT)


def test_connect_routes_by_url_and_default_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETLEDGER_SPOOL_DIR", str(tmp_path / "spools"))
    spool = default_spool_dir("http://h:8000/")
    assert spool == default_spool_dir("http://h:8000") and spool.parent == tmp_path / "spools"
    assert spool.name.startswith("http-spool-") and len(spool.name) == len("http-spool-") + 12
    with LiveServer(None) as down:
        remote = connect(down.url, spool_dir=tmp_path / "s")
        try:
            assert isinstance(remote, HttpLedger) and remote.url == down.url
        finally:
            remote.close(timeout=0.1)
    local = connect(f"sqlite:///{tmp_path / 'l.db'}", settings=Settings(spool_dir=tmp_path / "ls"), background=False)
    try:
        assert isinstance(local, Ledger)
    finally:
        local.close()


def test_connect_with_an_http_url_is_the_http_sdk(tmp_path):
    import fleetledger

    assert fleetledger.connect is connect and "connect" in fleetledger.__all__
    client = connect("https://127.0.0.1:9", api_key="tl_abc_def", spool_dir=tmp_path / "spool")
    try:
        assert isinstance(client, HttpLedger) and client.url == "https://127.0.0.1:9"
    finally:
        client.close(timeout=0.2)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "https://ledger.internal:8000/", " HTTP://h:1"])
def test_a_ledger_refuses_a_server_url_and_says_what_to_use(tmp_path, url):
    with pytest.raises(InvalidInput) as refused:
        Ledger(url, settings=Settings(spool_dir=tmp_path / "s"), background=False)
    message = str(refused.value)
    assert "\n" not in message
    assert "fleetledger.connect(url)" in message and "fleetledger.HttpLedger(url, api_key=...)" in message
    with pytest.raises(InvalidInput, match=r"fleetledger\.connect\(url\)"):
        Ledger(settings=Settings(database_url=url.strip(), spool_dir=tmp_path / "s"), background=False)
    assert not (tmp_path / "s").exists()  # refused before anything was built
