"""The outbox: a receiver that is down gets the alert once it is back, and only once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import func, select

from fleetledger.alerts.channels import DeliveryResult
from fleetledger.alerts.outbox import OutboxWorker, backoff_s, claim_due, deliver_due, send_claim, settle
from fleetledger.alerts.tables import alert_outbox

from .conftest import Receiver


def hook_and_alert(engine, url: str, key: str = "k"):
    engine.add_channel("hook", "webhook", {"url": url, "secret": "s"})
    alert = engine.fire(rule=None, severity="warning", dedup_key=key, title="t", message="m", channels=["hook"])
    assert alert is not None
    return alert


def outbox_row(store):
    with store.read() as conn:
        return conn.execute(select(alert_outbox)).one()


def test_backoff_doubles_and_is_capped():
    assert [backoff_s(n, base_s=5, max_s=60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_receiver_down_then_back_is_delivered_exactly_once(engine, store, clock, http):
    down = Receiver().start()
    port = down.port
    down.stop()  # nobody listens on the port now
    hook_and_alert(engine, f"http://127.0.0.1:{port}/hook")
    t0 = clock()

    first = deliver_due(store, now=t0, http=http)
    assert (first.claimed, first.retrying) == (1, 1)
    assert first.outcomes[0].next_attempt == t0 + timedelta(seconds=5)
    assert "Connect" in first.outcomes[0].detail
    assert deliver_due(store, now=t0 + timedelta(seconds=4), http=http).claimed == 0  # not due yet

    clock.now = t0 + timedelta(seconds=5)
    second = deliver_due(store, now=clock(), http=http)
    assert second.retrying == 1
    assert second.outcomes[0].next_attempt == clock() + timedelta(seconds=10)  # backoff doubled

    up = Receiver(port=port).start()
    try:
        clock.now += timedelta(seconds=10)
        third = deliver_due(store, now=clock(), http=http)
        assert third.delivered == 1 and third.outcomes[0].attempts == 3
        for hours in range(1, 6):  # later runs never send it again
            assert deliver_due(store, now=clock() + timedelta(hours=hours), http=http).claimed == 0
        assert len(up.requests) == 1
        assert list(up.delivered_keys().values()) == [1]
    finally:
        up.stop()
    row = outbox_row(store)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, None)
    assert row.delivered_us is not None
    history = engine.history()[0].deliveries[0]
    assert history.status == "delivered" and history.attempts == 3


def test_server_errors_retry_and_give_up_after_max_attempts(engine, store, clock, http, receiver):
    receiver.responses = [503, 500, 502]
    hook_and_alert(engine, receiver.url)
    outcomes = []
    for _ in range(3):
        report = deliver_due(store, now=clock(), http=http, max_attempts=3, base_backoff_s=1)
        outcomes.append(report.outcomes[0].status)
        clock.now += timedelta(hours=1)
    assert outcomes == ["pending", "pending", "failed"]
    assert deliver_due(store, now=clock() + timedelta(days=1), http=http).claimed == 0
    assert len(receiver.requests) == 3
    assert outbox_row(store).last_error.startswith("HTTP 502")


def test_a_400_is_a_permanent_failure(engine, store, clock, http, receiver):
    receiver.responses = [400]
    hook_and_alert(engine, receiver.url)
    report = deliver_due(store, now=clock(), http=http)
    assert report.failed == 1 and report.outcomes[0].detail.startswith("HTTP 400")
    for hours in (1, 2, 48):
        assert deliver_due(store, now=clock() + timedelta(hours=hours), http=http).claimed == 0
    assert len(receiver.requests) == 1
    assert outbox_row(store).status == "failed"


def test_429_honours_retry_after(engine, store, clock, http, receiver):
    receiver.responses = [(429, {"Retry-After": "120"}), 408]
    hook_and_alert(engine, receiver.url)
    report = deliver_due(store, now=clock(), http=http)
    assert report.outcomes[0].next_attempt == clock() + timedelta(seconds=120)
    clock.now += timedelta(seconds=120)
    assert deliver_due(store, now=clock(), http=http).retrying == 1  # 408 retries too
    clock.now += timedelta(seconds=10)
    assert deliver_due(store, now=clock(), http=http).delivered == 1


def test_lease_expiry_redelivers_after_a_crash_with_the_same_key(engine, store, clock, http, receiver):
    hook_and_alert(engine, receiver.url)
    t0 = clock()
    [claim] = claim_due(store, now=t0, lease_s=60)
    assert send_claim(claim, http=http, now=t0).ok
    # ... the sender crashes here, before recording the delivery.
    assert outbox_row(store).status == "sending"
    assert deliver_due(store, now=t0 + timedelta(seconds=30), http=http).claimed == 0  # lease still held

    redo = deliver_due(store, now=t0 + timedelta(seconds=61), http=http)
    assert redo.delivered == 1 and redo.outcomes[0].attempts == 2
    keys = [r.headers["Idempotency-Key"] for r in receiver.requests]
    assert len(keys) == 2 and keys[0] == keys[1] == claim.idempotency_key
    assert len(receiver.delivered_keys()) == 1  # a receiver deduplicating by key acts once

    # The crashed sender's late report cannot overwrite the newer claim's result.
    late = settle(store, claim, DeliveryResult(ok=False, retryable=True, detail="late"), now=t0)
    assert late.status == "pending"
    assert outbox_row(store).status == "delivered"
    assert deliver_due(store, now=t0 + timedelta(days=1), http=http).claimed == 0


def test_concurrent_workers_claim_each_row_once(engine, store, clock, http, receiver):
    engine.add_channel("hook", "webhook", {"url": receiver.url})
    for i in range(12):
        engine.fire(rule=None, severity="info", dedup_key=f"k{i}", title="t", message="m", channels=["hook"])
    results = []

    def work() -> None:
        results.append(deliver_due(store, now=clock(), http=http, limit=3))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Four workers of three: every row claimed by exactly one of them.
    assert sorted(r.claimed for r in results) == [3, 3, 3, 3]
    assert sum(r.delivered for r in results) == 12
    assert len(receiver.requests) == 12
    assert set(receiver.delivered_keys().values()) == {1}


def test_worker_thread_delivers(engine, store, clock, http, receiver):
    hook_and_alert(engine, receiver.url)
    worker = OutboxWorker(store, http, clock, interval_s=0.05)
    assert worker.run_once().delivered == 1
    engine.fire(rule=None, severity="critical", dedup_key="k", title="t2", message="m", channels=["hook"])
    worker.start()
    try:
        deadline = time.monotonic() + 60  # generous: the worker polls every 0.05 s
        while True:
            with store.read() as conn:
                pending = conn.execute(
                    select(func.count()).select_from(alert_outbox).where(alert_outbox.c.status != "delivered")
                ).scalar()
            if not pending or time.monotonic() > deadline:
                break
            threading.Event().wait(0.02)
    finally:
        worker.stop()
    assert len(receiver.requests) == 2
